//! The projection as a sans-IO state machine: it consumes the event store's log into a
//! [`BankView`], in two modes.
//!
//! * **Catch-up**: it reads pages of the log by position ([`Step::Read`]) from its position
//!   until a page comes back short, then subscribes from its position ([`Step::Subscribe`])
//!   and goes live.
//! * **Live**: it folds pushed events. Delivery is at least once and unordered (pushes are
//!   datagrams: lost, duplicated, reordered): events below the position are duplicates and
//!   ignored; events above it wait in a bounded buffer; a gap that stays (a lost push) sends
//!   it back to catch-up from its position, never past it. When it hears nothing for
//!   [`ProjectionConfig::idle_resubscribe`] it subscribes again (the store keeps
//!   subscriptions in memory and forgets them when it restarts).
//!
//! A bank event that does not decode (a *poison* event) is retried
//! [`ProjectionConfig::poison_attempts`] times, [`ProjectionConfig::poison_backoff`] apart,
//! then parked: its position is recorded in the model and the projection moves on.
//!
//! The model the projection folds into lives in memory ([`Projection::working`]); the driver
//! stores it ([`Step::Store`], one at a time) and reports back ([`Projection::on_stored`]).
//! Queries are answered from the stored model only ([`Projection::served`]), so that what a
//! client saw survives a crash. Time comes in as an argument: the node's monotonic clock.

use crate::cqrs::mutant::{Mutant, Mutants};
use crate::cqrs::view::{Applied, BankView, Rebuilder};
use crate::event_sourcing::event::RecordedEvent;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

/// Settings of a projection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectionConfig {
    /// Events per catch-up read.
    pub page_size: u64,
    /// Most events held ahead of the position (the live buffer, at least one); more are
    /// dropped and read again later.
    pub buffer_max: usize,
    /// Silence after which a live projection subscribes again.
    pub idle_resubscribe: Duration,
    /// How long a gap in the pushes may stay before the projection reads it.
    pub gap_wait: Duration,
    /// Attempts at a poison event before it is parked.
    pub poison_attempts: u32,
    /// The wait between attempts at a poison event, and before reading again after a failed
    /// read.
    pub poison_backoff: Duration,
    /// The deliberately broken variants switched on (none in production).
    pub mutants: Mutants,
}

impl Default for ProjectionConfig {
    fn default() -> Self {
        ProjectionConfig {
            page_size: 32,
            buffer_max: 512,
            idle_resubscribe: Duration::from_millis(300),
            gap_wait: Duration::from_millis(30),
            poison_attempts: 3,
            poison_backoff: Duration::from_millis(40),
            mutants: Mutants::none(),
        }
    }
}

/// An effect the driver performs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read up to `count` events of the log from position `from`; answer with
    /// [`Projection::on_page`].
    Read {
        /// The first position.
        from: u64,
        /// Most events.
        count: u64,
    },
    /// Subscribe from position `from` (replacing the subscription); pushes go to
    /// [`Projection::on_push`].
    Subscribe {
        /// The first position to push.
        from: u64,
    },
    /// Store this model durably (atomically: tables and position together); answer with
    /// [`Projection::on_stored`].
    Store(Rc<BankView>),
}

/// The mode the projection is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Reading the log page by page.
    CatchingUp,
    /// Following pushes.
    Live,
}

/// What happened, for the driver's logs and the scenario's observations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A poison event was parked.
    Parked {
        /// Its position.
        position: u64,
        /// Why it does not decode.
        error: String,
    },
    /// The projection went live at this position.
    WentLive(u64),
    /// A gap in the pushes sent the projection back to catch-up at this position.
    GapRead(u64),
}

/// The projection.
#[derive(Debug)]
pub struct Projection {
    config: ProjectionConfig,
    working: BankView,
    stored: BankView,
    mode: Mode,
    /// A read is in flight.
    reading: bool,
    /// The model being stored, while a store is in flight.
    /// Shared with the [`Step::Store`] that stores it: a model can be large, one copy is enough.
    storing: Option<Rc<BankView>>,
    /// Events above the position, by position.
    buffer: BTreeMap<u64, RecordedEvent>,
    /// When the projection last heard a push, or subscribed.
    heard_at: Duration,
    /// No push has come since the last subscription.
    fresh_subscription: bool,
    /// Since when a gap has been open in live mode.
    gap_since: Option<Duration>,
    /// The poison event at the position: attempts so far, and when to try again.
    poison: Option<(u32, Duration)>,
    /// A read failed: read again at this time.
    read_again_at: Option<Duration>,
    /// One more than the highest position received (in a page or a push).
    received_end: u64,
    /// A model was stored since the projection started (its progress is committed).
    committed: bool,
    steps: VecDeque<Step>,
    notes: Vec<Note>,
}

