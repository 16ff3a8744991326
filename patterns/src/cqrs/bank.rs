//! The domain the CQRS pattern is shown on: bank accounts with open, deposit, withdraw and
//! transfer.
//!
//! Each account is one stream of the event store, `account-<id>`. Events are JSON (one object
//! per event, so that a reader in any language, or an oracle with code of its own, decodes
//! them):
//!
//! | type            | payload                                                              |
//! |-----------------|----------------------------------------------------------------------|
//! | `bank.opened`    | `{"command_id": 7, "kind": "opened", "owner": "ann"}`              |
//! | `bank.deposited` | `{"command_id": 7, "kind": "deposited", "amount": 25}`             |
//! | `bank.withdrew`  | `{"command_id": 7, "kind": "withdrew", "amount": 25}`              |
//! | `bank.debited`   | `{"command_id": 7, "kind": "debited", "amount": 25, "to": "b"}`    |
//! | `bank.credited`  | `{"command_id": 7, "kind": "credited", "amount": 25, "from": "a"}` |
//!
//! A command that came with a principal (the caller an API gateway authenticated) leaves it
//! in its events as `"principal": "ann"`, beside `command_id`.
//!
//! `kind` repeats the type's suffix; a bank event whose payload does not match is *poison*
//! (a projection parks it). A debit is a transfer's money leaving; a credit, its arriving.
//!
//! A transfer touches two streams, and the store appends atomically to one stream only, so a
//! transfer is two appends: the debit (validated: the source holds the money) and then the
//! credit (never refused). Between the two the money is *in transit*; the conservation rule
//! the read side keeps is `sum of balances + in transit = deposited - withdrawn`, with no
//! balance below zero.
//!
//! Every event carries the id of the command that made it: it makes commands idempotent
//! (a retried command finds its events in the stream) and lets a reader tell which command
//! an event came from. Event ids are derived from it too ([`event_id`]), so the store also
//! recognises a retried append.

use crate::event_sourcing::event::{EventData, EventId, RecordedEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The prefix of every event type of this domain.
pub const EVENT_TYPE_PREFIX: &str = "bank.";

/// The largest amount of one command, and the largest balance, in cents (ten trillion
/// units): far from `i64::MAX`, so that the read side's signed sums never overflow in
/// practice. A larger amount is refused; a stored event carrying one is poison.
pub const AMOUNT_MAX: u64 = 1_000_000_000_000_000;

/// An account's name, for example `"a"`.
pub type AccountId = String;

/// The stream an account's events are kept in.
pub fn stream_of(account: &str) -> String {
    format!("account-{account}")
}

/// The account a stream holds, if it is an account stream.
pub fn account_of(stream: &str) -> Option<&str> {
    stream.strip_prefix("account-")
}

/// A request to change accounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BankCommand {
    /// Opens an account.
    Open {
        /// The account.
        account: AccountId,
        /// Its owner.
        owner: String,
    },
    /// Deposits money (cents).
    Deposit {
        /// The account.
        account: AccountId,
        /// Cents, more than zero.
        amount: u64,
    },
    /// Withdraws money (cents); refused if the balance is lower.
    Withdraw {
        /// The account.
        account: AccountId,
        /// Cents, more than zero.
        amount: u64,
    },
    /// Moves money from one open account to another.
    Transfer {
        /// The account debited.
        from: AccountId,
        /// The account credited.
        to: AccountId,
        /// Cents, more than zero.
        amount: u64,
    },
}

impl BankCommand {
    /// The account whose stream the command is validated against (the debited one for a
    /// transfer).
    pub fn account(&self) -> &str {
        match self {
            BankCommand::Open { account, .. }
            | BankCommand::Deposit { account, .. }
            | BankCommand::Withdraw { account, .. } => account,
            BankCommand::Transfer { from, .. } => from,
        }
    }
}

/// What happened to an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BankEventBody {
    /// The account was opened.
    Opened {
        /// The owner.
        owner: String,
    },
    /// Money was deposited.
    Deposited {
        /// Cents.
        amount: u64,
    },
    /// Money was withdrawn.
    Withdrew {
        /// Cents.
        amount: u64,
    },
    /// Money left for another account (the first half of a transfer).
    Debited {
        /// Cents.
        amount: u64,
        /// The account to be credited.
        to: AccountId,
    },
    /// Money arrived from another account (the second half of a transfer).
    Credited {
        /// Cents.
        amount: u64,
        /// The account debited.
        from: AccountId,
    },
}

