//! A breaker's configuration, its builder and its validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::mutant::{Mutant, Mutants};

/// The largest window accepted, in calls or in one-second buckets. Windows are allocated up
/// front, so this bounds a breaker's memory.
pub const WINDOW_SIZE_MAX: u32 = 100_000;
/// The largest number of probes accepted in half-open (their window is allocated up front).
pub const HALF_OPEN_PROBES_MAX: u32 = 10_000;
/// The largest event queue accepted.
pub const EVENT_QUEUE_CAPACITY_MAX: usize = 1 << 20;

/// The sliding window over which failure and slow-call rates are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// The last `size` recorded calls.
    Count {
        /// Number of calls in the window.
        size: u32,
    },
    /// The calls recorded in the current second and the `seconds - 1` before it, kept in
    /// one-second buckets of the monotonic clock.
    Time {
        /// Number of one-second buckets in the window.
        seconds: u32,
    },
}

impl Window {
    /// The number of slots: calls for a count window, one-second buckets for a time window.
    pub fn size(self) -> u32 {
        match self {
            Window::Count { size } => size,
            Window::Time { seconds } => seconds,
        }
    }
}

/// How long the breaker stays open before it lets probes through.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenWait {
    /// The same wait after every opening.
    Fixed(Duration),
    /// A wait that grows with each consecutive opening (reset when the breaker closes).
    Backoff(Backoff),
}

/// Exponential backoff with jitter: after the `k`-th consecutive opening (from 0) the breaker
/// waits `min(initial * multiplier^k, max)`, scaled by a factor drawn uniformly from
/// `[1 - jitter, 1 + jitter)` and capped at `max` again.
///
/// The jitter comes from a `Xoshiro256++` stream seeded with [`Config::jitter_seed`], one draw
/// per opening, so a breaker's waits are a function of its configuration and inputs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    /// Wait after the first opening.
    pub initial: Duration,
    /// Growth factor per consecutive opening (at least 1).
    pub multiplier: f64,
    /// Upper bound of every wait.
    pub max: Duration,
    /// Relative jitter, in `[0, 1)`; 0 means no jitter.
    pub jitter: f64,
}

/// A breaker's configuration. Defaults follow resilience4j's `CircuitBreakerConfig`.
///
/// Build it with [`Config::builder`] or fill the fields and call [`Config::validate`];
/// [`CircuitBreaker::new`](super::CircuitBreaker::new) validates it again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// The closed-state window.
    pub window: Window,
    /// Calls the window must hold before the rates are evaluated. A count window caps it at its
    /// size (as resilience4j does), so a window of 5 with `calls_min` 100 trips after 5 calls.
    pub calls_min: u32,
    /// Trip when at least this percentage of the window's calls failed (1..=100).
    pub failure_rate_threshold_percent: u8,
    /// Trip when at least this percentage of the window's calls were slow (1..=100).
    pub slow_call_rate_threshold_percent: u8,
    /// A call that lasts longer than this (from admission to outcome) is slow.
    pub slow_call_duration_threshold: Duration,
    /// How long the breaker stays open.
    pub open_wait: OpenWait,
    /// Seed of the jitter stream of [`OpenWait::Backoff`].
    pub jitter_seed: u64,
    /// Probes admitted in half-open. Their outcomes form the half-open window, which decides
    /// once all of them are recorded; an ignored or released probe gives its slot back.
    pub half_open_probes_max: u32,
    /// If set, a breaker still half-open after this long opens again. `None` waits for ever.
    pub half_open_wait_max: Option<Duration>,
    /// Move from open to half-open when the wait ends (through `handle_timeout`), instead of
    /// lazily on the next `try_acquire`.
    pub auto_half_open: bool,
    /// Capacity of the event queue; when it is full the oldest event is dropped and counted.
    pub event_queue_capacity: usize,
    /// Deliberately broken behaviours to switch on (none by default; none ever in a production
    /// build, where this set is empty and zero-sized).
    pub mutants: Mutants,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window: Window::Count { size: 100 },
            calls_min: 100,
            failure_rate_threshold_percent: 50,
            slow_call_rate_threshold_percent: 100,
            slow_call_duration_threshold: Duration::from_secs(60),
            open_wait: OpenWait::Fixed(Duration::from_secs(60)),
            jitter_seed: 0,
            half_open_probes_max: 10,
            half_open_wait_max: None,
            auto_half_open: false,
            event_queue_capacity: 1024,
            mutants: Mutants::none(),
        }
    }
}

