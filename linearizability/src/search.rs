//! The search over one partition: Wing & Gong's depth-first search over call and return
//! events, with Lowe's memo of explored configurations and a dominance rule for
//! indeterminate operations.
//!
//! A *configuration* is the set of linearized completed operations, the set of linearized
//! indeterminate operations, and the model state. Completed operations live in the *main*
//! list of call and return events in time order; indeterminate operations (no return) live
//! in the *open* list of calls. From a configuration, the candidates to linearize next are
//! the main list's calls before its first return (the *blocking* return: that operation must
//! be linearized before anything called after it returned), then the open list's calls up to
//! the blocking return's time. Completed candidates are tried first, so the search explores
//! configurations with few indeterminate operations first, which is what lets the dominance
//! rule prune the others (see [`Search::memo_insert`]).
//!
//! Indeterminate operations with equal inputs are interchangeable, and one called earlier is
//! available wherever one called later is; so among the available ones with equal inputs,
//! only the latest called is tried ([`Search::is_latest_equal`]). A successful path that
//! uses an earlier one can always be changed into one that does not: use the latest one
//! instead, and the earlier one where the path used the latest, if it did.

use super::Model;
use crate::history::{OpId, Operation};
use crate::memo::{BitSet, FixedState, Memo, MEMO_ENTRY_OVERHEAD_BYTES};
// Looked up, never iterated: the transitions' order never shows.
use std::collections::BTreeMap;
#[allow(clippy::disallowed_types)]
use std::collections::HashMap;
use std::mem::size_of;

/// How a finished search of one partition ended.
pub(crate) enum Finished<'a, I, O> {
    /// Every completed operation was linearized; the order found, indeterminate operations
    /// that took effect included.
    Linearizable(Vec<OpId>),
    /// No linearization exists. `deepest` is recorded only by a run with `record_depth`.
    Illegal {
        depth_max: usize,
        deepest: Option<Deepest<'a, I, O>>,
    },
}

/// Where the search got furthest, recorded for the explanation.
pub(crate) struct Deepest<'a, I, O> {
    pub(crate) linearized: Vec<&'a Operation<I, O>>,
    pub(crate) state_after: String,
    pub(crate) candidates: Vec<&'a Operation<I, O>>,
    pub(crate) blocking: &'a Operation<I, O>,
}

/// Runs a fresh search of `ops` to its end, recording the position at the first dead end at
/// `record_depth`. Recording the deepest position while searching would copy the stack each
/// time the search reaches a new depth, quadratic on long histories; so the first search
/// only notes the depth, and when it fails this one runs again (it is deterministic, and
/// pausing between quanta changes nothing in its path) to record the position. It takes as
/// many steps as the first, which bounds it.
pub(crate) fn explain<'a, M: Model>(
    model: &'a M,
    ops: Vec<&'a Operation<M::Input, M::Output>>,
    record_depth: usize,
) -> Option<Deepest<'a, M::Input, M::Output>> {
    let mut search = Search::new(model, ops, Some(record_depth));
    match search.run_until(u64::MAX) {
        Some(Finished::Illegal { deepest, .. }) => deepest,
        _ => None,
    }
}

/// Two doubly linked lists over fixed nodes, with O(1) removal and re-insertion in LIFO
/// order ("dancing links"). Node layout: the main head, the main events, the main tail, the
/// open head, the open calls, the open tail.
struct EventLists {
    next: Vec<usize>,
    prev: Vec<usize>,
    main_tail: usize,
    open_head: usize,
    open_tail: usize,
}

/// The main list's head node.
const MAIN_HEAD: usize = 0;

impl EventLists {
    fn new(main_len: usize, open_len: usize) -> Self {
        let main_tail = main_len + 1;
        let open_head = main_tail + 1;
        let open_tail = open_head + open_len + 1;
        let mut next: Vec<usize> = (1..=open_tail + 1).collect();
        let mut prev: Vec<usize> = (0..=open_tail).map(|n| n.saturating_sub(1)).collect();
        // Cut the chain between the two lists; the tails' `next` and heads' `prev` are unused.
        next[main_tail] = main_tail;
        next[open_tail] = open_tail;
        prev[open_head] = open_head;
        Self {
            next,
            prev,
            main_tail,
            open_head,
            open_tail,
        }
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        self.prev[next] = prev;
    }

    /// Whether `node` is in its list (not unlinked).
    fn is_linked(&self, node: usize) -> bool {
        self.next[self.prev[node]] == node
    }

    /// Undoes the matching `unlink`; valid only in reverse order of the unlinks.
    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        self.prev[next] = node;
    }
}

