//! An example aggregate: a bank account, with an event whose schema changed once.
//!
//! Events and their stored schema versions:
//!
//! | type              | version | payload (postcard)                     |
//! |-------------------|---------|----------------------------------------|
//! | `account-opened`  | 1       | `owner: String`                        |
//! | `money-deposited` | 1 (old) | `amount: u32`                          |
//! | `money-deposited` | 2       | `(amount: u64, memo: String)`          |
//! | `money-withdrawn` | 1       | `amount: u64`                          |
//! | `account-closed`  | 1       | empty                                  |
//!
//! Version 1 of `money-deposited` is no longer written; [`account_upcasters`] raises it to
//! version 2 (memo empty) at read time. The account's balance equals deposits minus
//! withdrawals, never goes below zero, and an account closes only when empty.

use crate::event_sourcing::aggregate::{Aggregate, DecodeError, EventCodec, UpcastFn, Upcasters};
use crate::event_sourcing::event::EventData;
use serde::{Deserialize, Serialize};

/// The snapshot schema version of [`Account`]'s state.
pub const ACCOUNT_SNAPSHOT_SCHEMA: u32 = 1;

/// A bank account's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The owner, once opened.
    pub owner: Option<String>,
    /// The balance, in cents.
    pub balance: u64,
    /// Deposits and withdrawals so far.
    pub transactions: u64,
    /// Whether the account is closed.
    pub closed: bool,
}

/// A request to an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountCommand {
    /// Opens the account.
    Open {
        /// The owner.
        owner: String,
    },
    /// Deposits money.
    Deposit {
        /// Cents.
        amount: u64,
        /// A free-text note.
        memo: String,
    },
    /// Withdraws money.
    Withdraw {
        /// Cents.
        amount: u64,
    },
    /// Closes the empty account.
    Close,
}

/// Something that happened to an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
    /// The account was opened.
    Opened {
        /// The owner.
        owner: String,
    },
    /// Money was deposited.
    Deposited {
        /// Cents.
        amount: u64,
        /// A free-text note (empty for deposits stored under schema version 1).
        memo: String,
    },
    /// Money was withdrawn.
    Withdrew {
        /// Cents.
        amount: u64,
    },
    /// The account was closed.
    Closed,
}

/// Why an account refuses a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AccountError {
    /// The account is already open.
    #[error("the account is already open")]
    AlreadyOpen,
    /// The account is not open.
    #[error("the account is not open")]
    NotOpen,
    /// The account is closed.
    #[error("the account is closed")]
    Closed,
    /// The amount is zero.
    #[error("the amount is zero")]
    ZeroAmount,
    /// The balance would overflow.
    #[error("the balance would overflow")]
    Overflow,
    /// The balance is too low.
    #[error("balance {balance} is less than {amount}")]
    InsufficientFunds {
        /// The balance.
        balance: u64,
        /// The amount asked for.
        amount: u64,
    },
    /// Only an empty account closes.
    #[error("the balance {0} is not zero")]
    BalanceNotZero(u64),
}

impl Account {
    fn check_usable(&self) -> Result<(), AccountError> {
        if self.owner.is_none() {
            return Err(AccountError::NotOpen);
        }
        if self.closed {
            return Err(AccountError::Closed);
        }
        Ok(())
    }
}

impl Aggregate for Account {
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;

    fn apply(&mut self, event: &AccountEvent) {
        // Events are facts that `handle` checked; saturating arithmetic keeps a replay of a
        // damaged history from panicking (the checks downstream then see a wrong balance).
        match event {
            AccountEvent::Opened { owner } => self.owner = Some(owner.clone()),
            AccountEvent::Deposited { amount, .. } => {
                self.balance = self.balance.saturating_add(*amount);
                self.transactions += 1;
            }
            AccountEvent::Withdrew { amount } => {
                self.balance = self.balance.saturating_sub(*amount);
                self.transactions += 1;
            }
            AccountEvent::Closed => self.closed = true,
        }
    }