/// Why a configuration was rejected.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum ConfigError {
    /// The window has no slot.
    #[error("the sliding window size must be at least 1")]
    WindowSizeZero,
    /// The window is larger than [`WINDOW_SIZE_MAX`].
    #[error("the sliding window size {size} exceeds the maximum {max}")]
    WindowSizeTooLarge {
        /// The size given.
        size: u32,
        /// The largest size accepted.
        max: u32,
    },
    /// `calls_min` is zero.
    #[error("calls_min must be at least 1")]
    CallsMinZero,
    /// The failure-rate threshold is outside 1..=100 (0 would trip windows without failures).
    #[error("failure_rate_threshold_percent must be in 1..=100, got {percent}")]
    FailureRateThresholdOutOfRange {
        /// The threshold given.
        percent: u8,
    },
    /// The slow-call-rate threshold is outside 1..=100 (0 would trip windows without slow calls).
    #[error("slow_call_rate_threshold_percent must be in 1..=100, got {percent}")]
    SlowCallRateThresholdOutOfRange {
        /// The threshold given.
        percent: u8,
    },
    /// The slow-call duration threshold is zero, which would make every call slow.
    #[error("slow_call_duration_threshold must be positive")]
    SlowCallDurationThresholdZero,
    /// The open wait (fixed, or the backoff's initial wait) is zero.
    #[error("the open wait must be positive")]
    OpenWaitZero,
    /// The backoff multiplier is below 1 or not finite.
    #[error("the backoff multiplier must be finite and at least 1, got {multiplier}")]
    BackoffMultiplierInvalid {
        /// The multiplier given.
        multiplier: f64,
    },
    /// The backoff's maximum wait is below its initial wait.
    #[error("the backoff maximum {max:?} is below its initial wait {initial:?}")]
    BackoffMaxBelowInitial {
        /// The initial wait given.
        initial: Duration,
        /// The maximum wait given.
        max: Duration,
    },
    /// The jitter is outside `[0, 1)`.
    #[error("the backoff jitter must be in [0, 1), got {jitter}")]
    BackoffJitterOutOfRange {
        /// The jitter given.
        jitter: f64,
    },
    /// No probe is permitted in half-open, so the breaker could never close again.
    #[error("half_open_probes_max must be at least 1")]
    HalfOpenProbesZero,
    /// More probes than [`HALF_OPEN_PROBES_MAX`].
    #[error("half_open_probes_max {probes} exceeds the maximum {max}")]
    HalfOpenProbesTooMany {
        /// The number given.
        probes: u32,
        /// The largest number accepted.
        max: u32,
    },
    /// A maximum wait in half-open of zero (use `None` to wait for ever).
    #[error("half_open_wait_max must be positive; use None to wait for ever")]
    HalfOpenWaitMaxZero,
    /// The event queue has no room.
    #[error("event_queue_capacity must be in 1..={max}, got {capacity}")]
    EventQueueCapacityOutOfRange {
        /// The capacity given.
        capacity: usize,
        /// The largest capacity accepted.
        max: usize,
    },
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_window(self.window)?;
        if self.calls_min == 0 {
            return Err(ConfigError::CallsMinZero);
        }
        let failure = self.failure_rate_threshold_percent;
        if !(1..=100).contains(&failure) {
            return Err(ConfigError::FailureRateThresholdOutOfRange { percent: failure });
        }
        let slow = self.slow_call_rate_threshold_percent;
        if !(1..=100).contains(&slow) {
            return Err(ConfigError::SlowCallRateThresholdOutOfRange { percent: slow });
        }
        if self.slow_call_duration_threshold.is_zero() {
            return Err(ConfigError::SlowCallDurationThresholdZero);
        }
        validate_open_wait(&self.open_wait)?;
        validate_half_open(self.half_open_probes_max, self.half_open_wait_max)?;
        let capacity = self.event_queue_capacity;
        if !(1..=EVENT_QUEUE_CAPACITY_MAX).contains(&capacity) {
            return Err(ConfigError::EventQueueCapacityOutOfRange {
                capacity,
                max: EVENT_QUEUE_CAPACITY_MAX,
            });
        }
        Ok(())
    }

    /// Whether `mutant` is switched on.
    pub fn has_mutant(&self, mutant: Mutant) -> bool {
        self.mutants.contains(mutant)
    }

    /// The number of calls the closed-state window must hold before its rates count: a count
    /// window caps `calls_min` at its size.
    pub fn calls_min_effective(&self) -> u32 {
        match self.window {
            Window::Count { size } => self.calls_min.min(size),
            Window::Time { .. } => self.calls_min,
        }
    }
}