impl BankEventBody {
    /// The event type it is stored under.
    pub fn event_type(&self) -> &'static str {
        match self {
            BankEventBody::Opened { .. } => "bank.opened",
            BankEventBody::Deposited { .. } => "bank.deposited",
            BankEventBody::Withdrew { .. } => "bank.withdrew",
            BankEventBody::Debited { .. } => "bank.debited",
            BankEventBody::Credited { .. } => "bank.credited",
        }
    }
}

/// One event of the domain, with the command that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankEvent {
    /// The command that made it.
    pub command_id: u64,
    /// Who asked for it: the principal the command came with (for example the one an API
    /// gateway authenticated), if any. The event's metadata: it does not change the fold.
    pub principal: Option<String>,
    /// What happened.
    pub body: BankEventBody,
}

/// The JSON shape of a payload: the command id (and the principal, when there is one) beside
/// the body's fields.
#[derive(Serialize, Deserialize)]
struct Payload {
    command_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    principal: Option<String>,
    #[serde(flatten)]
    body: BankEventBody,
}

/// The event id of event `index` (0: the debit or the single event; 1: a transfer's credit)
/// of command `command_id`: a retried command appends the same ids.
pub fn event_id(command_id: u64, index: u8) -> EventId {
    EventId((u128::from(command_id) << 8) | u128::from(index))
}

impl BankEvent {
    /// The event as the store keeps it.
    pub fn to_data(&self, event_id: EventId) -> EventData {
        let body = self.body.clone();
        let payload = Payload {
            command_id: self.command_id,
            principal: self.principal.clone(),
            body,
        };
        EventData {
            event_id,
            event_type: self.body.event_type().into(),
            schema_version: 1,
            payload: serde_json::to_vec(&payload).expect("a bank event encodes"),
        }
    }

    /// Decodes a recorded event: `Ok(None)` for an event of another domain (its type does not
    /// start with [`EVENT_TYPE_PREFIX`]); `Err` for a bank event that does not decode (a
    /// poison event: a projection parks it).
    pub fn decode(event: &RecordedEvent) -> Result<Option<BankEvent>, String> {
        let data = &event.data;
        if !data.event_type.starts_with(EVENT_TYPE_PREFIX) {
            return Ok(None);
        }
        let payload: Payload = serde_json::from_slice(&data.payload)
            .map_err(|error| format!("event {}: {error}", event.position))?;
        let amount = match &payload.body {
            BankEventBody::Opened { .. } => 0,
            BankEventBody::Deposited { amount }
            | BankEventBody::Withdrew { amount }
            | BankEventBody::Debited { amount, .. }
            | BankEventBody::Credited { amount, .. } => *amount,
        };
        if amount > AMOUNT_MAX {
            return Err(format!(
                "event {}: an amount of {amount}, above {AMOUNT_MAX}",
                event.position
            ));
        }
        if payload.body.event_type() != data.event_type {
            return Err(format!(
                "event {}: type {} carries a {} payload",
                event.position,
                data.event_type,
                payload.body.event_type()
            ));
        }
        Ok(Some(BankEvent {
            command_id: payload.command_id,
            principal: payload.principal,
            body: payload.body,
        }))
    }
}

/// Why a command is refused. Refusals are definite: nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum BankError {
    /// The account is already open.
    #[error("the account is already open")]
    AlreadyOpen,
    /// The account is not open.
    #[error("account {0} is not open")]
    NotOpen(AccountId),
    /// The amount is zero.
    #[error("the amount is zero")]
    ZeroAmount,
    /// A transfer to the account it comes from.
    #[error("a transfer to the same account")]
    SameAccount,
    /// The amount, or the balance it would make, is above [`AMOUNT_MAX`].
    #[error("the amount or the balance would exceed {AMOUNT_MAX}")]
    Overflow,
    /// The balance is too low.
    #[error("balance {balance} is less than {amount}")]
    InsufficientFunds {
        /// The balance.
        balance: u64,
        /// The amount asked for.
        amount: u64,
    },
}

