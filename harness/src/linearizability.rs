//! A linearizability checker in the style of Porcupine: the Wing & Gong search with Lowe's
//! memoization, and P-compositionality.
//!
//! A [`History`] is linearizable with respect to a sequential [`Model`] when every
//! completed operation can be given a single instant inside its call..return interval such
//! that applying the operations in that order to the model yields the recorded outputs.
//! Indeterminate operations (no response) may take effect at any instant after their call,
//! or never, following Jepsen.
//!
//! The search walks the events in time order, tries to linearize each operation whose call
//! comes before the first outstanding return, and backtracks when an operation cannot be
//! placed before its return. A memo of every (set of linearized operations, model state)
//! pair already explored cuts the repeated work (Lowe, "Testing for linearizability", 2017).
//! A model may split a history into independent parts ([`Model::partition`], for example per
//! key or per stream); each part is checked alone, which is what makes the check fast on
//! long histories (Horn & Kroening, "Faster linearizability checking via
//! P-compositionality", 2015). The search is bounded by [`CheckLimits`] and answers
//! [`CheckResult::Unknown`] rather than running for ever.
//!
//! ```
//! use harness::history::History;
//! use harness::linearizability::{check, CheckLimits, CheckResult};
//! use harness::linearizability::models::{Register, RegisterInput, RegisterOutput};
//!
//! let mut history = History::new();
//! let write = history.invoke(1, RegisterInput::Write(1), 0).unwrap();
//! history.complete(write, RegisterOutput::WriteOk, 10).unwrap();
//! let read = history.invoke(2, RegisterInput::Read, 20).unwrap();
//! history.complete(read, RegisterOutput::ReadOk(0), 30).unwrap(); // stale read
//! let result = check(&Register::new(0), &history, &CheckLimits::default());
//! assert!(result.is_illegal(), "{result}");
//! ```

pub mod models;

use crate::history::{describe, render_timeline, History, OpId, Operation};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Debug, Display, Write as _};

/// A sequential specification: the state machine that a linearizable history must match.
pub trait Model {
    /// The model's state; compared and ordered for the memo.
    type State: Clone + Ord + Debug;
    /// An operation's request.
    type Input: Debug;
    /// An operation's response.
    type Output: Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after `input` answered with `output` in `state`, or `None` when that
    /// output is impossible from that state.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;

    /// The states an indeterminate operation (no response seen) can lead to *if it took
    /// effect*, with any output. The checker separately considers that it never took
    /// effect, so an outcome that changes nothing (a read, a refused write) need not be
    /// listed; return an empty `Vec` when the operation can only leave the state unchanged.
    fn step_unknown(&self, state: &Self::State, input: &Self::Input) -> Vec<Self::State>;

    /// Splits the operations into parts that are linearizable independently (the model's
    /// state is a product of independent parts, each touched by one part's operations).
    /// Every operation should be in exactly one part. The default is one part holding all.
    fn partition(&self, operations: &[Operation<Self::Input, Self::Output>]) -> Vec<Partition> {
        vec![Partition::whole(operations.len())]
    }
}

/// One independent part of a history: indices into the history's operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// A readable name for reports, for example the key or stream.
    pub label: String,
    /// Indices into the slice given to [`Model::partition`].
    pub operations: Vec<usize>,
}

impl Partition {
    /// One part holding all `operation_count` operations, labelled `all`.
    pub fn whole(operation_count: usize) -> Self {
        Self {
            label: "all".to_string(),
            operations: (0..operation_count).collect(),
        }
    }

    /// One part per distinct key, in key order, labelled with the key's `Debug` form.
    pub fn by_key<T, K: Ord + Debug>(items: &[T], key: impl Fn(&T) -> K) -> Vec<Partition> {
        let mut parts: BTreeMap<K, Vec<usize>> = BTreeMap::new();
        for (index, item) in items.iter().enumerate() {
            parts.entry(key(item)).or_default().push(index);
        }
        parts
            .into_iter()
            .map(|(key, operations)| Partition {
                label: format!("{key:?}"),
                operations,
            })
            .collect()
    }
}