/// Where the scan for the next operation to linearize is.
#[derive(Clone, Copy)]
enum Cursor {
    /// At a node of the main list.
    Main(usize),
    /// At a node of the open list, after the main scan stopped at the `blocking` return.
    Open { node: usize, blocking: usize },
}

/// One linearized operation on the search stack.
struct Frame {
    node: usize,
    op: usize,
    /// The interned state before the operation.
    state_before: StateId,
    /// How many of the operation's successor states (from `state_before`) were tried.
    tried: usize,
    /// The blocking return when the operation was taken from the open list.
    blocking: Option<usize>,
}

/// An interned model state: the memo and the stack hold this index, so each distinct
/// state is stored once however many configurations reach it.
type StateId = u32;

/// The most transitions kept; the cache is emptied when it holds this many (about 2 MB).
const TRANSITIONS_MAX: usize = 1 << 16;

/// The successor states already computed, by (state, operation). The model is a function
/// of its arguments, so a transition never changes, and the search asks for the same ones
/// again and again (each configuration with the same state tries the same operations);
/// caching them saves the model's step and the look-up of its states. Emptying the cache
/// changes nothing but time.
#[derive(Default)]
#[allow(clippy::disallowed_types)] // Looked up, never iterated.
struct Transitions {
    /// (state << 32 | operation) to a range of `ids`.
    ranges: HashMap<u64, (usize, usize), FixedState>,
    ids: Vec<StateId>,
}

impl Transitions {
    fn get(&self, key: u64) -> Option<std::ops::Range<usize>> {
        self.ranges.get(&key).map(|&(start, end)| start..end)
    }

    fn insert(&mut self, key: u64, ids: Vec<StateId>) -> std::ops::Range<usize> {
        if self.ranges.len() >= TRANSITIONS_MAX {
            self.ranges.clear();
            self.ids.clear();
        }
        let start = self.ids.len();
        self.ids.extend(ids);
        self.ranges.insert(key, (start, self.ids.len()));
        start..self.ids.len()
    }
}

/// The search over one partition, resumable: [`Search::run_until`] runs it for a number of
/// steps and can be called again, so partitions can share a budget in quanta.
pub(crate) struct Search<'a, M: Model> {
    model: &'a M,
    /// The partition's operations in call order.
    ops: Vec<&'a Operation<M::Input, M::Output>>,
    /// Each operation's index in `completed_set` or `open_set` (by whether it completed).
    op_bit: Vec<usize>,
    lists: EventLists,
    /// For each node: the operation, and whether the node is its call (else its return).
    node_op: Vec<usize>,
    node_is_call: Vec<bool>,
    call_node: Vec<usize>,
    return_node: Vec<Option<usize>>,
    /// For an indeterminate operation: the next one in call order with an equal input.
    next_equal: Vec<Option<usize>>,
    state: StateId,
    /// Every state reached, once, by id.
    states: Vec<M::State>,
    state_ids: BTreeMap<M::State, StateId>,
    /// Whether each state's bytes are counted: when it is first tried as a successor (or
    /// is the initial state), not when a transition first computes it.
    state_counted: Vec<bool>,
    transitions: Transitions,
    /// The linearized completed operations.
    completed_set: BitSet,
    /// The linearized indeterminate operations.
    open_set: BitSet,
    completed_unlinearized: usize,
    stack: Vec<Frame>,
    memo: Memo,
    /// The estimated bytes held by `states` and `state_ids` (the memo counts its own).
    state_bytes: usize,
    steps: u64,
    cursor: Cursor,
    depth_max: usize,
    /// Where to record the position: at the first dead end at this depth.
    record_depth: Option<usize>,
    deepest: Option<Deepest<'a, M::Input, M::Output>>,
}