/// An account's state on the command side: what validating a command needs, and which
/// commands already left events in the stream (and at which positions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountState {
    /// The owner, once opened.
    pub owner: Option<String>,
    /// Cents.
    pub balance: u64,
    /// The stream's last version (`None`: no event).
    pub version: Option<u64>,
    /// Per command id, the events it left here: (event index, global position).
    pub commands: BTreeMap<u64, Vec<(u8, u64)>>,
}

impl AccountState {
    /// Folds a stream's events (events of other domains and undecodable ones are skipped:
    /// the command side never writes them to an account stream).
    pub fn load(events: &[RecordedEvent]) -> AccountState {
        let mut state = AccountState::default();
        state.fold(events);
        state
    }

    /// Folds the stream's next events, in order, onto this state (see
    /// [`AccountState::load`]).
    pub fn fold(&mut self, events: &[RecordedEvent]) {
        for event in events {
            self.version = Some(event.version);
            if let Ok(Some(decoded)) = BankEvent::decode(event) {
                let index = (event.data.event_id.0 & 0xff) as u8;
                self.commands
                    .entry(decoded.command_id)
                    .or_default()
                    .push((index, event.position));
                self.apply(&decoded.body);
            }
        }
    }

    /// How many of the stream's events are folded in: the stream version to read next.
    pub fn events_folded(&self) -> u64 {
        self.version.map_or(0, |version| version + 1)
    }

    /// Folds one event.
    pub fn apply(&mut self, body: &BankEventBody) {
        match body {
            BankEventBody::Opened { owner } => self.owner = Some(owner.clone()),
            BankEventBody::Deposited { amount } | BankEventBody::Credited { amount, .. } => {
                self.balance = self.balance.saturating_add(*amount);
            }
            BankEventBody::Withdrew { amount } | BankEventBody::Debited { amount, .. } => {
                self.balance = self.balance.saturating_sub(*amount);
            }
        }
    }

    /// Whether the account is open.
    pub fn is_open(&self) -> bool {
        self.owner.is_some()
    }

    /// The position of event `index` of `command_id` in this stream, if it is there.
    pub fn position_of(&self, command_id: u64, index: u8) -> Option<u64> {
        self.commands
            .get(&command_id)?
            .iter()
            .find(|(i, _)| *i == index)
            .map(|&(_, position)| position)
    }

    /// Decides the event `command` makes on this account (the debited one, for a transfer;
    /// `target_open` says whether the credited one is open). Pure: no I/O, no clock.
    pub fn decide(
        &self,
        account: &str,
        command: &BankCommand,
        target_open: bool,
    ) -> Result<BankEventBody, BankError> {
        let amount_ok = |amount: u64| {
            if amount == 0 {
                Err(BankError::ZeroAmount)
            } else if amount > AMOUNT_MAX {
                Err(BankError::Overflow)
            } else {
                Ok(())
            }
        };
        let open = || {
            if self.is_open() {
                Ok(())
            } else {
                Err(BankError::NotOpen(account.into()))
            }
        };
        match command {
            BankCommand::Open { owner, .. } => {
                if self.is_open() {
                    return Err(BankError::AlreadyOpen);
                }
                Ok(BankEventBody::Opened {
                    owner: owner.clone(),
                })
            }
            BankCommand::Deposit { amount, .. } => {
                open()?;
                amount_ok(*amount)?;
                if self.balance.saturating_add(*amount) > AMOUNT_MAX {
                    return Err(BankError::Overflow);
                }
                Ok(BankEventBody::Deposited { amount: *amount })
            }
            BankCommand::Withdraw { amount, .. } => {
                open()?;
                amount_ok(*amount)?;
                self.covers(*amount)?;
                Ok(BankEventBody::Withdrew { amount: *amount })
            }
            BankCommand::Transfer { to, amount, .. } => {
                open()?;
                amount_ok(*amount)?;
                if to == account {
                    return Err(BankError::SameAccount);
                }
                if !target_open {
                    return Err(BankError::NotOpen(to.clone()));
                }
                self.covers(*amount)?;
                Ok(BankEventBody::Debited {
                    amount: *amount,
                    to: to.clone(),
                })
            }
        }
    }

    fn covers(&self, amount: u64) -> Result<(), BankError> {
        if self.balance < amount {
            return Err(BankError::InsufficientFunds {
                balance: self.balance,
                amount,
            });
        }
        Ok(())
    }
}