    fn handle(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        let event = match command {
            AccountCommand::Open { owner } => {
                if self.owner.is_some() {
                    return Err(AccountError::AlreadyOpen);
                }
                AccountEvent::Opened { owner }
            }
            AccountCommand::Deposit { amount, memo } => {
                self.check_usable()?;
                if amount == 0 {
                    return Err(AccountError::ZeroAmount);
                }
                self.balance
                    .checked_add(amount)
                    .ok_or(AccountError::Overflow)?;
                AccountEvent::Deposited { amount, memo }
            }
            AccountCommand::Withdraw { amount } => {
                self.check_usable()?;
                if amount == 0 {
                    return Err(AccountError::ZeroAmount);
                }
                if amount > self.balance {
                    let balance = self.balance;
                    return Err(AccountError::InsufficientFunds { balance, amount });
                }
                AccountEvent::Withdrew { amount }
            }
            AccountCommand::Close => {
                self.check_usable()?;
                if self.balance != 0 {
                    return Err(AccountError::BalanceNotZero(self.balance));
                }
                AccountEvent::Closed
            }
        };
        Ok(vec![event])
    }
}

/// Type name of [`AccountEvent::Opened`].
pub const OPENED: &str = "account-opened";
/// Type name of [`AccountEvent::Deposited`].
pub const DEPOSITED: &str = "money-deposited";
/// Type name of [`AccountEvent::Withdrew`].
pub const WITHDRAWN: &str = "money-withdrawn";
/// Type name of [`AccountEvent::Closed`].
pub const CLOSED: &str = "account-closed";

fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("plain data serializes")
}

impl EventCodec for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Opened { .. } => OPENED,
            AccountEvent::Deposited { .. } => DEPOSITED,
            AccountEvent::Withdrew { .. } => WITHDRAWN,
            AccountEvent::Closed => CLOSED,
        }
    }

    fn schema_version(&self) -> u32 {
        match self {
            AccountEvent::Deposited { .. } => 2,
            _ => 1,
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            AccountEvent::Opened { owner } => to_bytes(owner),
            AccountEvent::Deposited { amount, memo } => to_bytes(&(*amount, memo)),
            AccountEvent::Withdrew { amount } => to_bytes(amount),
            AccountEvent::Closed => Vec::new(),
        }
    }

    fn decode(event_type: &str, schema_version: u32, payload: &[u8]) -> Result<Self, DecodeError> {
        let error = |detail: String| DecodeError {
            event_type: event_type.to_owned(),
            schema_version,
            detail,
        };
        let parse = |e: postcard::Error| error(e.to_string());
        match (event_type, schema_version) {
            (OPENED, 1) => Ok(AccountEvent::Opened {
                owner: postcard::from_bytes(payload).map_err(parse)?,
            }),
            (DEPOSITED, 2) => {
                let (amount, memo) = postcard::from_bytes(payload).map_err(parse)?;
                Ok(AccountEvent::Deposited { amount, memo })
            }
            (WITHDRAWN, 1) => Ok(AccountEvent::Withdrew {
                amount: postcard::from_bytes(payload).map_err(parse)?,
            }),
            (CLOSED, 1) if payload.is_empty() => Ok(AccountEvent::Closed),
            _ => Err(error("unknown type or schema version".to_owned())),
        }
    }
}

/// A `money-deposited` event in the old schema version 1, as old code wrote it.
pub fn deposited_v1(event_id: crate::event_sourcing::event::EventId, amount: u32) -> EventData {
    EventData {
        event_id,
        event_type: DEPOSITED.to_owned(),
        schema_version: 1,
        payload: to_bytes(&amount),
    }
}

/// Raises `money-deposited` from version 1 (`amount: u32`) to 2 (`(u64, String)`).
fn deposited_v1_to_v2(event: &EventData) -> Result<EventData, String> {
    let amount: u32 = postcard::from_bytes(&event.payload).map_err(|e| e.to_string())?;
    Ok(EventData {
        schema_version: 2,
        payload: to_bytes(&(u64::from(amount), String::new())),
        ..event.clone()
    })
}

/// The upcasters of the account's events.
pub fn account_upcasters() -> Upcasters {
    let mut upcasters = Upcasters::new();
    let step: UpcastFn = deposited_v1_to_v2;
    upcasters
        .register(DEPOSITED, 1, step)
        .expect("registered once");
    upcasters
}