impl<'a, M: Model> Search<'a, M> {
    pub(crate) fn new(
        model: &'a M,
        mut ops: Vec<&'a Operation<M::Input, M::Output>>,
        record_depth: Option<usize>,
    ) -> Self {
        ops.sort_by_key(|op| (op.call_ns, op.id));
        // Transitions are keyed by (state, operation) in 32 bits each.
        assert!(
            u32::try_from(ops.len()).is_ok(),
            "fewer than 2^32 operations"
        );
        let completed_count = ops.iter().filter(|op| op.is_complete()).count();
        let open_count = ops.len() - completed_count;
        let lists = EventLists::new(2 * completed_count, open_count);
        let nodes = lists.open_tail + 1;
        let mut search = Self {
            model,
            op_bit: vec![0; ops.len()],
            node_op: vec![usize::MAX; nodes],
            node_is_call: vec![false; nodes],
            call_node: vec![0; ops.len()],
            return_node: vec![None; ops.len()],
            next_equal: vec![None; ops.len()],
            state: 0,
            states: Vec::new(),
            state_ids: BTreeMap::new(),
            state_counted: Vec::new(),
            transitions: Transitions::default(),
            completed_set: BitSet::new(completed_count),
            open_set: BitSet::new(open_count),
            completed_unlinearized: completed_count,
            stack: Vec::new(),
            memo: Memo::default(),
            state_bytes: 0,
            steps: 0,
            cursor: Cursor::Main(MAIN_HEAD),
            depth_max: 0,
            record_depth,
            deepest: None,
            lists,
            ops,
        };
        search.state = search.intern(model.init());
        search.count_state(search.state);
        search.cursor = Cursor::Main(search.lists.next[MAIN_HEAD]);
        search.place_events();
        search.link_equal_inputs();
        search
    }

    /// The steps taken so far: a look at one candidate operation, one backtrack, or one
    /// comparison with an explored configuration.
    pub(crate) fn steps(&self) -> u64 {
        self.steps
    }

    /// The number of explored configurations kept.
    pub(crate) fn memo_entries(&self) -> usize {
        self.memo.entries()
    }

    /// The estimated bytes of the memo and the interned states.
    pub(crate) fn memo_bytes(&self) -> usize {
        self.state_bytes + self.memo.bytes()
    }

    /// Fills `next_equal`. Quadratic in the number of indeterminate operations, which the
    /// search is exponential in anyway.
    fn link_equal_inputs(&mut self) {
        let open: Vec<usize> = (0..self.ops.len())
            .filter(|&op| !self.ops[op].is_complete())
            .collect();
        for (position, &op) in open.iter().enumerate() {
            self.next_equal[op] = open[position + 1..]
                .iter()
                .copied()
                .find(|&later| self.ops[later].input == self.ops[op].input);
        }
    }

    /// Whether no indeterminate operation with the same input as the one at the open list's
    /// `node`, called later, is also available before the `blocking` return.
    fn is_latest_equal(&self, node: usize, blocking: usize) -> bool {
        let blocking_return_ns = self.ops[self.node_op[blocking]].return_ns;
        let mut later = self.next_equal[self.node_op[node]];
        while let Some(op) = later {
            if Some(self.ops[op].call_ns) > blocking_return_ns {
                return true;
            }
            if self.lists.is_linked(self.call_node[op]) {
                return false;
            }
            later = self.next_equal[op];
        }
        true
    }

    /// Numbers the operations and fills the lists' nodes.
    fn place_events(&mut self) {
        // Main events in time order; at equal times calls come first, so that an operation
        // returning at t and one called at t are concurrent.
        let mut events: Vec<(u64, bool, usize)> = Vec::new();
        let mut open_node = self.lists.open_head;
        let (mut completed_bits, mut open_bits) = (0, 0);
        for (op, operation) in self.ops.iter().enumerate() {
            match operation.return_ns {
                Some(return_ns) => {
                    events.push((operation.call_ns, false, op));
                    events.push((return_ns, true, op));
                    self.op_bit[op] = completed_bits;
                    completed_bits += 1;
                }
                None => {
                    open_node += 1;
                    self.node_op[open_node] = op;
                    self.node_is_call[open_node] = true;
                    self.call_node[op] = open_node;
                    self.op_bit[op] = open_bits;
                    open_bits += 1;
                }
            }
        }
        events.sort_unstable();
        for (position, &(_, is_return, op)) in events.iter().enumerate() {
            let node = MAIN_HEAD + 1 + position;
            self.node_op[node] = op;
            self.node_is_call[node] = !is_return;
            if is_return {
                self.return_node[op] = Some(node);
            } else {
                self.call_node[op] = node;
            }
        }
    }

