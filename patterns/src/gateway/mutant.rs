//! Deliberately broken variants of the gateway's cores, each mirroring a real bug (see
//! `../shared/research/patterns.md`, section 2). Off by default.

// The enum exists in every build, so that the code consulting a mutant compiles everywhere;
// its names (`Debug`, serde, `as_str`, `Display`, `FromStr`) only in simulation builds: a
// production build's `Mutants` is always empty (see `crate::mutant_set`).
/// One mutant.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(madsim, derive(Debug, serde::Serialize, serde::Deserialize))]
pub enum Mutant {
    /// The first matching route in the order routes were added wins, instead of the
    /// documented precedence (Kong#9529).
    RouteByInsertionOrder,
    /// Routing and authorization look at the path as sent while the normalised path goes
    /// upstream: `/public/../private` passes as public and reaches `/private` (Envoy#6435,
    /// CVE-2019-9901).
    MatchesRawPath,
    /// The limiter rounds each refill up to a whole token: every check credits the token
    /// still being earned, so it over-admits (the counting errors of Kong#2629, tower#756).
    LimiterRoundsUp,
    /// A refused request is charged like an admitted one (the limiter reserves before it
    /// decides): a client that keeps asking faster than the rate is refused for ever, even
    /// after the storm is over (peterkhayes/rolling-rate-limiter#9, xuqingfeng/caddy-rate-limit#24).
    LimiterChargesRefusals,
    /// A cached token verdict is used until the cache entry's own end, not the token's
    /// expiry: an expired token keeps passing (Envoy#23278).
    AuthCacheOutlivesToken,
    /// Every failed attempt is retried, a non-idempotent request that may have reached the
    /// backend included (Istio#13851).
    RetriesNonIdempotent,
    /// Outlier ejection ignores its cap and ejects every failing instance (Envoy#26877).
    EjectionOvershoots,
    /// Every attempt gets the full per-try timeout, even when less is left before the route
    /// timeout: a retry answers after the route's deadline (alibaba/higress#721).
    RetriesPastRouteTimeout,
    /// Instances that discovery no longer lists stay in the balancing set while they answer
    /// (the trap of Envoy's default `ignore_health_on_host_removal: false`: a host removed
    /// from EDS keeps traffic until its health check fails).
    KeepsRemovedInstances,
    /// The balancer consults each instance's breaker but not the ejection list: an ejected
    /// instance keeps its share of new attempts (ejection is computed, then never read).
    IgnoresEjection,
    /// Retries do not ask the instance's breaker: the breaker guards a request's first try
    /// only, as when the retry policy wraps the breaker the wrong way round (Polly's
    /// PolicyWrap order, App-vNext/Polly#1012; resilience4j's decorator order): an instance
    /// whose breaker is open keeps getting every retry.
    RetriesBypassBreaker,
    /// A cached token verdict is used without checking the token's not-before again: after
    /// the gateway's clock steps back, a token its clock says is not valid yet keeps passing
    /// (nearform/fast-jwt#194: the cache judges a token's times otherwise than the verifier).
    AuthCacheIgnoresNotBefore,
    /// A cached token verdict lives for the token's remaining life as measured when it was
    /// cached (a TTL on the monotonic clock, as a cache's own expiry timer), and a hit does
    /// not compare the token's expiry with the wall clock again: after the gateway's wall
    /// clock steps forward, an expired token keeps passing until its TTL runs out
    /// (wso2/product-apim#9380: the gateway's JWT cache hands out a token its cache entry
    /// outlives).
    AuthCacheTtlFromTokenLife,
    /// Every discovery answer that changes a service (a resync, or watch events about any
    /// of its instances: one re-registering after a restart, another leaving) rebuilds the
    /// service's instances from scratch: each gets a fresh breaker and loses its ejection,
    /// though it is still listed, so an instance ejected a moment ago gets traffic again
    /// (envoyproxy/envoy#3930: hosts an EDS update touches are taken as new and lose the
    /// health state learned about them; fixed by envoyproxy/envoy#3959).
    UpdateRebuildsInstances,
}

#[cfg(madsim)]
impl Mutant {
    /// Every mutant, in a stable order.
    pub fn all() -> &'static [Mutant] {
        &[
            Mutant::RouteByInsertionOrder,
            Mutant::MatchesRawPath,
            Mutant::LimiterRoundsUp,
            Mutant::LimiterChargesRefusals,
            Mutant::AuthCacheOutlivesToken,
            Mutant::RetriesNonIdempotent,
            Mutant::EjectionOvershoots,
            Mutant::RetriesPastRouteTimeout,
            Mutant::KeepsRemovedInstances,
            Mutant::IgnoresEjection,
            Mutant::RetriesBypassBreaker,
            Mutant::AuthCacheIgnoresNotBefore,
            Mutant::AuthCacheTtlFromTokenLife,
            Mutant::UpdateRebuildsInstances,
        ]
    }

    /// The mutant's name on command lines (kebab-case).
    pub fn as_str(self) -> &'static str {
        match self {
            Mutant::RouteByInsertionOrder => "route-by-insertion-order",
            Mutant::MatchesRawPath => "matches-raw-path",
            Mutant::LimiterRoundsUp => "limiter-rounds-up",
            Mutant::LimiterChargesRefusals => "limiter-charges-refusals",
            Mutant::AuthCacheOutlivesToken => "auth-cache-outlives-token",
            Mutant::RetriesNonIdempotent => "retries-non-idempotent",
            Mutant::EjectionOvershoots => "ejection-overshoots",
            Mutant::RetriesPastRouteTimeout => "retries-past-route-timeout",
            Mutant::KeepsRemovedInstances => "keeps-removed-instances",
            Mutant::IgnoresEjection => "ignores-ejection",
            Mutant::RetriesBypassBreaker => "retries-bypass-breaker",
            Mutant::AuthCacheIgnoresNotBefore => "auth-cache-ignores-not-before",
            Mutant::AuthCacheTtlFromTokenLife => "auth-cache-ttl-from-token-life",
            Mutant::UpdateRebuildsInstances => "update-rebuilds-instances",
        }
    }
}

crate::mutant_set::mutant_names!(Mutant, "gateway");

/// A mutant name that is not one of [`Mutant::all`].
#[cfg(madsim)]
pub type UnknownMutant = crate::mutant_set::UnknownMutant;

/// The set of this pattern's mutants switched on (none in production).
pub type Mutants = crate::mutant_set::MutantSet<Mutant>;