/// Bounds on the search, per partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckLimits {
    /// The most search steps (an attempt to linearize one operation, or one backtrack)
    /// spent on one partition before answering [`CheckResult::Unknown`].
    pub steps_max: u64,
    /// The most memo entries kept for one partition (this bounds memory: an entry holds a
    /// model state and a compressed set of operations) before answering
    /// [`CheckResult::Unknown`].
    pub memo_entries_max: usize,
}

impl Default for CheckLimits {
    /// Limits that keep one partition under about a second in a release build (measured
    /// at roughly 10 million steps a second on short-state models).
    fn default() -> Self {
        Self {
            steps_max: 10_000_000,
            memo_entries_max: 1_000_000,
        }
    }
}

/// The verdict of [`check`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum CheckResult {
    /// Every partition is linearizable.
    Ok,
    /// A partition is not linearizable.
    Illegal {
        /// The label of the first partition found not linearizable.
        partition: String,
        /// How far the search got, and what could not be placed.
        explanation: Explanation,
    },
    /// No partition is known illegal, but the search limit stopped the check of one.
    Unknown {
        /// Which partition and which limit.
        reason: String,
    },
}

impl CheckResult {
    /// Whether the history is linearizable.
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    /// Whether the history is shown not linearizable.
    pub fn is_illegal(&self) -> bool {
        matches!(self, CheckResult::Illegal { .. })
    }

    /// Whether the search limit stopped the check.
    pub fn is_unknown(&self) -> bool {
        matches!(self, CheckResult::Unknown { .. })
    }
}

impl Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Ok => f.write_str("linearizable"),
            CheckResult::Illegal {
                partition,
                explanation,
            } => write!(
                f,
                "not linearizable (partition {partition})\n{}",
                explanation.report
            ),
            CheckResult::Unknown { reason } => write!(f, "unknown: {reason}"),
        }
    }
}

/// Why a partition is not linearizable: the longest linearizable prefix the search found,
/// and the operations that could not come next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The longest linearizable prefix found, in linearization order.
    pub linearized: Vec<OpId>,
    /// The model state after that prefix (its `Debug` form).
    pub state_after: String,
    /// The operations that could have come next (called before `blocking` returned);
    /// none of them leads to a linearization.
    pub candidates: Vec<OpId>,
    /// The operation whose return was reached before it could be linearized.
    pub blocking: OpId,
    /// All of the above as readable text, with a timeline of the operations involved.
    pub report: String,
}

impl Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report)
    }
}

/// Checks `history` against `model`, partition by partition, within `limits` per
/// partition. Returns the first illegal partition found; otherwise `Unknown` if the limit
/// stopped any partition; otherwise `Ok`.
///
/// # Panics
/// If the model's [`Model::partition`] returns an index out of range (a bug in the model).
pub fn check<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    limits: &CheckLimits,
) -> CheckResult {
    let operations = history.operations();
    let mut unknown = None;
    for partition in model.partition(operations) {
        let ops: Vec<&Operation<M::Input, M::Output>> = partition
            .operations
            .iter()
            .map(|&i| {
                assert!(
                    i < operations.len(),
                    "Model::partition returned index {i} for {} operations",
                    operations.len()
                );
                &operations[i]
            })
            .collect();
        match Search::new(model, ops, limits).run() {
            Outcome::Linearizable => {}
            Outcome::Illegal(deepest) => {
                return CheckResult::Illegal {
                    explanation: deepest.explain(&partition.label),
                    partition: partition.label,
                };
            }
            Outcome::LimitReached(limit) => {
                unknown.get_or_insert_with(|| format!("partition {}: {limit}", partition.label));
            }
        }
    }
    match unknown {
        Some(reason) => CheckResult::Unknown { reason },
        None => CheckResult::Ok,
    }
}

/// The result of searching one partition.
enum Outcome<'a, I, O> {
    Linearizable,
    Illegal(Deepest<'a, I, O>),
    LimitReached(String),
}