    /// Runs the search until it finishes or has taken `steps_until` steps (it may pass that
    /// by the comparisons of one memo look-up). `None`: not finished; call again to go on.
    /// A finished search answers the same again.
    pub(crate) fn run_until(
        &mut self,
        steps_until: u64,
    ) -> Option<Finished<'a, M::Input, M::Output>> {
        loop {
            if self.completed_unlinearized == 0 {
                let witness = self.stack.iter().map(|frame| self.ops[frame.op].id);
                return Some(Finished::Linearizable(witness.collect()));
            }
            if self.steps >= steps_until {
                return None;
            }
            self.steps += 1;
            self.cursor = match self.cursor {
                Cursor::Main(node) if self.node_is_call[node] => self.try_at(node, None),
                Cursor::Main(node) => {
                    // A completed operation is unlinearized, so its return comes first.
                    assert!(node != self.lists.main_tail, "walked past every return");
                    let node_open = self.lists.next[self.lists.open_head];
                    Cursor::Open {
                        node: node_open,
                        blocking: node,
                    }
                }
                Cursor::Open { node, blocking } if self.is_open_candidate(node, blocking) => {
                    if self.is_latest_equal(node, blocking) {
                        self.try_at(node, Some(blocking))
                    } else {
                        self.after(node, Some(blocking))
                    }
                }
                Cursor::Open { blocking, .. } => {
                    self.note_deepest(blocking);
                    match self.backtrack() {
                        Some(cursor) => cursor,
                        None => {
                            // The cursor stays at the dead end: a later call answers the same.
                            let depth_max = self.depth_max;
                            let deepest = self.deepest.take();
                            return Some(Finished::Illegal { depth_max, deepest });
                        }
                    }
                }
            };
        }
    }

    /// Whether the open list's `node` is an indeterminate operation called before the
    /// blocking return (calls first at equal times).
    fn is_open_candidate(&self, node: usize, blocking: usize) -> bool {
        if node == self.lists.open_tail {
            return false;
        }
        let blocking_return_ns = self.ops[self.node_op[blocking]].return_ns;
        Some(self.ops[self.node_op[node]].call_ns) <= blocking_return_ns
    }

    /// Tries to linearize the operation called at `node` next; returns where to scan next.
    fn try_at(&mut self, node: usize, blocking: Option<usize>) -> Cursor {
        let op = self.node_op[node];
        if self.push_first_new(node, op, 0, blocking) {
            Cursor::Main(self.lists.next[MAIN_HEAD])
        } else {
            self.after(node, blocking)
        }
    }

    /// The scan position after `node`, in the same list.
    fn after(&self, node: usize, blocking: Option<usize>) -> Cursor {
        let node = self.lists.next[node];
        match blocking {
            None => Cursor::Main(node),
            Some(blocking) => Cursor::Open { node, blocking },
        }
    }

    /// The states `op` may lead to from `state`, in the model's order, as a range of
    /// `transitions.ids` (valid until the next call).
    fn successors(&mut self, state: StateId, op: usize) -> std::ops::Range<usize> {
        let key = (u64::from(state) << 32) | op as u64;
        if let Some(range) = self.transitions.get(key) {
            return range;
        }
        let operation = self.ops[op];
        let current = &self.states[state as usize];
        let states = match &operation.output {
            Some(output) => self.model.step_all(current, &operation.input, output),
            None => self.model.step_unknown(current, &operation.input),
        };
        let ids: Vec<StateId> = states.into_iter().map(|next| self.intern(next)).collect();
        self.transitions.insert(key, ids)
    }

    /// The id of `state`, storing it if it is new.
    fn intern(&mut self, state: M::State) -> StateId {
        if let Some(&id) = self.state_ids.get(&state) {
            return id;
        }
        let id = StateId::try_from(self.states.len()).expect("fewer than 2^32 distinct states");
        self.states.push(state.clone());
        self.state_ids.insert(state, id);
        self.state_counted.push(false);
        id
    }

    /// Counts the bytes of state `id` towards the memo budget, once.
    fn count_state(&mut self, id: StateId) {
        let counted = &mut self.state_counted[id as usize];
        if !*counted {
            *counted = true;
            let state = &self.states[id as usize];
            // Two copies (the list and the index) and the index's share of B-tree nodes.
            self.state_bytes += 2 * self.model.state_bytes(state) + size_of::<StateId>();
            self.state_bytes += MEMO_ENTRY_OVERHEAD_BYTES;
        }
    }

    /// Linearizes `op` next with the first successor state after the `tried` first whose
    /// configuration is not covered by an explored one. Returns whether one was found.
    fn push_first_new(
        &mut self,
        node: usize,
        op: usize,
        mut tried: usize,
        blocking: Option<usize>,
    ) -> bool {
        let state_before = self.state;
        let successors = self.successors(state_before, op);
        self.mark(op, true);
        while tried < successors.len() {
            let candidate = self.transitions.ids[successors.start + tried];
            tried += 1;
            self.count_state(candidate);
            if self.memo_insert(candidate) {
                self.state = candidate;
                let frame = Frame {
                    node,
                    op,
                    state_before,
                    tried,
                    blocking,
                };
                self.stack.push(frame);
                self.lift(op);
                self.depth_max = self.depth_max.max(self.stack.len());
                return true;
            }
        }
        self.mark(op, false);
        false
    }

    /// Undoes the last linearization, then tries that operation's other successors.
    /// Returns where to scan next, or `None` when nothing is left to undo.
    fn backtrack(&mut self) -> Option<Cursor> {
        let frame = self.stack.pop()?;
        self.state = frame.state_before;
        self.mark(frame.op, false);
        self.unlift(frame.op);
        if self.push_first_new(frame.node, frame.op, frame.tried, frame.blocking) {
            Some(Cursor::Main(self.lists.next[MAIN_HEAD]))
        } else {
            Some(self.after(frame.node, frame.blocking))
        }
    }

    fn mark(&mut self, op: usize, linearized: bool) {
        let set = if self.ops[op].is_complete() {
            &mut self.completed_set
        } else {
            &mut self.open_set
        };
        set.set(self.op_bit[op], linearized);
    }

    /// Records the configuration (linearized sets, `state`) as explored, unless an explored
    /// one covers it: the same completed set and state, and a subset of its indeterminate
    /// operations. Returns whether it was new.
    ///
    /// Skipping covered configurations loses no linearization. Suppose the search failed
    /// although a path P0 (the root), .., Pm (all completed operations linearized) exists,
    /// and let Pi be the last configuration on it covered by an explored V. Pm is not
    /// covered (the search would have stopped there with success), so Pi+1 exists and adds
    /// an operation y. Whether y may come next depends only on the completed set (an
    /// indeterminate operation precedes nothing), which V shares with Pi, and its successor
    /// states depend only on the state, also shared; so the search tried y from V, and V+y
    /// was recorded or found covered. Either way Pi+1 is covered: a contradiction.
    fn memo_insert(&mut self, state: StateId) -> bool {
        let (inserted, compared) = self.memo.insert(&self.completed_set, state, &self.open_set);
        // Each comparison counts as a step, so that the step budget bounds the work.
        self.steps += compared;
        inserted
    }

    fn lift(&mut self, op: usize) {
        self.lists.unlink(self.call_node[op]);
        if let Some(return_node) = self.return_node[op] {
            self.lists.unlink(return_node);
            self.completed_unlinearized -= 1;
        }
    }

    fn unlift(&mut self, op: usize) {
        if let Some(return_node) = self.return_node[op] {
            self.lists.relink(return_node);
            self.completed_unlinearized += 1;
        }
        self.lists.relink(self.call_node[op]);
    }

    /// Records the search position at the first dead end (stuck at the `blocking` return)
    /// at depth `record_depth`.
    fn note_deepest(&mut self, blocking: usize) {
        if self.deepest.is_some() || self.record_depth != Some(self.stack.len()) {
            return;
        }
        let mut candidates = Vec::new();
        let mut node = self.lists.next[MAIN_HEAD];
        while node != blocking {
            candidates.push(self.ops[self.node_op[node]]);
            node = self.lists.next[node];
        }
        node = self.lists.next[self.lists.open_head];
        while self.is_open_candidate(node, blocking) {
            candidates.push(self.ops[self.node_op[node]]);
            node = self.lists.next[node];
        }
        self.deepest = Some(Deepest {
            linearized: self.stack.iter().map(|frame| self.ops[frame.op]).collect(),
            state_after: format!("{:?}", self.states[self.state as usize]),
            candidates,
            blocking: self.ops[self.node_op[blocking]],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lists_are_two_chains_that_unlink_and_relink_in_lifo_order() {
        // Main: head 0, events 1..=3, tail 4. Open: head 5, calls 6..=7, tail 8.
        let mut lists = EventLists::new(3, 2);
        assert_eq!(
            (lists.main_tail, lists.open_head, lists.open_tail),
            (4, 5, 8)
        );
        assert_eq!(lists.next[3], 4);
        assert_eq!(lists.next[lists.open_head], 6);
        assert_eq!(lists.prev[6], 5);
        lists.unlink(2);
        lists.unlink(1);
        lists.unlink(7);
        assert_eq!(lists.next[MAIN_HEAD], 3);
        assert_eq!(lists.prev[3], MAIN_HEAD);
        assert_eq!(lists.next[6], 8);
        let before = (lists.next.clone(), lists.prev.clone());
        lists.unlink(6);
        lists.relink(6);
        assert_eq!((lists.next.clone(), lists.prev.clone()), before);
        lists.relink(7);
        lists.relink(1);
        lists.relink(2);
        assert_eq!(&lists.next[..4], &[1, 2, 3, 4]);
        assert_eq!(&lists.next[5..8], &[6, 7, 8]);
    }
}
