//! BUGGIFY: code-level fault injection with FoundationDB's two-stage rule.
//!
//! A call site (named by module path, line and column: not by file path, which depends on
//! where a crate was checked out) of [`buggify!`](crate::buggify!) is first *activated or not*
//! for the whole run,
//! decided by a hash of the seed and the site (so the decision is stable for a seed and does not
//! depend on the order sites are reached). An activated site then *fires* each time with a
//! probability drawn from the [`crate::rng::BUGGIFY`] stream. Like FoundationDB's, a site's
//! name includes its line: an edit that moves a site changes the run of every seed that
//! reaches it (deterministically), so stored cases that use buggify may need `dst corpus bless`. Everything is off unless the run
//! enables it ([`BuggifyConfig::enabled`] or [`crate::Sim::set_buggify`]). Outside a run,
//! `buggify!()` is always false.
//!
//! ```no_run
//! # async fn flush() {}
//! # async fn example() {
//! if sim_core::buggify!() {
//!     // Take the rare path: for example, pretend the cache is cold.
//! }
//! if sim_core::buggify!(0.01) {
//!     flush().await;
//! }
//! # }
//! ```

use crate::trace::Event;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// FoundationDB's probability that a site is activated in a run.
pub const ACTIVATION_PROBABILITY_DEFAULT: f64 = 0.25;
/// FoundationDB's probability that an activated site fires.
pub const FIRE_PROBABILITY_DEFAULT: f64 = 0.25;

/// Buggify settings of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuggifyConfig {
    /// Whether `buggify!()` can fire at all.
    pub enabled: bool,
    /// Probability that a site is activated for the run.
    pub activation_probability: f64,
}

impl Default for BuggifyConfig {
    fn default() -> Self {
        BuggifyConfig {
            enabled: false,
            activation_probability: ACTIVATION_PROBABILITY_DEFAULT,
        }
    }
}

pub(crate) struct BuggifyState {
    pub enabled: bool,
    activation_probability: f64,
    activated: BTreeMap<&'static str, bool>,
}

impl BuggifyState {
    pub fn new(config: &BuggifyConfig) -> Self {
        BuggifyState {
            enabled: config.enabled,
            activation_probability: config.activation_probability,
            activated: BTreeMap::new(),
        }
    }
}

/// Whether `site` is activated in a run seeded with `seed`, at `probability`.
pub fn is_activated(seed: u64, site: &str, probability: f64) -> bool {
    let draw = crate::rng::splitmix64(seed ^ crate::trace::hash_str(site));
    // The top 53 bits as a uniform number in [0, 1).
    ((draw >> 11) as f64 / (1u64 << 53) as f64) < probability
}

/// The function behind [`buggify!`](crate::buggify!): whether `site` fires now.
pub fn fire(site: &'static str, probability: f64) -> bool {
    crate::world::try_with(|world| {
        if !world.buggify.enabled || !world.running() {
            return false;
        }
        let seed = world.seed;
        let activation = world.buggify.activation_probability;
        let activated = *world
            .buggify
            .activated
            .entry(site)
            .or_insert_with(|| is_activated(seed, site, activation));
        if !activated {
            return false;
        }
        let fired = world
            .stream(crate::rng::BUGGIFY)
            .gen_bool(probability.clamp(0.0, 1.0));
        if fired {
            let node = world.current_node();
            world.record(
                node,
                Event::Buggify {
                    site: site.to_string(),
                },
            );
        }
        fired
    })
    .unwrap_or(false)
}

/// Whether this call site injects a fault now; see the [module docs](mod@crate::buggify).
///
/// `buggify!()` fires with FoundationDB's 25 % once the site is activated;
/// `buggify!(p)` fires with probability `p`.
#[macro_export]
macro_rules! buggify {
    () => {
        $crate::buggify::fire(
            concat!(module_path!(), ":", line!(), ":", column!()),
            $crate::buggify::FIRE_PROBABILITY_DEFAULT,
        )
    };
    ($probability:expr) => {
        $crate::buggify::fire(
            concat!(module_path!(), ":", line!(), ":", column!()),
            $probability,
        )
    };
}