/// Where the search got furthest, recorded for the explanation.
struct Deepest<'a, I, O> {
    linearized: Vec<&'a Operation<I, O>>,
    state_after: String,
    candidates: Vec<&'a Operation<I, O>>,
    blocking: &'a Operation<I, O>,
}

/// At most this many operations of the prefix are listed in a report.
const REPORT_PREFIX_MAX: usize = 20;

impl<I: Debug, O: Debug> Deepest<'_, I, O> {
    fn explain(&self, label: &str) -> Explanation {
        let total = self.linearized.len();
        let shown = total.min(REPORT_PREFIX_MAX);
        let mut report =
            format!("partition {label}: the longest linearizable prefix has {total} operations");
        if shown < total {
            let _ = write!(report, " (the last {shown} shown)");
        }
        report.push_str(":\n");
        for op in &self.linearized[total - shown..] {
            let _ = writeln!(report, "  {} {}", op.id, describe(op));
        }
        let _ = writeln!(report, "state after it: {}", self.state_after);
        let blocking = self.blocking;
        let _ = writeln!(
            report,
            "no candidate below leads to a linearization; {} had to take effect before its return:",
            blocking.id
        );
        for op in &self.candidates {
            let _ = writeln!(report, "  {} {}", op.id, describe(op));
        }
        let mut involved: Vec<&Operation<I, O>> = self.linearized[total - shown..].to_vec();
        involved.extend(self.candidates.iter().copied());
        let _ = write!(
            report,
            "timeline of these operations:\n{}",
            render_timeline(&involved)
        );
        Explanation {
            linearized: self.linearized.iter().map(|op| op.id).collect(),
            state_after: self.state_after.clone(),
            candidates: self.candidates.iter().map(|op| op.id).collect(),
            blocking: blocking.id,
            report,
        }
    }
}

/// The list head's node index; the tail is the last node.
const HEAD: usize = 0;

/// A doubly linked list of call and return events over fixed nodes, with O(1) removal and
/// re-insertion in LIFO order ("dancing links").
struct EventList {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl EventList {
    /// Nodes `0` (head) to `event_count + 1` (tail), chained in order.
    fn new(event_count: usize) -> Self {
        let nodes = event_count + 2;
        Self {
            next: (1..=nodes).collect(),
            prev: (0..nodes).map(|n| n.saturating_sub(1)).collect(),
        }
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        self.prev[next] = prev;
    }

    /// Undoes the matching `unlink`; valid only in reverse order of the unlinks.
    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        self.prev[next] = node;
    }
}

/// A fixed-size set of operation indices.
#[derive(Clone)]
struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
        }
    }

    fn set(&mut self, index: usize) {
        self.words[index / 64] |= 1 << (index % 64);
    }

    fn clear(&mut self, index: usize) {
        self.words[index / 64] &= !(1 << (index % 64));
    }

    /// A compact key: the count of leading full words, then the remaining words without
    /// trailing zero words. Operations are indexed in call order and the search linearizes
    /// roughly in that order, so the set is mostly a full prefix and the key stays short.
    fn key(&self) -> BitKey {
        let full = self.words.iter().take_while(|&&w| w == u64::MAX).count();
        let rest = &self.words[full..];
        let used = rest.len() - rest.iter().rev().take_while(|&&w| w == 0).count();
        BitKey {
            full_words: full,
            rest: rest[..used].into(),
        }
    }
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct BitKey {
    full_words: usize,
    rest: Box<[u64]>,
}

/// The states an operation may lead to, tried one after the other.
enum Successors<S> {
    /// A completed operation: at most one state.
    Known(Option<S>),
    /// An indeterminate operation: any number of states, tried from the back.
    Unknown(Vec<S>),
}

impl<S> Successors<S> {
    fn pop(&mut self) -> Option<S> {
        match self {
            Successors::Known(state) => state.take(),
            Successors::Unknown(states) => states.pop(),
        }
    }
}

/// One linearized operation on the search stack.
struct Frame<S> {
    node: usize,
    op: usize,
    state_before: S,
    untried: Successors<S>,
}