impl Projection {
    /// Starts from the stored model `stored` (the empty model on a first start), catching up.
    pub fn new(config: ProjectionConfig, stored: BankView, now: Duration) -> Projection {
        let mut projection = Projection {
            config,
            working: stored.clone(),
            received_end: stored.position,
            committed: false,
            stored,
            mode: Mode::CatchingUp,
            reading: false,
            storing: None,
            buffer: BTreeMap::new(),
            heard_at: now,
            fresh_subscription: false,
            gap_since: None,
            poison: None,
            read_again_at: None,
            steps: VecDeque::new(),
            notes: Vec::new(),
        };
        projection.read();
        projection
    }

    /// The next effect to perform.
    pub fn poll_step(&mut self) -> Option<Step> {
        self.steps.pop_front()
    }

    /// What happened since the last call.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// The model folded so far (ahead of the stored one while a store is pending).
    pub fn working(&self) -> &BankView {
        &self.working
    }

    /// The model queries are answered from: the stored one.
    pub fn served(&self) -> &BankView {
        if self.config.mutants.contains(Mutant::ServesUnpersistedView) {
            return &self.working;
        }
        &self.stored
    }

    /// Whether a query that needs position `min_position` can be answered fresh now.
    pub fn reached(&self, min_position: u64) -> bool {
        if self.config.mutants.contains(Mutant::RywWaitReturnsEarly) {
            return self.received_end >= min_position;
        }
        if self
            .config
            .mutants
            .contains(Mutant::UncommittedCountsAsCaughtUp)
            && !self.committed
        {
            // The bug: the wait looks only at progress committed since the start; a
            // projection with none is not counted as behind.
            return true;
        }
        self.served().position >= min_position
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A page read from position `from` came back (`Err`: the read failed).
    pub fn on_page(&mut self, now: Duration, from: u64, page: Result<Vec<RecordedEvent>, String>) {
        self.reading = false;
        let events = match page {
            Ok(events) => events,
            Err(_) => {
                self.read_again_at = Some(now + self.config.poison_backoff);
                return;
            }
        };
        let short = (events.len() as u64) < self.config.page_size;
        // Positions are gapless: a page must start at `from` and be consecutive.
        let consecutive = events
            .iter()
            .zip(from..)
            .all(|(event, position)| event.position == position);
        if !consecutive {
            self.read_again_at = Some(now + self.config.poison_backoff);
            return;
        }
        if self.config.mutants.contains(Mutant::PageSkipsCheckpoint) {
            // The bug: the page is taken to start at the position; what was folded meanwhile
            // (from pushes) is folded again.
            let position = self.working.position;
            for event in events.iter().filter(|e| e.position < position) {
                self.working.apply_unchecked(event);
            }
        }
        self.offer(events);
        self.drain(now);
        if self.mode == Mode::CatchingUp {
            if short && self.poison.is_none() {
                self.mode = Mode::Live;
                self.subscribe(now);
                self.notes.push(Note::WentLive(self.working.position));
            } else if self.poison.is_none() {
                self.read();
            }
        }
        self.store_if_due();
    }

    /// Events pushed by the subscription.
    pub fn on_push(&mut self, now: Duration, events: Vec<RecordedEvent>) {
        self.heard_at = now;
        let first = events.first().map(|event| event.position);
        if self.fresh_subscription && self.mode == Mode::Live {
            self.fresh_subscription = false;
            if let Some(first) = first {
                if self.config.mutants.contains(Mutant::HandoverSkipsGap)
                    && first > self.working.position
                    && self.poison.is_none()
                {
                    // The bug: live is taken to start at the first live event.
                    self.working.position = first;
                }
            }
        }
        self.offer(events);
        self.drain(now);
        self.store_if_due();
    }

    /// The store of a model ended (`Err`: it failed; the driver starts the projection again
    /// from what its disk holds).
    pub fn on_stored(&mut self, result: Result<(), String>) -> Result<(), String> {
        let Some(stored) = self.storing.take() else {
            return Ok(());
        };
        result?;
        // The driver has dropped its handle once the store ended; copy only if it has not.
        self.stored = Rc::try_unwrap(stored).unwrap_or_else(|shared| (*shared).clone());
        self.committed = true;
        self.store_if_due();
        Ok(())
    }

    /// Time passed: resubscribe after silence, read a gap that stayed, retry a poison event
    /// or a failed read.
    pub fn on_tick(&mut self, now: Duration) {
        if let Some((_, retry_at)) = self.poison {
            if now >= retry_at {
                self.drain(now);
                if self.poison.is_none() && self.mode == Mode::CatchingUp && !self.reading {
                    self.read();
                }
            }
        }
        if let Some(at) = self.read_again_at {
            if now >= at && !self.reading {
                self.read_again_at = None;
                self.read();
            }
        }
        if self.mode == Mode::Live && self.poison.is_none() {
            let gap_open = self
                .buffer
                .keys()
                .next()
                .is_some_and(|&first| first > self.working.position);
            match (gap_open, self.gap_since) {
                (true, None) => self.gap_since = Some(now),
                (true, Some(since)) if now >= since + self.config.gap_wait && !self.reading => {
                    self.gap_since = None;
                    self.notes.push(Note::GapRead(self.working.position));
                    self.mode = Mode::CatchingUp;
                    self.read();
                }
                (false, _) => self.gap_since = None,
                _ => {}
            }
            if self.mode == Mode::Live && now >= self.heard_at + self.config.idle_resubscribe {
                self.subscribe(now);
            }
        }
        self.store_if_due();
    }

    /// When the projection next needs [`Projection::on_tick`].
    pub fn next_tick(&self, now: Duration) -> Duration {
        let mut at = now + self.config.idle_resubscribe;
        if let Some((_, retry_at)) = self.poison {
            at = at.min(retry_at);
        }
        // Only what `on_tick` can act on now counts: a deadline it must skip (a read in
        // flight, a poison event in the way) would wake the driver again and again.
        if let (Some(read_at), false) = (self.read_again_at, self.reading) {
            at = at.min(read_at);
        }
        let gap_acts = self.mode == Mode::Live && self.poison.is_none() && !self.reading;
        match self.gap_since {
            Some(since) if gap_acts => at = at.min(since + self.config.gap_wait),
            None if gap_acts && !self.buffer.is_empty() => {
                at = at.min(now + self.config.gap_wait);
            }
            _ => {}
        }
        if self.mode == Mode::Live && self.poison.is_none() {
            at = at.min(self.heard_at + self.config.idle_resubscribe);
        }
        at.max(now)
    }

    /// Replaces the model with `rebuilt` (built by a [`Projection::rebuilder`] from the log)
    /// if it is at the projection's position: a rebuild must catch up with the live model
    /// before it takes its place, or the view would go back. The rebuilt model is stored
    /// next. Returns whether it was taken.
    pub fn adopt(&mut self, rebuilt: BankView) -> bool {
        let guarded = !self.config.mutants.contains(Mutant::RebuildAdoptsStale);
        if guarded && rebuilt.position != self.working.position {
            return false;
        }
        if rebuilt.position != self.working.position {
            // A poison event being retried is no longer the next one.
            self.poison = None;
        }
        // The buffer holds events from the position on: still the ones to fold next.
        self.working = rebuilt;
        self.store_if_due();
        true
    }

    /// A rebuild of the model from scratch, with the next generation.
    pub fn rebuilder(&self) -> Rebuilder {
        Rebuilder::new(self.working.generation + 1, self.config.mutants.clone())
    }

    fn read(&mut self) {
        if self.reading {
            return;
        }
        self.reading = true;
        self.steps.push_back(Step::Read {
            from: self.working.position,
            count: self.config.page_size,
        });
    }

    fn subscribe(&mut self, now: Duration) {
        self.heard_at = now;
        self.fresh_subscription = true;
        self.steps.push_back(Step::Subscribe {
            from: self.working.position,
        });
    }

    /// Takes events into the buffer (or, for duplicates, straight to the fold).
    fn offer(&mut self, events: Vec<RecordedEvent>) {
        for event in events {
            self.received_end = self.received_end.max(event.position + 1);
            if event.position < self.working.position {
                // A duplicate: the fold ignores it (a broken fold would not).
                let _ = self.working.apply(&event, &self.config.mutants);
                continue;
            }
            if self.buffer.len() >= self.config.buffer_max.max(1)
                && !self.buffer.contains_key(&event.position)
            {
                // Full: keep the lowest positions; the rest is read again later.
                let highest = *self.buffer.keys().next_back().expect("a full buffer");
                if event.position > highest {
                    continue;
                }
                self.buffer.remove(&highest);
            }
            self.buffer.insert(event.position, event);
        }
    }

    /// Folds the buffered events that continue the position.
    fn drain(&mut self, now: Duration) {
        if self.poison.is_some_and(|(_, retry_at)| now < retry_at) {
            // A poison event waits for its next attempt; new events wait behind it.
            return;
        }
        while let Some(event) = self.buffer.remove(&self.working.position) {
            match self.working.apply(&event, &self.config.mutants) {
                Applied::Done | Applied::Duplicate => self.poison = None,
                Applied::Poison(error) => {
                    let attempts = self.poison.map_or(1, |(attempts, _)| attempts + 1);
                    let parks = attempts >= self.config.poison_attempts
                        && !self.config.mutants.contains(Mutant::PoisonNeverParked);
                    if parks {
                        self.working.park(event.position);
                        self.poison = None;
                        self.notes.push(Note::Parked {
                            position: event.position,
                            error,
                        });
                    } else {
                        self.poison = Some((attempts, now + self.config.poison_backoff));
                        self.buffer.insert(event.position, event);
                        return;
                    }
                }
            }
        }
        // Whatever is left below the position was folded meanwhile.
        let position = self.working.position;
        self.buffer.retain(|&p, _| p >= position);
    }

    fn store_if_due(&mut self) {
        if self.storing.is_some() {
            return;
        }
        let stored = (
            self.stored.position,
            self.stored.generation,
            self.stored.parked.len(),
        );
        let working = (
            self.working.position,
            self.working.generation,
            self.working.parked.len(),
        );
        if stored == working {
            return;
        }
        let model = Rc::new(self.working.clone());
        self.storing = Some(Rc::clone(&model));
        self.steps.push_back(Step::Store(model));
    }
}
