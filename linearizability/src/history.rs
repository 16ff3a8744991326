//! A history of client operations with simulated times, for checkers to read.
//!
//! A workload records each request as it is sent ([`History::invoke`]) and each response as
//! it arrives ([`History::complete`]). Requests that get no response stay *indeterminate*:
//! following Jepsen, such an operation may or may not have taken effect, at any moment after
//! its call, so a checker treats it as concurrent with everything after its call. A request
//! known never to have taken effect (refused before it was sent, rejected by a definite
//! error) is removed with [`History::fail_definitely`].
//!
//! Times are nanoseconds of one clock shared by all clients: the simulator's global time,
//! never a node's own clock, which may be skewed. Operation `a` precedes operation `b` when
//! `a` returned strictly before `b` was called; equal times mean the two are concurrent.
//!
//! ```
//! use linearizability::history::History;
//!
//! let mut history: History<&str, u64> = History::new();
//! let write = history.invoke(1, "write 7", 100).unwrap();
//! let read = history.invoke(2, "read", 150).unwrap();
//! history.complete(write, 0, 200).unwrap();
//! // The read never got a response: it stays indeterminate.
//! history.mark_indeterminate(read).unwrap();
//! assert_eq!(history.len(), 2);
//! println!("{history}");
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::{self, Debug, Display, Write as _};

/// The identifier of an operation in a [`History`], unique within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpId(pub u64);

impl Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One client operation: what was asked, when, and what came back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation<I, O> {
    /// Unique within the history; increases with each invocation.
    pub id: OpId,
    /// The client (or process) that issued the operation; only a label for reports.
    pub client: u64,
    /// The request.
    pub input: I,
    /// When the request was issued, in nanoseconds of the shared clock.
    pub call_ns: u64,
    /// The response; `None` when none was seen (timed out, client crashed, still pending):
    /// the operation is then indeterminate.
    pub output: Option<O>,
    /// When the response arrived; `Some` exactly when `output` is.
    pub return_ns: Option<u64>,
}

impl<I, O> Operation<I, O> {
    /// Whether a response was seen.
    pub fn is_complete(&self) -> bool {
        self.output.is_some()
    }

    /// Whether `self` returned strictly before `other` was called, so that every
    /// linearization must order `self` first.
    pub fn precedes<I2, O2>(&self, other: &Operation<I2, O2>) -> bool {
        self.return_ns.is_some_and(|r| r < other.call_ns)
    }
}

/// Why a history could not be built or loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The history already holds its maximum number of operations.
    #[error("history is full: it holds at most {ops_max} operations")]
    Full {
        /// The stated maximum.
        ops_max: usize,
    },
    /// No operation with this id is in the history (never invoked, or removed).
    #[error("operation {0} is not in the history")]
    UnknownOperation(OpId),
    /// The operation already has a response.
    #[error("operation {0} already completed")]
    AlreadyCompleted(OpId),
    /// A response time before the call time: the times come from different clocks.
    #[error("operation {op} returned at {return_ns} ns, before its call at {call_ns} ns")]
    ReturnBeforeCall {
        /// The operation.
        op: OpId,
        /// Its call time.
        call_ns: u64,
        /// The offending return time.
        return_ns: u64,
    },
    /// A stored history whose ids are not strictly increasing, or not below `next_id`.
    #[error("operation ids must be strictly increasing and below next_id; {op} is not")]
    BadId {
        /// The first offending operation.
        op: OpId,
    },
    /// An event list where a client returns with no call outstanding.
    #[error("event {position}: client {client} returns with no call outstanding")]
    ReturnWithoutCall {
        /// The event's position in the list.
        position: usize,
        /// The client.
        client: u64,
    },
    /// An event list where a client calls while its previous call is outstanding.
    #[error("event {position}: client {client} calls while its previous call is outstanding")]
    CallWhileOutstanding {
        /// The event's position in the list.
        position: usize,
        /// The client.
        client: u64,
    },
    /// A stored operation with an output but no return time, or the reverse.
    #[error("operation {op} must have both an output and a return time, or neither")]
    HalfComplete {
        /// The offending operation.
        op: OpId,
    },
}

/// One event of a history known only by its order (Porcupine's and Jepsen's event lists):
/// a client's call or return. A client has at most one call outstanding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event<I, O> {
    /// The client sent a request.
    Call {
        /// The client.
        client: u64,
        /// The request.
        input: I,
    },
    /// The client's outstanding request returned.
    Return {
        /// The client.
        client: u64,
        /// The response.
        output: O,
    },
}

