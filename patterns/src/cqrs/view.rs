//! The read side's model: one read model with two tables, the balances and the statements,
//! folded from the whole log, and the queries it answers.
//!
//! The model is kept on the view node's disk as one file ([`BankView::encode`]): the tables
//! and the position they reflect are written together, so the checkpoint can never lead the
//! data. An event below the position is a duplicate and is ignored (the fold is idempotent by
//! position).

use crate::cqrs::bank::{account_of, AccountId, BankEvent, BankEventBody};
use crate::cqrs::mutant::{Mutant, Mutants};
use crate::event_sourcing::event::RecordedEvent;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A line of an account's statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The event's global position.
    pub position: u64,
    /// The command that made it.
    pub command_id: u64,
    /// `deposit`, `withdrawal`, `transfer-out` or `transfer-in`.
    pub kind: String,
    /// Signed cents: money in is positive.
    pub amount: i64,
}

/// An account's row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The owner (empty if the account's events came before its opening, which the command
    /// side never writes).
    pub owner: String,
    /// Cents. Signed, so that a broken write side shows as a negative balance rather than as
    /// a wrap-around.
    pub balance: i64,
    /// Every money movement, in log order.
    pub entries: Vec<Entry>,
}

/// Money totals over every account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Accounts opened.
    pub accounts: u64,
    /// The sum of every balance.
    pub balances: i64,
    /// Money deposited, ever.
    pub deposited: i64,
    /// Money withdrawn, ever.
    pub withdrawn: i64,
    /// Money debited by a transfer and not yet credited.
    pub in_transit: i64,
}

/// The read model.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankView {
    /// The position of the next event to apply: every event below it is folded in (or
    /// parked). The checkpoint.
    pub position: u64,
    /// How many times the model was rebuilt from scratch.
    pub generation: u64,
    /// Per account.
    pub rows: BTreeMap<AccountId, Row>,
    /// The totals.
    pub totals: Totals,
    /// Positions of poison events: bank events that do not decode, skipped after retries.
    pub parked: Vec<u64>,
}

/// What a query asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// One account's balance.
    Balance(AccountId),
    /// One account's statement.
    Statement(AccountId),
    /// The totals.
    Totals,
    /// Every row and the totals (for operators and checks).
    Dump,
}

/// What a query returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryBody {
    /// The balance; `None`: no such account.
    Balance(Option<i64>),
    /// The statement; `None`: no such account.
    Statement(Option<Vec<Entry>>),
    /// The totals.
    Totals(Totals),
    /// Every row and the totals.
    Dump {
        /// The rows.
        rows: BTreeMap<AccountId, Row>,
        /// The totals.
        totals: Totals,
    },
}

/// The outcome of folding one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Folded in (or not a bank event: nothing to fold); the position moved on.
    Done,
    /// Below the position: a duplicate, ignored.
    Duplicate,
    /// A bank event that does not decode: not folded, the position did not move.
    Poison(String),
}

impl BankView {
    /// Folds `event`, the one at [`BankView::position`] (or below it: a duplicate).
    pub fn apply(&mut self, event: &RecordedEvent, mutants: &Mutants) -> Applied {
        let duplicate = event.position < self.position;
        if duplicate && !mutants.contains(Mutant::DuplicateAppliedTwice) {
            return Applied::Duplicate;
        }
        debug_assert!(duplicate || event.position == self.position);
        match BankEvent::decode(event) {
            Err(error) => return Applied::Poison(error),
            Ok(Some(decoded)) => {
                if let Some(account) = account_of(&event.stream) {
                    self.fold(account, event.position, &decoded);
                }
            }
            Ok(None) => {}
        }
        if !duplicate {
            self.position = event.position + 1;
        }
        Applied::Done
    }

    /// Folds `event` again without comparing its position with the checkpoint (used only by
    /// [`Mutant::PageSkipsCheckpoint`]); the position does not move.
    pub(crate) fn apply_unchecked(&mut self, event: &RecordedEvent) {
        if let (Ok(Some(decoded)), Some(account)) =
            (BankEvent::decode(event), account_of(&event.stream))
        {
            self.fold(account, event.position, &decoded);
        }
    }