fn validate_window(window: Window) -> Result<(), ConfigError> {
    match window.size() {
        0 => Err(ConfigError::WindowSizeZero),
        size if size > WINDOW_SIZE_MAX => Err(ConfigError::WindowSizeTooLarge {
            size,
            max: WINDOW_SIZE_MAX,
        }),
        _ => Ok(()),
    }
}

fn validate_open_wait(open_wait: &OpenWait) -> Result<(), ConfigError> {
    let backoff = match open_wait {
        OpenWait::Fixed(wait) if wait.is_zero() => return Err(ConfigError::OpenWaitZero),
        OpenWait::Fixed(_) => return Ok(()),
        OpenWait::Backoff(backoff) => backoff,
    };
    if backoff.initial.is_zero() {
        return Err(ConfigError::OpenWaitZero);
    }
    if !backoff.multiplier.is_finite() || backoff.multiplier < 1.0 {
        return Err(ConfigError::BackoffMultiplierInvalid {
            multiplier: backoff.multiplier,
        });
    }
    if backoff.max < backoff.initial {
        return Err(ConfigError::BackoffMaxBelowInitial {
            initial: backoff.initial,
            max: backoff.max,
        });
    }
    // `!(a <= x < b)` rather than a range test, so that NaN is rejected too.
    if !(backoff.jitter >= 0.0 && backoff.jitter < 1.0) {
        return Err(ConfigError::BackoffJitterOutOfRange {
            jitter: backoff.jitter,
        });
    }
    Ok(())
}

fn validate_half_open(probes: u32, wait_max: Option<Duration>) -> Result<(), ConfigError> {
    if probes == 0 {
        return Err(ConfigError::HalfOpenProbesZero);
    }
    if probes > HALF_OPEN_PROBES_MAX {
        return Err(ConfigError::HalfOpenProbesTooMany {
            probes,
            max: HALF_OPEN_PROBES_MAX,
        });
    }
    if wait_max.is_some_and(|wait| wait.is_zero()) {
        return Err(ConfigError::HalfOpenWaitMaxZero);
    }
    Ok(())
}

/// Builds a validated [`Config`], starting from the defaults.
///
/// ```
/// use std::time::Duration;
/// use patterns::circuit_breaker::{Config, Window};
///
/// let config = Config::builder()
///     .window(Window::Count { size: 10 })
///     .calls_min(5)
///     .failure_rate_threshold_percent(50)
///     .open_wait_fixed(Duration::from_secs(5))
///     .half_open_probes_max(2)
///     .build()
///     .expect("valid configuration");
/// assert_eq!(config.calls_min, 5);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Sets [`Config::window`].
    pub fn window(mut self, window: Window) -> Self {
        self.config.window = window;
        self
    }
    /// Sets [`Config::calls_min`].
    pub fn calls_min(mut self, calls: u32) -> Self {
        self.config.calls_min = calls;
        self
    }
    /// Sets [`Config::failure_rate_threshold_percent`].
    pub fn failure_rate_threshold_percent(mut self, percent: u8) -> Self {
        self.config.failure_rate_threshold_percent = percent;
        self
    }
    /// Sets [`Config::slow_call_rate_threshold_percent`].
    pub fn slow_call_rate_threshold_percent(mut self, percent: u8) -> Self {
        self.config.slow_call_rate_threshold_percent = percent;
        self
    }
    /// Sets [`Config::slow_call_duration_threshold`].
    pub fn slow_call_duration_threshold(mut self, duration: Duration) -> Self {
        self.config.slow_call_duration_threshold = duration;
        self
    }
    /// Sets a fixed [`Config::open_wait`].
    pub fn open_wait_fixed(mut self, wait: Duration) -> Self {
        self.config.open_wait = OpenWait::Fixed(wait);
        self
    }
    /// Sets an exponential-backoff [`Config::open_wait`].
    pub fn open_wait_backoff(mut self, backoff: Backoff) -> Self {
        self.config.open_wait = OpenWait::Backoff(backoff);
        self
    }
    /// Sets [`Config::jitter_seed`].
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.config.jitter_seed = seed;
        self
    }
    /// Sets [`Config::half_open_probes_max`].
    pub fn half_open_probes_max(mut self, probes: u32) -> Self {
        self.config.half_open_probes_max = probes;
        self
    }
    /// Sets [`Config::half_open_wait_max`].
    pub fn half_open_wait_max(mut self, wait: Option<Duration>) -> Self {
        self.config.half_open_wait_max = wait;
        self
    }
    /// Sets [`Config::auto_half_open`].
    pub fn auto_half_open(mut self, auto: bool) -> Self {
        self.config.auto_half_open = auto;
        self
    }
    /// Sets [`Config::event_queue_capacity`].
    pub fn event_queue_capacity(mut self, capacity: usize) -> Self {
        self.config.event_queue_capacity = capacity;
        self
    }
    /// Switches `mutant` on (simulation builds only: see `crate::mutant_set`).
    #[cfg(madsim)]
    pub fn mutant(mut self, mutant: Mutant) -> Self {
        self.config.mutants.insert(mutant);
        self
    }
    /// The configuration, if it is valid.
    pub fn build(self) -> Result<Config, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The fixed point of the backoff's integer arithmetic: multiplier and jitter are taken in