/// The default bound on the number of operations in a [`History`].
pub const OPS_MAX_DEFAULT: usize = 100_000;

/// A bounded, serializable history of client operations (see the module docs).
///
/// Deserialization validates the same rules as the builder, so a stored history loaded from
/// a corrupt file gives a [`HistoryError`] rather than confusing a checker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "StoredHistory<I, O>",
    bound(
        serialize = "I: Serialize, O: Serialize",
        deserialize = "I: Deserialize<'de>, O: Deserialize<'de>"
    )
)]
pub struct History<I, O> {
    ops_max: usize,
    next_id: u64,
    failed_definitely_count: u64,
    /// Operations refused because the history was full: a history that refused any is not the
    /// whole story, and a checker must not judge it as if it were.
    #[serde(default)]
    refused: u64,
    operations: Vec<Operation<I, O>>,
}

/// The serialized shape of a [`History`], validated on the way in.
#[derive(Deserialize)]
struct StoredHistory<I, O> {
    ops_max: usize,
    next_id: u64,
    failed_definitely_count: u64,
    #[serde(default)]
    refused: u64,
    operations: Vec<Operation<I, O>>,
}

impl<I, O> TryFrom<StoredHistory<I, O>> for History<I, O> {
    type Error = HistoryError;

    fn try_from(stored: StoredHistory<I, O>) -> Result<Self, HistoryError> {
        let mut history = Self::from_operations(stored.operations, stored.ops_max)?;
        if history.next_id > stored.next_id {
            let op = history.operations.last().map_or(OpId(0), |op| op.id);
            return Err(HistoryError::BadId { op });
        }
        history.next_id = stored.next_id;
        history.failed_definitely_count = stored.failed_definitely_count;
        history.refused = stored.refused;
        Ok(history)
    }
}

impl<I, O> Default for History<I, O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I, O> History<I, O> {
    /// An empty history holding at most [`OPS_MAX_DEFAULT`] operations.
    pub fn new() -> Self {
        Self::with_ops_max(OPS_MAX_DEFAULT)
    }

    /// An empty history holding at most `ops_max` operations.
    pub fn with_ops_max(ops_max: usize) -> Self {
        Self {
            ops_max,
            next_id: 0,
            failed_definitely_count: 0,
            refused: 0,
            operations: Vec::new(),
        }
    }

    /// A history of already recorded operations, checked: ids strictly increasing, output
    /// and return time both present or both absent, no return before its call, at most
    /// `ops_max` operations.
    pub fn from_operations(
        operations: Vec<Operation<I, O>>,
        ops_max: usize,
    ) -> Result<Self, HistoryError> {
        if operations.len() > ops_max {
            return Err(HistoryError::Full { ops_max });
        }
        let mut id_min = 0;
        for op in &operations {
            if op.id.0 < id_min {
                return Err(HistoryError::BadId { op: op.id });
            }
            id_min = op.id.0 + 1;
            if op.output.is_some() != op.return_ns.is_some() {
                return Err(HistoryError::HalfComplete { op: op.id });
            }
            if let Some(return_ns) = op.return_ns.filter(|&r| r < op.call_ns) {
                let call_ns = op.call_ns;
                return Err(HistoryError::ReturnBeforeCall {
                    op: op.id,
                    call_ns,
                    return_ns,
                });
            }
        }
        Ok(Self {
            ops_max,
            next_id: id_min,
            failed_definitely_count: 0,
            refused: 0,
            operations,
        })
    }

    /// A history of events known only by their order: each event's time is its position in
    /// `events` (the checker uses times only to order calls and returns, so no time is
    /// invented). Calls without a return stay indeterminate. Holds at most `ops_max`
    /// operations.
    pub fn from_events(
        events: impl IntoIterator<Item = Event<I, O>>,
        ops_max: usize,
    ) -> Result<Self, HistoryError> {
        let mut history = Self::with_ops_max(ops_max);
        let mut outstanding: BTreeMap<u64, OpId> = BTreeMap::new();
        for (position, event) in events.into_iter().enumerate() {
            let now_ns = position as u64;
            match event {
                Event::Call { client, input } => {
                    if outstanding.contains_key(&client) {
                        return Err(HistoryError::CallWhileOutstanding { position, client });
                    }
                    let op = history.invoke(client, input, now_ns)?;
                    outstanding.insert(client, op);
                }
                Event::Return { client, output } => {
                    let Some(op) = outstanding.remove(&client) else {
                        return Err(HistoryError::ReturnWithoutCall { position, client });
                    };
                    history.complete(op, output, now_ns)?;
                }
            }
        }
        Ok(history)
    }

