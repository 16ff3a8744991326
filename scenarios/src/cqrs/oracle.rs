//! The `cqrs` scenario's oracle: its own decoding of the bank events (from their documented
//! JSON, with `serde_json::Value`) and its own fold into balances, statements and totals. It
//! shares no code with the projection it judges; it uses the pattern's answer types only as
//! the format to compare in.

use patterns::cqrs::view::Query;
use patterns::cqrs::view::{Entry, QueryBody, Row, Totals};
use patterns::event_sourcing::event::RecordedEvent;
use serde_json::Value;
use std::collections::BTreeMap;

/// One bank event as the oracle reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The account (from the stream name `account-<id>`).
    pub account: String,
    /// The command that made it.
    pub command_id: u64,
    /// `opened`, `deposited`, `withdrew`, `debited` or `credited`.
    pub kind: String,
    /// Cents (0 for `opened`).
    pub amount: u64,
    /// The owner, for `opened`.
    pub owner: String,
}

/// What an event is to the oracle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// A bank event of an account stream.
    Bank(Decoded),
    /// A bank event that does not decode: a projection must park it.
    Poison,
    /// Another domain's event, or a bank event outside an account stream: nothing to fold.
    Other,
}

/// Reads one recorded event.
pub fn read(event: &RecordedEvent) -> Read {
    let Some(kind) = event.data.event_type.strip_prefix("bank.") else {
        return Read::Other;
    };
    let Ok(Value::Object(payload)) = serde_json::from_slice::<Value>(&event.data.payload) else {
        return Read::Poison;
    };
    let field = |name: &str| payload.get(name).and_then(Value::as_u64);
    let text = |name: &str| payload.get(name).and_then(Value::as_str).map(str::to_owned);
    let (Some(command_id), Some(stated)) = (field("command_id"), text("kind")) else {
        return Read::Poison;
    };
    if stated != kind {
        return Read::Poison;
    }
    let (amount, owner) = match kind {
        "opened" => match text("owner") {
            Some(owner) => (0, owner),
            None => return Read::Poison,
        },
        "deposited" | "withdrew" => match field("amount") {
            Some(amount) => (amount, String::new()),
            None => return Read::Poison,
        },
        "debited" | "credited" => {
            let other = if kind == "debited" { "to" } else { "from" };
            match (field("amount"), text(other)) {
                (Some(amount), Some(_)) => (amount, String::new()),
                _ => return Read::Poison,
            }
        }
        _ => return Read::Poison,
    };
    let Some(account) = event.stream.strip_prefix("account-") else {
        return Read::Other;
    };
    Read::Bank(Decoded {
        account: account.to_owned(),
        command_id,
        kind: kind.to_owned(),
        amount,
        owner,
    })
}

/// The oracle's model of the read side after a prefix of the log.
#[derive(Clone, Debug, Default)]
pub struct Fold {
    /// Events folded (the prefix's length).
    pub position: u64,
    rows: BTreeMap<String, Row>,
    totals: Totals,
}

impl Fold {
    /// Folds the next event of the log.
    pub fn push(&mut self, event: &RecordedEvent) {
        self.position = event.position + 1;
        let Read::Bank(decoded) = read(event) else {
            return;
        };
        let row = self.rows.entry(decoded.account.clone()).or_default();
        let amount = decoded.amount as i64;
        let (kind, signed) = match decoded.kind.as_str() {
            "opened" => {
                row.owner = decoded.owner;
                self.totals.accounts += 1;
                return;
            }
            "deposited" => {
                self.totals.deposited += amount;
                ("deposit", amount)
            }
            "withdrew" => {
                self.totals.withdrawn += amount;
                ("withdrawal", -amount)
            }
            "debited" => {
                self.totals.in_transit += amount;
                ("transfer-out", -amount)
            }
            _ => {
                self.totals.in_transit -= amount;
                ("transfer-in", amount)
            }
        };
        row.balance += signed;
        self.totals.balances += signed;
        row.entries.push(Entry {
            position: event.position,
            command_id: decoded.command_id,
            kind: kind.into(),
            amount: signed,
        });
    }

    /// What a faithful read model at this position answers to `query`.
    pub fn expected(&self, query: &Query) -> QueryBody {
        match query {
            Query::Balance(account) => {
                QueryBody::Balance(self.rows.get(account).map(|row| row.balance))
            }
            Query::Statement(account) => {
                QueryBody::Statement(self.rows.get(account).map(|row| row.entries.clone()))
            }
            Query::Totals => QueryBody::Totals(self.totals),
            Query::Dump => QueryBody::Dump {
                rows: self.rows.clone(),
                totals: self.totals,
            },
        }
    }
}

/// Where an answer breaks the conservation rule (money is neither created nor destroyed:
/// `balances + in transit = deposited - withdrawn`, nothing in transit below zero; no
/// balance below zero), judged on the answer alone.
pub fn conservation_broken(body: &QueryBody) -> Option<String> {
    let totals_broken = |totals: &Totals| {
        let money = totals.balances + totals.in_transit;
        let net = totals.deposited - totals.withdrawn;
        if money != net || totals.in_transit < 0 || totals.balances < 0 {
            Some(format!(
                "balances {} + in transit {} != deposited {} - withdrawn {}",
                totals.balances, totals.in_transit, totals.deposited, totals.withdrawn
            ))
        } else {
            None
        }
    };
    match body {
        QueryBody::Balance(Some(balance)) if *balance < 0 => {
            Some(format!("a balance of {balance}"))
        }
        QueryBody::Statement(Some(entries)) => {
            let mut balance = 0i64;
            for entry in entries {
                balance += entry.amount;
                if balance < 0 {
                    return Some(format!(
                        "the statement goes to {balance} at position {}",
                        entry.position
                    ));
                }
            }
            None
        }
        QueryBody::Totals(totals) => totals_broken(totals),
        QueryBody::Dump { rows, totals } => {
            if let Some((account, row)) = rows.iter().find(|(_, row)| row.balance < 0) {
                return Some(format!(
                    "account {account} has a balance of {}",
                    row.balance
                ));
            }
            let sum: i64 = rows.values().map(|row| row.balance).sum();
            if sum != totals.balances {
                return Some(format!(
                    "the balances add up to {sum}, the totals say {}",
                    totals.balances
                ));
            }
            totals_broken(totals)
        }
        _ => None,
    }
}
