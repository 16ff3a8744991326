//! Configuration of the circuit breaker: defaults, validation errors, the backoff formula,
//! mutant names (simulation builds only, like the mutants), and serialization.

#[cfg(madsim)]
use std::str::FromStr;
use std::time::Duration;

use patterns::circuit_breaker::oracle::Oracle;
#[cfg(madsim)]
use patterns::circuit_breaker::Mutant;
use patterns::circuit_breaker::{
    jitter_draw, Backoff, CircuitBreaker, Config, ConfigError, Now, OpenWait, Window,
    EVENT_QUEUE_CAPACITY_MAX, HALF_OPEN_PROBES_MAX, WINDOW_SIZE_MAX,
};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn backoff(initial: u64, multiplier: f64, max: u64, jitter: f64) -> Backoff {
    Backoff {
        initial: secs(initial),
        multiplier,
        max: secs(max),
        jitter,
    }
}

#[test]
fn defaults_follow_resilience4j() {
    // Goal: the defaults are resilience4j's CircuitBreakerConfig constants (research notes 1(d)).
    let config = Config::default();
    assert_eq!(config.window, Window::Count { size: 100 });
    assert_eq!(config.calls_min, 100);
    assert_eq!(config.failure_rate_threshold_percent, 50);
    assert_eq!(config.slow_call_rate_threshold_percent, 100);
    assert_eq!(config.slow_call_duration_threshold, secs(60));
    assert_eq!(config.open_wait, OpenWait::Fixed(secs(60)));
    assert_eq!(config.half_open_probes_max, 10);
    assert_eq!(config.half_open_wait_max, None);
    assert!(!config.auto_half_open);
    assert!(config.mutants.is_empty());
    assert_eq!(config.validate(), Ok(()));
}

/// Each invalid configuration, built from the defaults by one change, with its error.
fn invalid_cases() -> Vec<(Config, ConfigError)> {
    let mut cases = invalid_window_and_rates();
    cases.extend(invalid_waits_probes_and_queue());
    cases
}

/// The defaults with one change.
fn with(change: fn(&mut Config)) -> Config {
    let mut config = Config::default();
    change(&mut config);
    config
}

fn backoff_with(backoff: Backoff) -> Config {
    Config {
        open_wait: OpenWait::Backoff(backoff),
        ..Config::default()
    }
}

fn invalid_window_and_rates() -> Vec<(Config, ConfigError)> {
    vec![
        (
            with(|c| c.window = Window::Count { size: 0 }),
            ConfigError::WindowSizeZero,
        ),
        (
            with(|c| c.window = Window::Time { seconds: 0 }),
            ConfigError::WindowSizeZero,
        ),
        (
            with(|c| {
                c.window = Window::Time {
                    seconds: WINDOW_SIZE_MAX + 1,
                }
            }),
            ConfigError::WindowSizeTooLarge {
                size: WINDOW_SIZE_MAX + 1,
                max: WINDOW_SIZE_MAX,
            },
        ),
        (with(|c| c.calls_min = 0), ConfigError::CallsMinZero),
        (
            with(|c| c.failure_rate_threshold_percent = 0),
            ConfigError::FailureRateThresholdOutOfRange { percent: 0 },
        ),
        (
            with(|c| c.failure_rate_threshold_percent = 101),
            ConfigError::FailureRateThresholdOutOfRange { percent: 101 },
        ),
        (
            with(|c| c.slow_call_rate_threshold_percent = 0),
            ConfigError::SlowCallRateThresholdOutOfRange { percent: 0 },
        ),
        (
            with(|c| c.slow_call_rate_threshold_percent = 255),
            ConfigError::SlowCallRateThresholdOutOfRange { percent: 255 },
        ),
        (
            with(|c| c.slow_call_duration_threshold = Duration::ZERO),
            ConfigError::SlowCallDurationThresholdZero,
        ),
    ]
}

fn invalid_waits_probes_and_queue() -> Vec<(Config, ConfigError)> {
    vec![
        (
            with(|c| c.open_wait = OpenWait::Fixed(Duration::ZERO)),
            ConfigError::OpenWaitZero,
        ),
        (
            backoff_with(backoff(0, 2.0, 10, 0.0)),
            ConfigError::OpenWaitZero,
        ),
        (
            backoff_with(backoff(1, 0.5, 10, 0.0)),
            ConfigError::BackoffMultiplierInvalid { multiplier: 0.5 },
        ),
        (
            backoff_with(backoff(5, 2.0, 4, 0.0)),
            ConfigError::BackoffMaxBelowInitial {
                initial: secs(5),
                max: secs(4),
            },
        ),
        (
            backoff_with(backoff(1, 2.0, 10, 1.0)),
            ConfigError::BackoffJitterOutOfRange { jitter: 1.0 },
        ),
        (
            backoff_with(backoff(1, 2.0, 10, -0.1)),
            ConfigError::BackoffJitterOutOfRange { jitter: -0.1 },
        ),
        (
            with(|c| c.half_open_probes_max = 0),
            ConfigError::HalfOpenProbesZero,
        ),
        (
            with(|c| c.half_open_probes_max = HALF_OPEN_PROBES_MAX + 1),
            ConfigError::HalfOpenProbesTooMany {
                probes: HALF_OPEN_PROBES_MAX + 1,
                max: HALF_OPEN_PROBES_MAX,
            },
        ),
        (
            with(|c| c.half_open_wait_max = Some(Duration::ZERO)),
            ConfigError::HalfOpenWaitMaxZero,
        ),
        (
            with(|c| c.event_queue_capacity = 0),
            ConfigError::EventQueueCapacityOutOfRange {
                capacity: 0,
                max: EVENT_QUEUE_CAPACITY_MAX,
            },
        ),
    ]
}