    /// The stated maximum number of operations.
    pub fn ops_max(&self) -> usize {
        self.ops_max
    }

    /// How many operations [`History::invoke`] refused because the history was full. A
    /// history that refused any cannot be judged as complete.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Records a request from `client` issued at `now_ns`; the operation is indeterminate
    /// until completed.
    pub fn invoke(&mut self, client: u64, input: I, now_ns: u64) -> Result<OpId, HistoryError> {
        if self.operations.len() >= self.ops_max {
            self.refused += 1;
            return Err(HistoryError::Full {
                ops_max: self.ops_max,
            });
        }
        let id = OpId(self.next_id);
        self.next_id += 1;
        self.operations.push(Operation {
            id,
            client,
            input,
            call_ns: now_ns,
            output: None,
            return_ns: None,
        });
        Ok(id)
    }

    /// Records the response to `op`, seen at `now_ns`. A late response to an operation
    /// marked indeterminate is accepted: it is better information.
    pub fn complete(&mut self, op: OpId, output: O, now_ns: u64) -> Result<(), HistoryError> {
        let operation = self.operation_mut(op)?;
        if operation.is_complete() {
            return Err(HistoryError::AlreadyCompleted(op));
        }
        if now_ns < operation.call_ns {
            let call_ns = operation.call_ns;
            return Err(HistoryError::ReturnBeforeCall {
                op,
                call_ns,
                return_ns: now_ns,
            });
        }
        operation.output = Some(output);
        operation.return_ns = Some(now_ns);
        Ok(())
    }

    /// Removes `op`, known NOT to have taken effect (for example the request was never
    /// sent, or the server answered with a definite rejection that changed nothing).
    pub fn fail_definitely(&mut self, op: OpId) -> Result<(), HistoryError> {
        let index = self.index_of(op)?;
        if self.operations[index].is_complete() {
            return Err(HistoryError::AlreadyCompleted(op));
        }
        self.operations.remove(index);
        self.failed_definitely_count += 1;
        Ok(())
    }

    /// States that the client gave up on `op` without a response (Jepsen's `:info`): it
    /// may or may not have taken effect. This changes nothing in the history, since an
    /// operation without a response is already indeterminate; it checks the id and makes
    /// the recording code say what it means.
    pub fn mark_indeterminate(&mut self, op: OpId) -> Result<(), HistoryError> {
        if self.operation_mut(op)?.is_complete() {
            return Err(HistoryError::AlreadyCompleted(op));
        }
        Ok(())
    }

    /// The operations, in invocation order, without those that failed definitely.
    pub fn operations(&self) -> &[Operation<I, O>] {
        &self.operations
    }

    /// The operation with this id, if it is in the history.
    pub fn get(&self, op: OpId) -> Option<&Operation<I, O>> {
        self.index_of(op).ok().map(|i| &self.operations[i])
    }

    /// The number of operations (without those that failed definitely).
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether the history holds no operation.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// How many operations were removed by [`History::fail_definitely`].
    pub fn failed_definitely_count(&self) -> u64 {
        self.failed_definitely_count
    }

    fn index_of(&self, op: OpId) -> Result<usize, HistoryError> {
        self.operations
            .binary_search_by_key(&op, |o| o.id)
            .map_err(|_| HistoryError::UnknownOperation(op))
    }

    fn operation_mut(&mut self, op: OpId) -> Result<&mut Operation<I, O>, HistoryError> {
        let index = self.index_of(op)?;
        Ok(&mut self.operations[index])
    }
}

impl<I: Debug, O: Debug> Display for History<I, O> {
    /// A per-client timeline, for failure reports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clients = self.operations.iter().map(|op| op.client);
        let client_count = clients.collect::<std::collections::BTreeSet<_>>().len();
        writeln!(
            f,
            "history: {} operations, {} clients, {} failed definitely (removed)",
            self.operations.len(),
            client_count,
            self.failed_definitely_count
        )?;
        let all: Vec<&Operation<I, O>> = self.operations.iter().collect();
        f.write_str(&render_timeline(&all))
    }
}

/// The width, in characters, of the bar column of [`render_timeline`].
const BAR_WIDTH: usize = 40;

