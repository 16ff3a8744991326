//! Sliding windows: count-based (a ring of calls) and time-based (a ring of one-second
//! buckets). Both keep running totals that are updated on record and on eviction, so a
//! snapshot costs O(1); a time window moves forward one bucket per elapsed second, at most
//! its size, when it is told the time.

use std::time::Duration;

use super::config::Window;
use super::permit::CallClass;

/// Call counts of a bucket or of a whole window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failed: u64,
    pub(crate) slow: u64,
    pub(crate) slow_failed: u64,
}

impl Counts {
    fn add(&mut self, class: CallClass) {
        self.calls += 1;
        self.failed += u64::from(class.is_failure());
        self.slow += u64::from(class.is_slow());
        self.slow_failed += u64::from(class.is_failure() && class.is_slow());
    }

    /// Subtracts an evicted bucket. Saturating, because the `bucket_not_reset` mutant can make
    /// a bucket hold more than the totals; without it the totals always cover every bucket.
    fn subtract(&mut self, evicted: &Counts) {
        self.calls = self.calls.saturating_sub(evicted.calls);
        self.failed = self.failed.saturating_sub(evicted.failed);
        self.slow = self.slow.saturating_sub(evicted.slow);
        self.slow_failed = self.slow_failed.saturating_sub(evicted.slow_failed);
    }
}

/// Which rates of a window reach their thresholds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Exceeded {
    pub(crate) failure_rate: bool,
    pub(crate) slow_call_rate: bool,
}

impl Exceeded {
    pub(crate) fn any(self) -> bool {
        self.failure_rate || self.slow_call_rate
    }
}

/// A sliding window with subtract-on-evict totals.
#[derive(Clone, Debug)]
pub(crate) struct SlidingWindow {
    window: Window,
    buckets: Vec<Counts>,
    /// Count window: the slot the next call goes to. Time window: the current second's bucket.
    head: usize,
    /// Time window: the monotonic second the head bucket stands for.
    head_second: u64,
    totals: Counts,
    calls_min: u64,
    not_permitted: u64,
    /// False only under the `bucket_not_reset` mutant.
    reset_on_evict: bool,
}

impl SlidingWindow {
    /// An empty window whose rates count from `calls_min` calls, created at `now`.
    pub(crate) fn new(window: Window, calls_min: u32, now: Duration, reset_on_evict: bool) -> Self {
        let size = usize::try_from(window.size()).expect("window size fits in usize");
        assert!(size > 0, "validated configurations have non-empty windows");
        SlidingWindow {
            window,
            buckets: vec![Counts::default(); size],
            head: 0,
            head_second: now.as_secs(),
            totals: Counts::default(),
            calls_min: u64::from(calls_min),
            not_permitted: 0,
            reset_on_evict,
        }
    }

    /// Moves a time window to `now`'s second, evicting the buckets that fell out of it.
    pub(crate) fn advance(&mut self, now: Duration) {
        let Window::Time { .. } = self.window else {
            return;
        };
        let second = now.as_secs();
        if second <= self.head_second {
            return;
        }
        let size = self.buckets.len();
        let steps = (second - self.head_second).min(size as u64);
        for _ in 0..steps {
            self.head = (self.head + 1) % size;
            self.evict(self.head);
        }
        self.head_second = second;
    }

    /// Records a call that completed at `now`.
    pub(crate) fn record(&mut self, now: Duration, class: CallClass) {
        match self.window {
            Window::Count { .. } => {
                self.evict(self.head);
                self.buckets[self.head].add(class);
                self.head = (self.head + 1) % self.buckets.len();
            }
            Window::Time { .. } => {
                self.advance(now);
                self.buckets[self.head].add(class);
            }
        }
        self.totals.add(class);
    }

    fn evict(&mut self, index: usize) {
        let bucket = &mut self.buckets[index];
        self.totals.subtract(bucket);
        if self.reset_on_evict {
            *bucket = Counts::default();
        } else {
            // The mutant: like resilience4j#1262, where `reset()` forgot a counter, the
            // bucket's failure counters survive the eviction and are subtracted again later.
            bucket.calls = 0;
            bucket.slow = 0;
        }
    }

    /// Counts one rejected call.
    pub(crate) fn count_not_permitted(&mut self) {
        self.not_permitted += 1;
    }

    pub(crate) fn totals(&self) -> Counts {
        self.totals
    }

    pub(crate) fn not_permitted(&self) -> u64 {
        self.not_permitted
    }

    pub(crate) fn calls_min(&self) -> u64 {
        self.calls_min
    }

    /// Which rates reach their thresholds; none while the window holds fewer than `calls_min`
    /// calls. Compared in integers (`failed * 100 >= threshold * calls`) so that no rounding
    /// decides a trip.
    pub(crate) fn exceeded(&self, failure_percent: u8, slow_percent: u8) -> Exceeded {
        let totals = self.totals;
        if totals.calls < self.calls_min || totals.calls == 0 {
            return Exceeded::default();
        }
        let reaches = |part: u64, percent: u8| {
            u128::from(part) * 100 >= u128::from(percent) * u128::from(totals.calls)
        };
        Exceeded {
            failure_rate: reaches(totals.failed, failure_percent),
            slow_call_rate: reaches(totals.slow, slow_percent),
        }
    }
}