    /// Skips the poison event at the position, remembering it.
    pub fn park(&mut self, position: u64) {
        if position == self.position {
            self.parked.push(position);
            self.position += 1;
        }
    }

    fn fold(&mut self, account: &str, position: u64, event: &BankEvent) {
        let row = self.rows.entry(account.to_owned()).or_default();
        let (kind, amount) = match &event.body {
            BankEventBody::Opened { owner } => {
                row.owner = owner.clone();
                self.totals.accounts += 1;
                return;
            }
            BankEventBody::Deposited { amount } => {
                let amount = cents(*amount);
                self.totals.deposited += amount;
                ("deposit", amount)
            }
            BankEventBody::Withdrew { amount } => {
                let amount = cents(*amount);
                self.totals.withdrawn += amount;
                ("withdrawal", -amount)
            }
            BankEventBody::Debited { amount, .. } => {
                let amount = cents(*amount);
                self.totals.in_transit += amount;
                ("transfer-out", -amount)
            }
            BankEventBody::Credited { amount, .. } => {
                let amount = cents(*amount);
                self.totals.in_transit -= amount;
                ("transfer-in", amount)
            }
        };
        row.balance += amount;
        self.totals.balances += amount;
        row.entries.push(Entry {
            position,
            command_id: event.command_id,
            kind: kind.into(),
            amount,
        });
    }

    /// Answers `query` from this model.
    pub fn answer(&self, query: &Query) -> QueryBody {
        match query {
            Query::Balance(account) => {
                QueryBody::Balance(self.rows.get(account).map(|r| r.balance))
            }
            Query::Statement(account) => {
                QueryBody::Statement(self.rows.get(account).map(|r| r.entries.clone()))
            }
            Query::Totals => QueryBody::Totals(self.totals),
            Query::Dump => QueryBody::Dump {
                rows: self.rows.clone(),
                totals: self.totals,
            },
        }
    }

    /// The model's file: postcard, then a CRC-32C of it (little-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = postcard::to_allocvec(self).expect("a view encodes");
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Reads a model's file; an empty file is the empty model.
    pub fn decode(bytes: &[u8]) -> Result<BankView, String> {
        if bytes.is_empty() {
            return Ok(BankView::default());
        }
        let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
            return Err(format!("a view file of {} bytes is too short", bytes.len()));
        };
        if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
            return Err("the view file's checksum does not match".into());
        }
        postcard::from_bytes(body)
            .map_err(|error| format!("the view file does not decode: {error}"))
    }
}

/// Rebuilds the model from scratch from the log's first `events` (positions `0..`, in
/// order): see [`Rebuilder`].
pub fn rebuild(events: &[RecordedEvent], generation: u64, mutants: &Mutants) -> BankView {
    let mut rebuilder = Rebuilder::new(generation, mutants.clone());
    for event in events {
        rebuilder.push(event);
    }
    rebuilder.finish()
}

/// The rebuild path: a model folded from position 0, separate from the live projection but
/// with the same handlers, parking what does not decode at once (a poison event fails every
/// time).
#[derive(Clone, Debug)]
pub struct Rebuilder {
    view: BankView,
    mutants: Mutants,
}

impl Rebuilder {
    /// An empty model of generation `generation`.
    pub fn new(generation: u64, mutants: Mutants) -> Rebuilder {
        Rebuilder {
            view: BankView {
                generation,
                ..BankView::default()
            },
            mutants,
        }
    }

    /// The position of the next event to fold.
    pub fn position(&self) -> u64 {
        self.view.position
    }

    /// Folds the next event of the log (others are ignored).
    pub fn push(&mut self, event: &RecordedEvent) {
        if event.position != self.view.position {
            return;
        }
        if let Applied::Poison(_) = self.view.apply(event, &self.mutants) {
            self.view.park(event.position);
        }
    }

    /// The rebuilt model.
    pub fn finish(mut self) -> BankView {
        if self.mutants.contains(Mutant::RebuildDropsUnchangedRows) {
            self.view
                .rows
                .retain(|_, row| row.balance != 0 || !row.entries.is_empty());
        }
        self.view
    }
}

fn cents(amount: u64) -> i64 {
    i64::try_from(amount).unwrap_or(i64::MAX)
}