/// Renders operations as a per-client timeline: one block per client, one line per
/// operation in call order, with a bar showing its interval on a common time axis (`>` at the
/// right edge: no response, so the operation stays open for ever).
pub fn render_timeline<I: Debug, O: Debug>(operations: &[&Operation<I, O>]) -> String {
    let time_min = operations.iter().map(|op| op.call_ns).min().unwrap_or(0);
    let time_max = operations
        .iter()
        .map(|op| op.return_ns.unwrap_or(op.call_ns))
        .max()
        .unwrap_or(0);
    let axis = Axis {
        time_min,
        span: time_max.saturating_sub(time_min).max(1),
    };
    let mut by_client: BTreeMap<u64, Vec<&Operation<I, O>>> = BTreeMap::new();
    for op in operations {
        by_client.entry(op.client).or_default().push(op);
    }
    let mut out = String::new();
    for (client, mut ops) in by_client {
        ops.sort_by_key(|op| (op.call_ns, op.id));
        let _ = writeln!(out, "client {client}");
        for op in ops {
            let _ = writeln!(out, "  {}", render_line(op, &axis));
        }
    }
    out
}

/// Maps times onto the bar column.
struct Axis {
    time_min: u64,
    span: u64,
}

impl Axis {
    fn column(&self, time_ns: u64) -> usize {
        let offset = u128::from(time_ns.saturating_sub(self.time_min));
        // `offset <= span`, so the column is at most BAR_WIDTH - 1 and fits in usize.
        (offset * (BAR_WIDTH as u128 - 1) / u128::from(self.span)) as usize
    }
}

fn render_line<I: Debug, O: Debug>(op: &Operation<I, O>, axis: &Axis) -> String {
    let start = axis.column(op.call_ns);
    let mut bar = vec![b' '; BAR_WIDTH];
    match op.return_ns {
        Some(return_ns) => bar[start..=axis.column(return_ns)].fill(b'='),
        None => {
            bar[start..].fill(b'=');
            bar[BAR_WIDTH - 1] = b'>';
        }
    }
    let bar = String::from_utf8(bar).expect("the bar is ASCII");
    format!("{:>6} |{bar}| {}", op.id.to_string(), describe(op))
}