/// The search over one partition.
struct Search<'a, M: Model> {
    model: &'a M,
    limits: &'a CheckLimits,
    /// The partition's operations in call order; an operation's index is its bit.
    ops: Vec<&'a Operation<M::Input, M::Output>>,
    list: EventList,
    /// For each event node: the operation and whether it is the call (else the return).
    node_op: Vec<usize>,
    node_is_call: Vec<bool>,
    call_node: Vec<usize>,
    return_node: Vec<Option<usize>>,
    state: M::State,
    linearized: BitSet,
    completed_unlinearized: usize,
    stack: Vec<Frame<M::State>>,
    memo: BTreeSet<(BitKey, M::State)>,
    steps: u64,
    depth_max: usize,
    deepest_pending: bool,
    deepest: Option<Deepest<'a, M::Input, M::Output>>,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(
        model: &'a M,
        mut ops: Vec<&'a Operation<M::Input, M::Output>>,
        limits: &'a CheckLimits,
    ) -> Self {
        ops.sort_by_key(|op| (op.call_ns, op.id));
        // Events in time order; at equal times calls come first, so that an operation
        // returning at t and one called at t are concurrent.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (index, op) in ops.iter().enumerate() {
            events.push((op.call_ns, false, index));
            if let Some(return_ns) = op.return_ns {
                events.push((return_ns, true, index));
            }
        }
        events.sort_unstable();
        let nodes = events.len() + 2;
        let mut search = Self {
            model,
            limits,
            list: EventList::new(events.len()),
            node_op: vec![usize::MAX; nodes],
            node_is_call: vec![false; nodes],
            call_node: vec![0; ops.len()],
            return_node: vec![None; ops.len()],
            state: model.init(),
            linearized: BitSet::new(ops.len()),
            completed_unlinearized: ops.iter().filter(|op| op.is_complete()).count(),
            stack: Vec::new(),
            memo: BTreeSet::new(),
            steps: 0,
            depth_max: 0,
            deepest_pending: true,
            deepest: None,
            ops,
        };
        for (position, &(_, is_return, op)) in events.iter().enumerate() {
            let node = position + 1;
            search.node_op[node] = op;
            search.node_is_call[node] = !is_return;
            if is_return {
                search.return_node[op] = Some(node);
            } else {
                search.call_node[op] = node;
            }
        }
        search
    }

    fn run(mut self) -> Outcome<'a, M::Input, M::Output> {
        let mut node = self.list.next[HEAD];
        loop {
            if self.completed_unlinearized == 0 {
                return Outcome::Linearizable;
            }
            if let Some(limit) = self.limit_reached() {
                return Outcome::LimitReached(limit);
            }
            self.steps += 1;
            // The first outstanding return comes before the tail while a completed
            // operation is not linearized.
            assert!(node != self.list.next.len() - 1, "walked past every return");
            if self.node_is_call[node] {
                let op = self.node_op[node];
                let successors = self.successors(op);
                node = if self.push_first_new(node, op, successors) {
                    self.list.next[HEAD]
                } else {
                    self.list.next[node]
                };
            } else {
                self.note_deepest(node);
                match self.backtrack() {
                    Some(next) => node = next,
                    None => return Outcome::Illegal(self.deepest.expect("noted above")),
                }
            }
        }
    }

    fn limit_reached(&self) -> Option<String> {
        if self.steps >= self.limits.steps_max {
            return Some(format!(
                "search limit reached: {} steps (steps_max), {} operations",
                self.steps,
                self.ops.len()
            ));
        }
        if self.memo.len() >= self.limits.memo_entries_max {
            return Some(format!(
                "search limit reached: {} memo entries (memo_entries_max), {} operations",
                self.memo.len(),
                self.ops.len()
            ));
        }
        None
    }

    fn successors(&self, op: usize) -> Successors<M::State> {
        let operation = self.ops[op];
        match &operation.output {
            Some(output) => {
                Successors::Known(self.model.step(&self.state, &operation.input, output))
            }
            None => {
                let mut states = self.model.step_unknown(&self.state, &operation.input);
                states.reverse(); // tried from the back, so in the model's order
                Successors::Unknown(states)
            }
        }
    }

    /// Linearizes `op` next with the first untried successor state not seen before with
    /// the same linearized set. Returns whether one was found.
    fn push_first_new(
        &mut self,
        node: usize,
        op: usize,
        mut untried: Successors<M::State>,
    ) -> bool {
        self.linearized.set(op);
        while let Some(candidate) = untried.pop() {
            if self.memo.insert((self.linearized.key(), candidate.clone())) {
                let state_before = std::mem::replace(&mut self.state, candidate);
                self.stack.push(Frame {
                    node,
                    op,
                    state_before,
                    untried,
                });
                self.lift(op);
                if self.stack.len() > self.depth_max {
                    self.depth_max = self.stack.len();
                    self.deepest_pending = true;
                }
                return true;
            }
        }
        self.linearized.clear(op);
        false
    }

    /// Undoes the last linearization, then tries that operation's other successors.
    /// Returns the node to continue from, or `None` when nothing is left to undo.
    fn backtrack(&mut self) -> Option<usize> {
        let frame = self.stack.pop()?;
        self.state = frame.state_before;
        self.linearized.clear(frame.op);
        self.unlift(frame.op);
        if self.push_first_new(frame.node, frame.op, frame.untried) {
            Some(self.list.next[HEAD])
        } else {
            Some(self.list.next[frame.node])
        }
    }

    fn lift(&mut self, op: usize) {
        self.list.unlink(self.call_node[op]);
        if let Some(return_node) = self.return_node[op] {
            self.list.unlink(return_node);
            self.completed_unlinearized -= 1;
        }
    }

    fn unlift(&mut self, op: usize) {
        if let Some(return_node) = self.return_node[op] {
            self.list.relink(return_node);
            self.completed_unlinearized += 1;
        }
        self.list.relink(self.call_node[op]);
    }

    /// Records the search position when it is the deepest yet, at the moment it gets
    /// stuck at `return_node`: the first outstanding return in the list.
    fn note_deepest(&mut self, return_node: usize) {
        if !self.deepest_pending || self.stack.len() < self.depth_max {
            return;
        }
        self.deepest_pending = false;
        let mut candidates = Vec::new();
        let mut node = self.list.next[HEAD];
        while node != return_node {
            candidates.push(self.ops[self.node_op[node]]);
            node = self.list.next[node];
        }
        let blocking = self.ops[self.node_op[return_node]];
        if !candidates.iter().any(|op| op.id == blocking.id) {
            candidates.push(blocking);
        }
        self.deepest = Some(Deepest {
            linearized: self.stack.iter().map(|frame| self.ops[frame.op]).collect(),
            state_after: format!("{:?}", self.state),
            candidates,
            blocking,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset_key_compresses_full_prefix_and_trailing_zeros() {
        let mut bits = BitSet::new(64 * 4);
        for i in 0..64 {
            bits.set(i);
        }
        bits.set(64 + 3);
        let key = bits.key();
        assert_eq!(key.full_words, 1);
        assert_eq!(&*key.rest, &[1 << 3]);
        bits.clear(64 + 3);
        assert_eq!(bits.key().rest.len(), 0);
        bits.clear(0);
        assert_eq!(bits.key().full_words, 0);
        assert_eq!(bits.key().rest.len(), 1);
    }

    #[test]
    fn event_list_unlinks_and_relinks_in_lifo_order() {
        let mut list = EventList::new(3);
        list.unlink(2);
        list.unlink(1);
        assert_eq!(list.next[HEAD], 3);
        assert_eq!(list.prev[3], HEAD);
        list.relink(1);
        list.relink(2);
        assert_eq!(list.next, vec![1, 2, 3, 4, 5]);
        assert_eq!(list.prev[4], 3);
    }

    #[test]
    fn partition_by_key_groups_in_key_order() {
        let parts = Partition::by_key(&["b", "a", "b"], |s| *s);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].label, "\"a\"");
        assert_eq!(parts[0].operations, vec![1]);
        assert_eq!(parts[1].operations, vec![0, 2]);
    }
}