#[test]
fn invalid_configurations_are_rejected_with_typed_errors() {
    // Goal: every invalid field gives its own error, from validate(), from the breaker's and
    // the oracle's constructors, and never a panic.
    let now = Now::from_monotonic(Duration::ZERO);
    for (config, error) in invalid_cases() {
        assert_eq!(config.validate(), Err(error.clone()), "{config:?}");
        assert_eq!(
            CircuitBreaker::new(config.clone(), now).err(),
            Some(error.clone())
        );
        assert_eq!(
            Oracle::new(&config, now.monotonic).err(),
            Some(error.clone())
        );
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn non_finite_backoff_values_are_rejected() {
    // Goal: NaN and infinity cannot slip through the range checks.
    let mut config = Config {
        open_wait: OpenWait::Backoff(backoff(1, f64::NAN, 10, 0.0)),
        ..Config::default()
    };
    assert!(matches!(
        config.validate(),
        Err(ConfigError::BackoffMultiplierInvalid { .. })
    ));
    config.open_wait = OpenWait::Backoff(backoff(1, f64::INFINITY, 10, 0.0));
    assert!(matches!(
        config.validate(),
        Err(ConfigError::BackoffMultiplierInvalid { .. })
    ));
    config.open_wait = OpenWait::Backoff(backoff(1, 2.0, 10, f64::NAN));
    assert!(matches!(
        config.validate(),
        Err(ConfigError::BackoffJitterOutOfRange { .. })
    ));
}

#[test]
fn builder_sets_every_field_and_validates() {
    // Goal: the builder reaches every field, and build() refuses what validate() refuses.
    let config = Config::builder()
        .window(Window::Time { seconds: 10 })
        .calls_min(5)
        .failure_rate_threshold_percent(40)
        .slow_call_rate_threshold_percent(80)
        .slow_call_duration_threshold(secs(2))
        .open_wait_backoff(backoff(1, 2.0, 30, 0.2))
        .jitter_seed(7)
        .half_open_probes_max(3)
        .half_open_wait_max(Some(secs(20)))
        .auto_half_open(true)
        .event_queue_capacity(64)
        .build()
        .expect("valid");
    assert_eq!(config.window, Window::Time { seconds: 10 });
    assert_eq!(
        (
            config.calls_min,
            config.jitter_seed,
            config.half_open_probes_max
        ),
        (5, 7, 3)
    );
    assert_eq!(config.failure_rate_threshold_percent, 40);
    assert_eq!(config.slow_call_rate_threshold_percent, 80);
    assert_eq!(config.slow_call_duration_threshold, secs(2));
    assert_eq!(
        config.open_wait,
        OpenWait::Backoff(backoff(1, 2.0, 30, 0.2))
    );
    assert_eq!(config.half_open_wait_max, Some(secs(20)));
    assert!(config.auto_half_open);
    assert_eq!(config.event_queue_capacity, 64);
    assert!(config.mutants.is_empty());
    let refused = Config::builder().failure_rate_threshold_percent(0).build();
    assert_eq!(
        refused,
        Err(ConfigError::FailureRateThresholdOutOfRange { percent: 0 })
    );
}

#[cfg(madsim)]
#[test]
fn builder_switches_mutants_on() {
    // Goal: in a simulation build the builder switches on exactly the mutants asked for.
    let config = Config::builder()
        .mutant(Mutant::BucketNotReset)
        .build()
        .expect("valid");
    assert!(config.has_mutant(Mutant::BucketNotReset));
    assert!(!config.has_mutant(Mutant::HalfOpenStuck));
}

#[test]
fn calls_min_is_capped_only_by_count_windows() {
    let mut config = Config {
        window: Window::Count { size: 5 },
        ..Config::default()
    };
    assert_eq!(config.calls_min_effective(), 5);
    config.window = Window::Time { seconds: 5 };
    assert_eq!(config.calls_min_effective(), 100);
}

#[test]
fn backoff_grows_caps_and_jitters_within_bounds() {
    // Goal: wait(k) = min(initial * multiplier^k, max) scaled into [1 - jitter, 1 + jitter)
    // and capped at max; a fixed wait ignores the opening count and the draw.
    let fixed = OpenWait::Fixed(secs(3));
    assert_eq!(fixed.wait(7, u32::MAX), secs(3));
    assert!(!fixed.draws_jitter());
    let plain = OpenWait::Backoff(backoff(1, 2.0, 10, 0.0));
    let waits: Vec<_> = (0..6).map(|k| plain.wait(k, 1 << 31).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
    assert_eq!(
        plain.wait(u32::MAX, 0),
        secs(10),
        "a huge exponent saturates at max"
    );
    assert!(!plain.draws_jitter());
    let jittered = OpenWait::Backoff(backoff(4, 2.0, 100, 0.5));
    assert!(jittered.draws_jitter());
    assert_eq!(jittered.wait(0, 0), secs(2));
    assert_eq!(jittered.wait(0, 1 << 31), secs(4));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    for _ in 0..1000 {
        let draw = jitter_draw(&mut rng);
        let wait = jittered.wait(1, draw);
        assert!(wait >= secs(4) && wait < secs(12), "{wait:?}");
    }
    let capped = OpenWait::Backoff(backoff(8, 2.0, 10, 0.5));
    assert_eq!(
        capped.wait(0, u32::MAX),
        secs(10),
        "jitter never exceeds max"
    );
}

#[cfg(madsim)]
#[test]
fn mutant_names_round_trip() {
    // Goal: every mutant has a unique name accepted by FromStr, a description citing its bug,
    // and an unknown name is a typed error listing the known ones.
    assert_eq!(Mutant::all().len(), 10);
    for &mutant in Mutant::all() {
        assert_eq!(Mutant::from_str(mutant.as_str()), Ok(mutant));
        assert_eq!(mutant.to_string(), mutant.as_str());
        assert!(
            mutant.description().contains('#'),
            "{mutant} cites an issue"
        );
    }
    let error = Mutant::from_str("half_open_forever").expect_err("unknown");
    assert_eq!(error.name, "half_open_forever");
    assert!(error.to_string().contains("half_open_unbounded"));
}

#[test]
fn config_round_trips_through_json() {
    // Goal: configurations are serialized in corpus entries; every field survives.
    let mut config = Config::builder()
        .window(Window::Time { seconds: 3 })
        .open_wait_backoff(backoff(1, 1.5, 9, 0.25))
        .half_open_wait_max(Some(secs(4)))
        .build()
        .expect("valid");
    config.jitter_seed = u64::MAX;
    let json = serde_json::to_string(&config).expect("serializes");
    assert!(json.contains("\"mutants\":[]"), "{json}");
    let back: Config = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, config);
}

#[cfg(madsim)]
#[test]
fn config_round_trips_its_mutants_by_name() {
    // Goal: in a simulation build the mutants of a serialized configuration survive, by name.
    let config = Config::builder()
        .mutant(Mutant::StaleEpochCloses)
        .build()
        .expect("valid");
    let json = serde_json::to_string(&config).expect("serializes");
    assert!(
        json.contains("\"mutants\":[\"stale_epoch_closes\"]"),
        "{json}"
    );
    let back: Config = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, config);
}

#[cfg(not(madsim))]
#[test]
fn production_config_refuses_mutants() {
    // Goal: a production build cannot be handed a mutant, not even in a configuration file: a
    // configuration naming one is refused with an error that says why.
    let json = serde_json::to_string(&Config::default()).expect("serializes");
    let with_mutant = json.replace("\"mutants\":[]", "\"mutants\":[\"stale_epoch_closes\"]");
    assert_ne!(with_mutant, json);
    let error = serde_json::from_str::<Config>(&with_mutant).expect_err("refused");
    assert!(
        error.to_string().contains("only in simulation builds"),
        "{error}"
    );
}

#[test]
fn oracle_backoff_agrees_with_the_breaker_bit_for_bit() {
    // Goal: the oracle's own integer backoff (incremental, with its own draws) and the
    // breaker's `OpenWait::wait` give the same waits, opening after opening, with a reset.
    use patterns::circuit_breaker::oracle::OpenWaits;
    let config = Config {
        open_wait: OpenWait::Backoff(backoff(1, 1.7, 9, 0.35)),
        jitter_seed: 42,
        ..Config::default()
    };
    let mut oracle = OpenWaits::new(&config);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
    for (round, openings) in [(0, 12u32), (1, 3)] {
        if round == 1 {
            oracle.reset();
        }
        for k in 0..openings {
            let draw = jitter_draw(&mut rng);
            assert_eq!(
                oracle.next_wait(),
                config.open_wait.wait(k, draw),
                "opening {k}"
            );
        }
    }
}
