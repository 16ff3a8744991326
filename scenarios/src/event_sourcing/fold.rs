//! The oracle's own model of an account, for `replay-equals-live`.
//!
//! A writer tells the model what each event it submits *means* (an [`Intent`]: opened by whom,
//! how much deposited or withdrawn), taken from the event it decided, before any encoding. The
//! model folds those meanings in the order the [`Oracle`] observed the stream's versions (from
//! acknowledgements and reads), with a fold written here. It never calls the aggregate's
//! `apply`, its codec or its upcasters: those are what it judges. A writer's live state, a load
//! from a snapshot plus the tail, and a full replay must each equal the model's state at their
//! version; a bug in `apply`, in the snapshot fold, in decoding or in upcasting shows up as a
//! difference.

use super::oracle::Oracle;
use super::REPLAY_EQUALS_LIVE;
use harness::Checked;
use patterns::event_sourcing::account::{Account, AccountEvent};
use patterns::event_sourcing::aggregate::Loaded;
use patterns::event_sourcing::event::EventId;
use std::collections::BTreeMap;

/// What a submitted account event means, in the model's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    /// The account was opened for `owner`.
    Open {
        /// The owner.
        owner: String,
    },
    /// `amount` cents were deposited.
    Deposit {
        /// Cents.
        amount: u64,
    },
    /// `amount` cents were withdrawn.
    Withdraw {
        /// Cents.
        amount: u64,
    },
    /// The account was closed.
    Close,
}

impl Intent {
    /// The meaning of an event a writer decided (read off its variant and fields, nothing run).
    pub fn of(event: &AccountEvent) -> Intent {
        match event {
            AccountEvent::Opened { owner } => Intent::Open {
                owner: owner.clone(),
            },
            AccountEvent::Deposited { amount, .. } => Intent::Deposit { amount: *amount },
            AccountEvent::Withdrew { amount } => Intent::Withdraw { amount: *amount },
            AccountEvent::Closed => Intent::Close,
        }
    }
}

/// The model's account: what the account's documented rules say the events add up to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelAccount {
    /// The owner, once opened.
    pub owner: Option<String>,
    /// Deposits minus withdrawals, in cents (a withdrawal past zero leaves zero: the account's
    /// documented rule for a damaged history).
    pub balance: u64,
    /// Deposits and withdrawals.
    pub transactions: u64,
    /// Whether it was closed.
    pub closed: bool,
}

impl ModelAccount {
    fn fold(&mut self, intent: &Intent) {
        match intent {
            Intent::Open { owner } => self.owner = Some(owner.clone()),
            Intent::Deposit { amount } => {
                self.balance = self.balance.saturating_add(*amount);
                self.transactions += 1;
            }
            Intent::Withdraw { amount } => {
                self.balance = self.balance.saturating_sub(*amount);
                self.transactions += 1;
            }
            Intent::Close => self.closed = true,
        }
    }

    /// Whether the aggregate's state says the same.
    fn matches(&self, account: &Account) -> bool {
        self.owner == account.owner
            && self.balance == account.balance
            && self.transactions == account.transactions
            && self.closed == account.closed
    }
}

/// The meanings of every submitted account event, and the fold of a stream's observed events.
#[derive(Debug, Default)]
pub struct AccountModel {
    intents: BTreeMap<EventId, Intent>,
}

impl AccountModel {
    /// A model that knows no event.
    pub fn new() -> Self {
        AccountModel::default()
    }

    /// Records what event `id` means (again for a retry: the same meaning).
    pub fn intend(&mut self, id: EventId, intent: Intent) {
        self.intents.insert(id, intent);
    }

    /// The model's state of `stream` at `version`: the meanings of the events the oracle saw
    /// at versions `0..=version`, folded in order.
    pub fn state_at(
        &self,
        oracle: &Oracle,
        stream: &str,
        version: u64,
    ) -> Result<ModelAccount, String> {
        let mut account = ModelAccount::default();
        for v in 0..=version {
            let Some(id) = oracle.event_at(stream, v) else {
                return Err(format!("no event was acknowledged or served at v{v}"));
            };
            let Some(intent) = self.intents.get(&id) else {
                return Err(format!(
                    "event {id} at v{v} is no account event a writer decided"
                ));
            };
            account.fold(intent);
        }
        Ok(account)
    }

    /// `replay-equals-live`: `loaded` (named `what` in the message) equals the model's state of
    /// `stream` at `loaded`'s version.
    pub fn judge(
        &self,
        oracle: &Oracle,
        stream: &str,
        what: &str,
        loaded: &Loaded<Account>,
    ) -> Checked {
        let Some(version) = loaded.version else {
            if loaded.state == Account::default() {
                return Ok(());
            }
            let message = format!("stream `{stream}`: {what} {loaded:?} has no event yet a state");
            return Err(REPLAY_EQUALS_LIVE.violated(message));
        };
        let model = self.state_at(oracle, stream, version).map_err(|missing| {
            REPLAY_EQUALS_LIVE.violated(format!(
                "stream `{stream}`: the model cannot fold {what} at v{version}: {missing}"
            ))
        })?;
        if model.matches(&loaded.state) {
            return Ok(());
        }
        Err(REPLAY_EQUALS_LIVE.violated(format!(
            "stream `{stream}`: {what} at v{version} is {:?}, but the acknowledged events add \
             up to {model:?}",
            loaded.state
        )))
    }
}