/// parts per million (rounded once from the configured `f64`, an exact IEEE operation), so a
/// wait is the same on every platform.
pub const BACKOFF_PPM: u64 = 1_000_000;

impl Backoff {
    /// The multiplier in parts per million, rounded.
    pub fn multiplier_ppm(&self) -> u64 {
        // A float-to-int `as` saturates; validation keeps the multiplier finite and >= 1.
        (self.multiplier * BACKOFF_PPM as f64).round() as u64
    }

    /// The jitter in parts per million, rounded (below `BACKOFF_PPM` for a valid jitter).
    pub fn jitter_ppm(&self) -> u64 {
        ((self.jitter * BACKOFF_PPM as f64).round() as u64).min(BACKOFF_PPM - 1)
    }
}

impl OpenWait {
    /// Whether a wait draws from the jitter stream (one draw per opening).
    pub fn draws_jitter(&self) -> bool {
        matches!(self, OpenWait::Backoff(backoff) if backoff.jitter_ppm() > 0)
    }

    /// The wait after the `openings`-th consecutive opening (from 0), where `draw` is the
    /// opening's jitter draw, a fraction of 2^32 (ignored without jitter). Never zero for a
    /// valid configuration.
    ///
    /// Integer arithmetic throughout: `base(0) = min(initial, max)`, then
    /// `base(k) = min(base(k-1) * multiplier_ppm / 10^6, max)` (rounded down at each step), and
    /// `wait = base * (10^6 - j + 2 j draw / 2^32) / 10^6` rounded down, capped at `max`, at
    /// least 1 ns.
    pub fn wait(&self, openings: u32, draw: u32) -> Duration {
        let backoff = match self {
            OpenWait::Fixed(wait) => return *wait,
            OpenWait::Backoff(backoff) => backoff,
        };
        let nanos = |d: Duration| u128::from(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let max = nanos(backoff.max);
        let multiplier = u128::from(backoff.multiplier_ppm());
        let ppm = u128::from(BACKOFF_PPM);
        let mut base = nanos(backoff.initial).min(max);
        for _ in 0..openings {
            let next = (base * multiplier / ppm).min(max);
            // A fixed point (the cap, or growth below a nanosecond) ends the climb early.
            if next == base {
                break;
            }
            base = next;
        }
        let jitter = u128::from(backoff.jitter_ppm());
        let scaled = base * ((ppm - jitter) << 32) + base * 2 * jitter * u128::from(draw);
        let wait = (scaled / (ppm << 32)).min(max).max(1);
        Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
    }
}

/// One opening's jitter draw: the top 32 bits of `rng`'s next word, a fraction of 2^32.
pub fn jitter_draw(rng: &mut impl rand::RngCore) -> u32 {
    (rng.next_u64() >> 32) as u32
}