/// One operation on one line: id, client, interval, input and output.
pub fn describe<I: Debug, O: Debug>(op: &Operation<I, O>) -> String {
    let returned = match op.return_ns {
        Some(return_ns) => format!("{return_ns}"),
        None => "open".to_string(),
    };
    let output = match &op.output {
        Some(output) => format!("{output:?}"),
        None => "? (no response)".to_string(),
    };
    format!(
        "[{}..{returned} ns] client {}: {:?} -> {output}",
        op.call_ns, op.client, op.input
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_records_calls_responses_and_removals() {
        let mut history: History<u32, u32> = History::with_ops_max(3);
        let a = history.invoke(1, 10, 5).unwrap();
        let b = history.invoke(2, 20, 6).unwrap();
        let c = history.invoke(1, 30, 7).unwrap();
        assert_eq!(
            history.invoke(3, 40, 8),
            Err(HistoryError::Full { ops_max: 3 })
        );
        history.complete(a, 11, 9).unwrap();
        assert_eq!(
            history.complete(a, 12, 10),
            Err(HistoryError::AlreadyCompleted(a))
        );
        history.fail_definitely(b).unwrap();
        assert_eq!(history.get(b), None);
        assert_eq!(
            history.complete(b, 1, 10),
            Err(HistoryError::UnknownOperation(b))
        );
        history.mark_indeterminate(c).unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history.failed_definitely_count(), 1);
        assert_eq!(history.get(a).unwrap().output, Some(11));
        assert_eq!(history.get(c).unwrap().return_ns, None);
        // Room again after a removal; ids stay unique.
        let d = history.invoke(4, 50, 11).unwrap();
        assert_eq!(d, OpId(3));
    }

    #[test]
    fn return_before_call_is_refused() {
        let mut history: History<u32, u32> = History::new();
        let a = history.invoke(1, 10, 50).unwrap();
        assert_eq!(
            history.complete(a, 1, 49),
            Err(HistoryError::ReturnBeforeCall {
                op: a,
                call_ns: 50,
                return_ns: 49
            })
        );
        history.complete(a, 1, 50).unwrap();
        assert!(history.operations()[0].is_complete());
    }

    #[test]
    fn precedes_is_strict() {
        let mut history: History<u32, u32> = History::new();
        let a = history.invoke(1, 0, 0).unwrap();
        let b = history.invoke(2, 0, 10).unwrap();
        let c = history.invoke(3, 0, 11).unwrap();
        history.complete(a, 0, 10).unwrap();
        let [a, b, c] = [a, b, c].map(|id| history.get(id).unwrap());
        assert!(!a.precedes(b), "equal times are concurrent");
        assert!(a.precedes(c));
        assert!(!c.precedes(a));
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let mut history: History<String, u32> = History::with_ops_max(10);
        let a = history.invoke(1, "w".into(), 1).unwrap();
        let b = history.invoke(2, "r".into(), 2).unwrap();
        history.complete(a, 7, 3).unwrap();
        history.fail_definitely(b).unwrap();
        let json = serde_json::to_string(&history).unwrap();
        let back: History<String, u32> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, history);

        let bad = json.replace("\"return_ns\":3", "\"return_ns\":0");
        let err = serde_json::from_str::<History<String, u32>>(&bad).unwrap_err();
        assert!(err.to_string().contains("before its call"), "{err}");
        let half = json.replace("\"return_ns\":3", "\"return_ns\":null");
        let err = serde_json::from_str::<History<String, u32>>(&half).unwrap_err();
        assert!(err.to_string().contains("both an output"), "{err}");
        let full = json.replace("\"ops_max\":10", "\"ops_max\":0");
        let err = serde_json::from_str::<History<String, u32>>(&full).unwrap_err();
        assert!(err.to_string().contains("at most 0"), "{err}");
        let stale_next = json.replace("\"next_id\":2", "\"next_id\":0");
        let err = serde_json::from_str::<History<String, u32>>(&stale_next).unwrap_err();
        assert!(err.to_string().contains("strictly increasing"), "{err}");
    }

    #[test]
    fn from_events_orders_by_position_and_refuses_bad_lists() {
        let call = |client, input| Event::Call { client, input };
        let ret = |client, output| Event::Return { client, output };
        let events = vec![call(1, "w"), call(2, "r"), ret(1, "ok"), call(1, "r2")];
        let history: History<&str, &str> = History::from_events(events, 10).unwrap();
        let ops = history.operations();
        assert_eq!(ops.len(), 3);
        assert_eq!((ops[0].call_ns, ops[0].return_ns), (0, Some(2)));
        assert_eq!((ops[1].call_ns, ops[1].return_ns), (1, None));
        assert!(ops[0].precedes(&ops[2]));
        assert!(!ops[0].precedes(&ops[1]));
        let err = History::<&str, &str>::from_events(vec![ret(1, "ok")], 10).unwrap_err();
        assert_eq!(
            err,
            HistoryError::ReturnWithoutCall {
                position: 0,
                client: 1
            }
        );
        let twice = vec![call(1, "a"), call(1, "b")];
        let err = History::<&str, &str>::from_events(twice, 10).unwrap_err();
        assert_eq!(
            err,
            HistoryError::CallWhileOutstanding {
                position: 1,
                client: 1
            }
        );
        let err = History::<&str, &str>::from_events(vec![call(1, "a")], 0).unwrap_err();
        assert_eq!(err, HistoryError::Full { ops_max: 0 });
    }

    #[test]
    fn from_operations_refuses_unordered_ids() {
        let op = |id| Operation {
            id: OpId(id),
            client: 0,
            input: (),
            call_ns: 0,
            output: None::<()>,
            return_ns: None,
        };
        let err = History::from_operations(vec![op(2), op(1)], 10).unwrap_err();
        assert_eq!(err, HistoryError::BadId { op: OpId(1) });
        let ok = History::from_operations(vec![op(1), op(2)], 10).unwrap();
        assert_eq!(ok.len(), 2);
    }

    #[test]
    fn timeline_shows_each_client_and_open_operations() {
        let mut history: History<&str, &str> = History::new();
        let a = history.invoke(1, "write 1", 0).unwrap();
        let b = history.invoke(2, "read", 50).unwrap();
        history.complete(a, "ok", 100).unwrap();
        let _ = b;
        let text = history.to_string();
        assert!(text.contains("client 1\n"), "{text}");
        assert!(text.contains("client 2\n"), "{text}");
        assert!(text.contains("\"write 1\" -> \"ok\""), "{text}");
        assert!(text.contains("? (no response)"), "{text}");
        assert!(
            text.contains("=>|"),
            "open operation runs to the edge: {text}"
        );
        let first_bar = text.lines().find(|l| l.contains("write 1")).unwrap();
        assert!(first_bar.contains("|===="), "{first_bar}");
    }
}
