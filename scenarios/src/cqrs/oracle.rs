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
    /// The other account of a transfer (`to` of a debit, `from` of a credit); empty otherwise.
    pub counterpart: String,
    /// The principal in the event's metadata, if any.
    pub principal: Option<String>,
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
    let (amount, owner, counterpart) = match kind {
        "opened" => match text("owner") {
            Some(owner) => (0, owner, String::new()),
            None => return Read::Poison,
        },
        "deposited" | "withdrew" => match field("amount") {
            Some(amount) => (amount, String::new(), String::new()),
            None => return Read::Poison,
        },
        "debited" | "credited" => {
            let other = if kind == "debited" { "to" } else { "from" };
            match (field("amount"), text(other)) {
                (Some(amount), Some(counterpart)) => (amount, String::new(), counterpart),
                _ => return Read::Poison,
            }
        }
        _ => return Read::Poison,
    };
    // The principal, when present, is a string (or null): anything else does not decode.
    if payload
        .get("principal")
        .is_some_and(|p| !p.is_string() && !p.is_null())
    {
        return Read::Poison;
    }
    // The documented bound (ten trillion units in cents): beyond it an amount is poison.
    if amount > 1_000_000_000_000_000 {
        return Read::Poison;
    }
    let Some(account) = event.stream.strip_prefix("account-") else {
        return Read::Other;
    };
    Read::Bank(Decoded {
        account: account.to_owned(),
        command_id,
        kind: kind.to_owned(),
        amount,
        owner,
        counterpart,
        principal: text("principal"),
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

/// Where an answer breaks the conservation rule (money is neither created nor destroyed; no
/// balance below zero), judged on the answer alone. A dump is judged from its statements,
/// with arithmetic of its own: every balance is the sum of its entries; every transfer-in
/// pairs with one transfer-out of the same command and amount; the totals are what the
/// entries say (deposits, withdrawals, transfers out not yet in); so balances + in transit
/// = deposited - withdrawn.
pub fn conservation_broken(body: &QueryBody) -> Option<String> {
    match body {
        QueryBody::Balance(Some(balance)) if *balance < 0 => {
            Some(format!("a balance of {balance}"))
        }
        QueryBody::Statement(Some(entries)) => statement_broken(entries),
        QueryBody::Totals(totals) => totals_broken(totals),
        QueryBody::Dump { rows, totals } => dump_broken(rows, totals),
        _ => None,
    }
}

fn totals_broken(totals: &Totals) -> Option<String> {
    if totals.in_transit < 0 {
        return Some(format!("{} in transit", totals.in_transit));
    }
    if totals.balances < 0 {
        return Some(format!("the balances add up to {}", totals.balances));
    }
    let money = i128::from(totals.balances) + i128::from(totals.in_transit);
    let net = i128::from(totals.deposited) - i128::from(totals.withdrawn);
    if money != net {
        return Some(format!(
            "balances {} + in transit {} = {money}, but deposited {} - withdrawn {} = {net}",
            totals.balances, totals.in_transit, totals.deposited, totals.withdrawn
        ));
    }
    None
}

fn statement_broken(entries: &[Entry]) -> Option<String> {
    let mut balance = 0i128;
    for entry in entries {
        balance += i128::from(entry.amount);
        if balance < 0 {
            return Some(format!(
                "the statement goes to {balance} at position {}",
                entry.position
            ));
        }
    }
    None
}

fn dump_broken(rows: &BTreeMap<String, Row>, totals: &Totals) -> Option<String> {
    let mut deposited = 0i128;
    let mut withdrawn = 0i128;
    let mut balances = 0i128;
    // Per transfer (command id): the amount out, the amounts in.
    let mut out: BTreeMap<u64, i128> = BTreeMap::new();
    let mut into: BTreeMap<u64, Vec<i128>> = BTreeMap::new();
    for (account, row) in rows {
        if let Some(broken) = statement_broken(&row.entries) {
            return Some(format!("account {account}: {broken}"));
        }
        let sum: i128 = row.entries.iter().map(|e| i128::from(e.amount)).sum();
        if sum != i128::from(row.balance) {
            return Some(format!(
                "account {account}: a balance of {} but entries adding up to {sum}",
                row.balance
            ));
        }
        balances += sum;
        for entry in &row.entries {
            let amount = i128::from(entry.amount);
            match entry.kind.as_str() {
                "deposit" => deposited += amount,
                "withdrawal" => withdrawn -= amount,
                "transfer-out" => {
                    if out.insert(entry.command_id, -amount).is_some() {
                        return Some(format!("transfer {:#x} debited twice", entry.command_id));
                    }
                }
                "transfer-in" => into.entry(entry.command_id).or_default().push(amount),
                other => return Some(format!("account {account}: an entry of kind {other}")),
            }
        }
    }
    let mut in_transit = 0i128;
    for (command, amount) in &out {
        match into.remove(command).as_deref() {
            None => in_transit += amount,
            Some([credited]) if credited == amount => {}
            Some(credits) => {
                return Some(format!(
                    "transfer {command:#x} debited {amount} but credited {credits:?}"
                ))
            }
        }
    }
    if let Some((command, credits)) = into.iter().next() {
        return Some(format!(
            "transfer {command:#x} credited {credits:?} without a debit: money created"
        ));
    }
    let said = (
        i128::from(totals.balances),
        i128::from(totals.in_transit),
        i128::from(totals.deposited),
        i128::from(totals.withdrawn),
    );
    if said != (balances, in_transit, deposited, withdrawn) {
        return Some(format!(
            "the totals say balances {}, in transit {}, deposited {}, withdrawn {}; the statements say {balances}, {in_transit}, {deposited}, {withdrawn}",
            said.0, said.1, said.2, said.3
        ));
    }
    totals_broken(totals)
}
