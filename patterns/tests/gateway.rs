//! The gateway's sans-IO cores: path normalisation (hand-picked attacks and hostile inputs),
//! route precedence (independent of insertion order), and the GCRA limiter's bound; each
//! mutant shown breaking the rule it targets.
//!
//! Mutants exist in simulation builds only (`--cfg madsim`): the tests of a mutant, and the
//! mutant cases of the others, are compiled there only; the rest runs in every build.

use patterns::gateway::limit::{Decision, LimitConfig, Limiter};
#[cfg(madsim)]
use patterns::gateway::mutant::Mutant;
use patterns::gateway::mutant::Mutants;
use patterns::gateway::route::{
    normalize, Access, HostMatch, PathError, PathMatch, Route, RouteTable, TableError,
};
use proptest::prelude::*;
use std::time::Duration;

fn path(target: &str) -> Result<String, PathError> {
    normalize(target).map(|t| t.path)
}

#[test]
fn dot_segments_and_escapes_resolve_before_routing() {
    // Goal: the classic bypasses normalise to the path they really reach (Envoy#6435).
    assert_eq!(path("/info/../private").unwrap(), "/private");
    assert_eq!(path("/info/%2e%2e/private").unwrap(), "/private");
    assert_eq!(path("/info/%2E./private").unwrap(), "/private");
    assert_eq!(path("//private///x").unwrap(), "/private/x");
    assert_eq!(path("/a/./b/").unwrap(), "/a/b/");
    assert_eq!(path("/a/b/..").unwrap(), "/a/");
    assert_eq!(path("/%41%7e%20x").unwrap(), "/A~%20x");
    assert_eq!(path("/").unwrap(), "/");
    let target = normalize("/a?x=../b#").unwrap_err();
    assert_eq!(target, PathError::Fragment);
    let target = normalize("/a/../b?x=/../y").unwrap();
    assert_eq!(
        (target.path.as_str(), target.query.as_deref()),
        ("/b", Some("x=/../y"))
    );
}

#[test]
fn what_cannot_be_normalised_safely_is_refused() {
    // Goal: escaped slashes, climbing above the root, bad escapes and odd bytes get a 400.
    assert_eq!(path("/a%2fb"), Err(PathError::EscapedSlash));
    assert_eq!(path("/a%5Cb"), Err(PathError::EscapedSlash));
    assert_eq!(path("/../etc"), Err(PathError::AboveRoot));
    assert_eq!(path("/a/%2e%2e/%2e%2e/b"), Err(PathError::AboveRoot));
    assert_eq!(path("/a%2"), Err(PathError::BadEscape));
    assert_eq!(path("/a%zz"), Err(PathError::BadEscape));
    assert_eq!(path("/a\\b"), Err(PathError::ForbiddenChar));
    assert_eq!(path("/a\u{0}b"), Err(PathError::ForbiddenChar));
    assert_eq!(path("/é"), Err(PathError::ForbiddenChar));
    assert_eq!(path("http://h/a"), Err(PathError::NotOriginForm));
    assert_eq!(path("*"), Err(PathError::NotOriginForm));
}

fn route(name: &str, host: HostMatch, path: PathMatch, methods: &[&str]) -> Route {
    Route {
        name: name.into(),
        host,
        path,
        methods: (!methods.is_empty()).then(|| methods.iter().map(|m| m.to_string()).collect()),
        service: format!("svc-{name}"),
        access: Access::Public,
    }
}

fn table() -> Vec<Route> {
    vec![
        route(
            "any-root",
            HostMatch::Any,
            PathMatch::Prefix("/".into()),
            &[],
        ),
        route(
            "any-api",
            HostMatch::Any,
            PathMatch::Prefix("/api".into()),
            &[],
        ),
        route(
            "any-api-v1",
            HostMatch::Any,
            PathMatch::Prefix("/api/v1".into()),
            &[],
        ),
        route(
            "any-api-exact",
            HostMatch::Any,
            PathMatch::Exact("/api/v1/x".into()),
            &[],
        ),
        route(
            "any-api-post",
            HostMatch::Any,
            PathMatch::Prefix("/api/v1".into()),
            &["POST"],
        ),
        route(
            "wild",
            HostMatch::Suffix(".example.com".into()),
            PathMatch::Prefix("/".into()),
            &[],
        ),
        route(
            "wild-deeper",
            HostMatch::Suffix(".eu.example.com".into()),
            PathMatch::Prefix("/".into()),
            &[],
        ),
        route(
            "exact-host",
            HostMatch::Exact("shop.example.com".into()),
            PathMatch::Prefix("/cart".into()),
            &[],
        ),
    ]
}

fn name(table: &RouteTable, host: &str, method: &str, target: &str) -> Option<String> {
    let target = normalize(target).ok()?;
    table
        .route(host, method, &target.path)
        .map(|r| r.name.clone())
}

#[test]
fn the_documented_precedence_decides() {
    // Goal: host class first (exact, longest suffix, any: less specific hosts are not
    // considered), then exact path, longest prefix by whole segments, then listed methods.
    let routes = RouteTable::new(1, table(), Mutants::none()).unwrap();
    let n = |host, method, target| name(&routes, host, method, target);
    assert_eq!(
        n("other.org", "GET", "/api/v1/x").as_deref(),
        Some("any-api-exact")
    );
    assert_eq!(
        n("other.org", "GET", "/api/v1/y").as_deref(),
        Some("any-api-v1")
    );
    assert_eq!(
        n("other.org", "POST", "/api/v1/y").as_deref(),
        Some("any-api-post")
    );
    assert_eq!(n("other.org", "GET", "/apix").as_deref(), Some("any-root"));
    assert_eq!(
        n("other.org:8080", "GET", "/api").as_deref(),
        Some("any-api")
    );
    assert_eq!(
        n("a.example.com", "GET", "/api/v1/x").as_deref(),
        Some("wild")
    );
    assert_eq!(
        n("a.eu.example.com", "GET", "/").as_deref(),
        Some("wild-deeper")
    );
    assert_eq!(
        n("SHOP.example.com", "GET", "/cart/1").as_deref(),
        Some("exact-host")
    );
    // The exact host has no route for this path; the less specific hosts are not consulted.
    assert_eq!(n("shop.example.com", "GET", "/api"), None);
    assert_eq!(n("example.com", "GET", "/api").as_deref(), Some("any-api"));
}

#[test]
fn conflicts_and_bad_patterns_are_refused_at_build() {
    // Goal: a table whose result would depend on insertion order is refused.
    let twin = route(
        "twin",
        HostMatch::Any,
        PathMatch::Prefix("/api".into()),
        &[],
    );
    let mut routes = table();
    routes.push(twin);
    assert!(matches!(
        RouteTable::new(1, routes, Mutants::none()),
        Err(TableError::Conflict(..))
    ));
    let mut routes = table();
    routes.push(route(
        "slash",
        HostMatch::Any,
        PathMatch::Prefix("/a/".into()),
        &[],
    ));
    assert!(matches!(
        RouteTable::new(1, routes, Mutants::none()),
        Err(TableError::BadPattern { .. })
    ));
    let mut routes = table();
    routes.push(route(
        "dots",
        HostMatch::Any,
        PathMatch::Exact("/a/../b".into()),
        &[],
    ));
    assert!(matches!(
        RouteTable::new(1, routes, Mutants::none()),
        Err(TableError::BadPattern { .. })
    ));
    let mut routes = table();
    routes.push(route(
        "any-root",
        HostMatch::Any,
        PathMatch::Exact("/z".into()),
        &[],
    ));
    assert!(matches!(
        RouteTable::new(1, routes, Mutants::none()),
        Err(TableError::DuplicateName(_))
    ));
}

#[cfg(madsim)]
#[test]
fn mutant_route_by_insertion_order_takes_the_first_match() {
    // Goal: under the mutant, the catch-all added first shadows the more specific routes.
    let routes = RouteTable::new(1, table(), Mutants::only(Mutant::RouteByInsertionOrder)).unwrap();
    assert_eq!(
        name(&routes, "other.org", "GET", "/api/v1/x").as_deref(),
        Some("any-root")
    );
}

fn hostile_target() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just("//".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E".to_string()),
        Just("%2f".to_string()),
        Just("%5c".to_string()),
        Just("%".to_string()),
        Just("%4".to_string()),
        Just("%41".to_string()),
        Just("\\".to_string()),
        Just("?".to_string()),
        Just("#".to_string()),
        Just(";".to_string()),
        "[a-z]{1,4}",
        any::<char>().prop_map(String::from),
    ];
    (
        prop::bool::weighted(0.9),
        proptest::collection::vec(piece, 0..16),
    )
        .prop_map(|(slash, pieces)| {
            let mut target = if slash {
                String::from("/")
            } else {
                String::new()
            };
            target.extend(pieces);
            target
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn hostile_targets_never_panic_and_normalise_once(target in hostile_target()) {
        // Goal: whatever the bytes, `normalize` answers (no panic); what it accepts is a
        // clean path (no empty, `.` or `..` segment, no escaped unreserved character) that
        // normalises to itself, so the path matched is the path sent upstream.
        if let Ok(normal) = normalize(&target) {
            let again = normalize(&normal.path).expect("a normalised path normalises");
            prop_assert_eq!(&again.path, &normal.path);
            prop_assert!(normal.path.starts_with('/'));
            prop_assert!(!normal.path.contains("//"));
            for segment in normal.path.split('/') {
                prop_assert!(segment != "." && segment != "..");
            }
            let lower = normal.path.to_ascii_lowercase();
            prop_assert!(!lower.contains("%2e") && !lower.contains("%2f") && !lower.contains("%5c"));
        }
    }

    #[test]
    fn the_route_does_not_depend_on_insertion_order(
        order in Just((0..8usize).collect::<Vec<_>>()).prop_shuffle(),
        target in hostile_target(),
        host in prop_oneof![Just("x.org"), Just("a.example.com"), Just("b.eu.example.com"), Just("shop.example.com")],
        method in prop_oneof![Just("GET"), Just("POST")],
    ) {
        // Goal: the same request gets the same route whatever order the table was built in.
        let routes = table();
        let shuffled: Vec<Route> = order.iter().map(|&i| routes[i].clone()).collect();
        let a = RouteTable::new(1, routes, Mutants::none()).unwrap();
        let b = RouteTable::new(1, shuffled, Mutants::none()).unwrap();
        prop_assert_eq!(name(&a, host, method, &target), name(&b, host, method, &target));
    }
}

/// Requests of one key at the given times (ms); the times admitted (ms).
fn admitted(config: LimitConfig, times_ms: &[u64]) -> Vec<u64> {
    let mut limiter = Limiter::new(config).unwrap();
    times_ms
        .iter()
        .copied()
        .filter(|&t| limiter.check("k", Duration::from_millis(t)) == Decision::Admit)
        .collect()
}

/// The most requests admitted in any window of `window_ms`.
fn busiest(admitted: &[u64], window_ms: u64) -> usize {
    admitted
        .iter()
        .map(|&start| {
            admitted
                .iter()
                .filter(|&&t| t >= start && t < start + window_ms)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn a_burst_then_the_rate() {
    // Goal: `burst` at once, then one per 1/rate; the wait is told; a key idle long enough
    // bursts again.
    let config = LimitConfig {
        rate_per_s: 10,
        burst: 3,
        ..LimitConfig::default()
    };
    let mut limiter = Limiter::new(config).unwrap();
    let at = |ms: u64| Duration::from_millis(ms);
    for _ in 0..3 {
        assert_eq!(limiter.check("k", at(0)), Decision::Admit);
    }
    assert_eq!(
        limiter.check("k", at(0)),
        Decision::Deny {
            retry_after: at(100)
        }
    );
    assert_eq!(limiter.check("other", at(0)), Decision::Admit);
    assert_eq!(limiter.check("k", at(100)), Decision::Admit);
    assert!(matches!(limiter.check("k", at(150)), Decision::Deny { .. }));
    for _ in 0..3 {
        assert_eq!(limiter.check("k", at(2_000)), Decision::Admit);
    }
}

#[test]
fn a_full_key_table_fails_closed_and_forgets_refilled_keys() {
    // Goal: the table stays bounded; a refilled key is forgotten to make room; with no room a
    // new key is refused, not admitted unchecked.
    let config = LimitConfig {
        rate_per_s: 10,
        burst: 1,
        keys_max: 2,
        ..LimitConfig::default()
    };
    let mut limiter = Limiter::new(config).unwrap();
    let at = |ms: u64| Duration::from_millis(ms);
    assert_eq!(limiter.check("a", at(0)), Decision::Admit);
    assert_eq!(limiter.check("b", at(0)), Decision::Admit);
    assert_eq!(limiter.check("c", at(0)), Decision::TableFull);
    assert_eq!(limiter.check("c", at(100)), Decision::Admit);
    assert!(limiter.keys() <= 2);
    assert!(Limiter::new(LimitConfig {
        rate_per_s: 0,
        ..LimitConfig::default()
    })
    .is_err());
}

proptest! {
    #[test]
    fn no_window_admits_more_than_burst_plus_rate(
        gaps in proptest::collection::vec(0u64..40, 1..300),
        rate in 1u32..50,
        burst in 1u32..8,
        window_ms in 1u64..2_000,
    ) {
        // Goal: over any window of length d, at most burst + rate * d requests are admitted.
        let mut t = 0;
        let times: Vec<u64> = gaps.iter().map(|g| { t += g; t }).collect();
        let config = LimitConfig { rate_per_s: rate, burst, ..LimitConfig::default() };
        let admitted = admitted(config, &times);
        // The window [s, s + d) holds at most burst + rate * d, rounded down.
        let bound = u64::from(burst) + u64::from(rate) * window_ms / 1_000;
        prop_assert!(busiest(&admitted, window_ms) as u64 <= bound);
    }
}

#[test]
fn mutant_limiter_rounds_up_over_admits() {
    // Goal: under the mutant a steady stream gets more than the bound in a window.
    let times: Vec<u64> = (0..200).map(|i| i * 5).collect();
    let config = |mutants| LimitConfig {
        rate_per_s: 10,
        burst: 2,
        mutants,
        ..LimitConfig::default()
    };
    let bound = 2 + 10 * 1_000 / 1_000;
    assert!(busiest(&admitted(config(Mutants::none()), &times), 1_000) <= bound);
    #[cfg(madsim)]
    {
        let broken = admitted(config(Mutants::only(Mutant::LimiterRoundsUp)), &times);
        assert!(busiest(&broken, 1_000) > bound, "{broken:?}");
    }
}

#[test]
fn a_client_asking_twice_the_rate_is_admitted_at_the_rate_unless_refusals_are_charged() {
    // Goal: refusals cost nothing, so a client that keeps asking faster than the rate gets the
    // rate; under the mutant it gets the burst and then nothing.
    let times: Vec<u64> = (0..400).map(|i| i * 50).collect(); // 20/s for 20 s
    let config = |mutants| LimitConfig {
        rate_per_s: 10,
        burst: 4,
        mutants,
        ..LimitConfig::default()
    };
    let honest = admitted(config(Mutants::none()), &times);
    assert!(honest.len() >= 10 * 20, "{}", honest.len());
    #[cfg(madsim)]
    {
        let broken = admitted(
            config(Mutants::only(Mutant::LimiterChargesRefusals)),
            &times,
        );
        assert!(broken.iter().all(|&t| t < 1_000), "{broken:?}");
    }
}

mod auth {
    use super::*;
    use patterns::gateway::auth::{sign, AuthConfig, AuthError, Claims, KeyRing, Verifier};
    use std::collections::BTreeMap;

    fn claims(principal: &str, key: &str, not_before_s: u64, expires_s: u64) -> Claims {
        Claims {
            principal: principal.into(),
            key_id: key.into(),
            not_before_s,
            expires_s,
        }
    }

    fn ring() -> KeyRing {
        KeyRing {
            current: BTreeMap::from([("k2".to_string(), b"secret-two".to_vec())]),
            retired: BTreeMap::from([("k1".to_string(), (b"secret-one".to_vec(), 1_500))]),
        }
    }

    fn verifier(mutants: Mutants) -> Verifier {
        let config = AuthConfig {
            skew_s: 60,
            mutants,
            ..AuthConfig::default()
        };
        Verifier::new(config, ring())
    }

    #[test]
    fn a_signed_token_is_accepted_within_its_window_and_the_skew() {
        // Goal: validity is nbf - skew ..= exp + skew on the gateway's clock, inclusive.
        let token = sign(&claims("ann", "k2", 1_000, 2_000), b"secret-two");
        let mut v = verifier(Mutants::none());
        assert_eq!(v.verify(&token, 940).unwrap().principal, "ann");
        assert_eq!(v.verify(&token, 2_060).unwrap().principal, "ann");
        let mut fresh = verifier(Mutants::none());
        assert_eq!(
            fresh.verify(&token, 939),
            Err(AuthError::NotYetValid(1_000))
        );
        assert_eq!(fresh.verify(&token, 2_061), Err(AuthError::Expired(2_000)));
    }

    #[test]
    fn forged_tampered_and_unknown_key_tokens_are_refused() {
        // Goal: a changed claim, a wrong secret, an unknown key or a retired key past its
        // grace are all refused.
        let mut v = verifier(Mutants::none());
        let token = sign(&claims("ann", "k2", 0, 5_000), b"secret-two");
        let tampered = token.replacen("ann", "bob", 1);
        assert_eq!(v.verify(&tampered, 100), Err(AuthError::BadSignature));
        let forged = sign(&claims("bob", "k2", 0, 5_000), b"guess");
        assert_eq!(v.verify(&forged, 100), Err(AuthError::BadSignature));
        let unknown = sign(&claims("ann", "k9", 0, 5_000), b"secret-two");
        assert_eq!(
            v.verify(&unknown, 100),
            Err(AuthError::UnknownKey("k9".into()))
        );
        let old = sign(&claims("ann", "k1", 0, 5_000), b"secret-one");
        assert!(v.verify(&old, 1_500).is_ok(), "a retired key in its grace");
        assert_eq!(
            v.verify(&old, 1_501),
            Err(AuthError::UnknownKey("k1".into()))
        );
        for bad in [
            "",
            "v1",
            "v2.a.k2.0.1.00",
            "v1.a.k2.0.1.zz",
            "v1.a b.k2.0.1.00",
        ] {
            assert_eq!(v.verify(bad, 100), Err(AuthError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn revocation_and_rotation_reach_cached_verdicts() {
        // Goal: a revoked principal is refused even with a cached verdict; a rotation that
        // drops a key drops its cached verdicts.
        let mut v = verifier(Mutants::none());
        let token = sign(&claims("ann", "k2", 0, 5_000), b"secret-two");
        assert!(v.verify(&token, 100).is_ok());
        v.revoke("ann");
        assert_eq!(v.verify(&token, 101), Err(AuthError::Revoked("ann".into())));
        let bob = sign(&claims("bob", "k2", 0, 5_000), b"secret-two");
        assert!(v.verify(&bob, 100).is_ok());
        v.set_keys(KeyRing::default());
        assert_eq!(v.verify(&bob, 101), Err(AuthError::UnknownKey("k2".into())));
    }

    #[test]
    fn a_cached_verdict_never_outlives_the_token() {
        // Goal: verified once before expiry, the token is still refused after expiry + skew;
        // under the mutant the cache keeps passing it (Envoy#23278).
        let token = sign(&claims("ann", "k2", 0, 1_000), b"secret-two");
        let mut v = verifier(Mutants::none());
        assert!(v.verify(&token, 990).is_ok());
        assert_eq!(v.verify(&token, 1_061), Err(AuthError::Expired(1_000)));
        #[cfg(madsim)]
        {
            let mut broken = verifier(Mutants::only(Mutant::AuthCacheOutlivesToken));
            assert!(broken.verify(&token, 990).is_ok());
            assert!(broken.verify(&token, 1_061).is_ok());
        }
    }

    #[test]
    fn a_cached_verdict_still_checks_not_before() {
        // Goal: verified once while valid, the token is refused when the clock has stepped
        // back to before its not-before (minus the skew); under the mutant the cache keeps
        // passing it (fast-jwt#194).
        let token = sign(&claims("ann", "k2", 1_000, 5_000), b"secret-two");
        let mut v = verifier(Mutants::none());
        assert!(v.verify(&token, 1_000).is_ok());
        assert_eq!(v.verify(&token, 900), Err(AuthError::NotYetValid(1_000)));
        #[cfg(madsim)]
        {
            let mut broken = verifier(Mutants::only(Mutant::AuthCacheIgnoresNotBefore));
            assert!(broken.verify(&token, 1_000).is_ok());
            assert!(broken.verify(&token, 900).is_ok());
        }
    }

    #[test]
    fn a_cached_verdict_checks_expiry_by_the_wall_clock_after_a_step() {
        // Goal: verified once while valid, the token is refused when the wall clock has
        // stepped forward past its expiry (plus the skew), however little monotonic time
        // passed; under the mutant the cache entry's monotonic TTL keeps passing it
        // (wso2/product-apim#9380). Without a step the two agree to the nanosecond.
        use std::time::Duration;
        let token = sign(&claims("ann", "k2", 1_000, 1_010), b"secret-two");
        let at = |wall_s: u64, mono_ms: u64| {
            (
                Duration::from_secs(wall_s) + Duration::from_millis(mono_ms % 1_000),
                Duration::from_millis(mono_ms),
            )
        };
        let mut v = verifier(Mutants::none());
        let (wall, mono) = at(1_000, 500);
        assert!(v.verify_at(&token, wall, mono).is_ok());
        let (wall, mono) = at(1_071, 600);
        assert_eq!(
            v.verify_at(&token, wall, mono),
            Err(AuthError::Expired(1_010))
        );
        #[cfg(madsim)]
        {
            let mut broken = verifier(Mutants::only(Mutant::AuthCacheTtlFromTokenLife));
            let (wall, mono) = at(1_000, 500);
            assert!(broken.verify_at(&token, wall, mono).is_ok());
            // The wall clock stepped 71 s forward, the monotonic clock moved 100 ms.
            let (wall, mono) = at(1_071, 600);
            assert!(broken.verify_at(&token, wall, mono).is_ok());
            // Without a step, the entry ends when the token does, skew included.
            let mut broken = verifier(Mutants::only(Mutant::AuthCacheTtlFromTokenLife));
            assert!(broken
                .verify_at(&token, at(1_000, 500).0, at(1_000, 500).1)
                .is_ok());
            let last = Duration::from_millis(70_999);
            assert!(broken
                .verify_at(&token, Duration::from_secs(1_000) + last, last)
                .is_ok());
            assert!(broken
                .verify_at(
                    &token,
                    Duration::from_secs(1_071),
                    Duration::from_millis(71_000)
                )
                .is_err());
        }
    }

    proptest! {
        #[test]
        fn hostile_tokens_never_panic_nor_pass(token in "[v1.a-z0-9A-Z_\\- ]{0,120}") {
            // Goal: arbitrary strings are refused cleanly (no secret known to the generator).
            let mut v = verifier(Mutants::none());
            prop_assert!(v.verify(&token, 100).is_err());
        }
    }
}

mod http {
    use super::*;
    use patterns::gateway::http::{parse_request, parse_response, render_response, Limits};

    fn status(bytes: &[u8]) -> u16 {
        match parse_request(bytes, &Limits::default()) {
            Ok(_) => 0,
            Err(refusal) => refusal.status,
        }
    }

    #[test]
    fn a_request_becomes_typed_fields() {
        // Goal: method, normalised target, host without port, bearer token, idempotency key
        // and the JSON body come out; nothing else is carried.
        let bytes = b"POST /orders/../carts/%2e/7?x=1 HTTP/1.1\r\nHost: Shop.Example.com:8080\r\nAuthorization: Bearer tok\r\nIdempotency-Key: k-1\r\nX-Principal: admin\r\nContent-Length: 9\r\n\r\n{\"n\": 2}\n";
        let request = parse_request(bytes, &Limits::default()).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.target.path, "/carts/7");
        assert_eq!(request.target.query.as_deref(), Some("x=1"));
        assert_eq!(request.host, "shop.example.com");
        assert_eq!(request.token.as_deref(), Some("tok"));
        assert_eq!(request.idempotency_key.as_deref(), Some("k-1"));
        assert_eq!(request.body, serde_json::json!({"n": 2}));
    }

    #[test]
    fn smuggling_shapes_and_bad_bodies_are_refused() {
        // Goal: each refusal has its status and no request comes out.
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400, "no Host");
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            501
        );
        assert_eq!(
            status(
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
            ),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +2\r\n\r\n{}"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n{}"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"),
            400
        );
        assert_eq!(status(b"GET /a/../../b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Basic x\r\n\r\n"),
            401
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n"), 400, "incomplete");
        let big = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            70_000
        );
        assert_eq!(status(big.as_bytes()), 413);
        let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..40 {
            many.push_str(&format!("X-{i}: y\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(status(many.as_bytes()), 431);
    }

    #[test]
    fn a_rendered_response_parses_back() {
        // Goal: the gateway's answers are well-formed HTTP/1.1 with a JSON body.
        let body = serde_json::json!({"ok": true});
        let parsed = parse_response(&render_response(201, &body)).unwrap();
        assert_eq!((parsed.status, parsed.body), (201, body));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        #[test]
        fn hostile_bytes_never_panic_and_never_smuggle(
            method in prop_oneof![Just("GET"), Just("POST"), Just("G\u{0}T"), Just("")],
            target in hostile_target(),
            headers in proptest::collection::vec(
                prop_oneof![
                    Just("Host: a".to_string()),
                    Just("Content-Length: 2".to_string()),
                    Just("Content-Length: 3".to_string()),
                    Just("Transfer-Encoding: chunked".to_string()),
                    Just("Authorization: Bearer t".to_string()),
                    "[ -~]{0,20}",
                ],
                0..6,
            ),
            body in "[ -~]{0,8}",
        ) {
            // Goal: any head and body is answered (no panic); an accepted request has a
            // normalised target, no Transfer-Encoding, and exactly its Content-Length.
            let mut bytes = format!("{method} {target} HTTP/1.1\r\n");
            for header in &headers {
                bytes.push_str(header);
                bytes.push_str("\r\n");
            }
            bytes.push_str("\r\n");
            bytes.push_str(&body);
            if let Ok(request) = parse_request(bytes.as_bytes(), &Limits::default()) {
                prop_assert_eq!(normalize(&request.target.path).unwrap().path, request.target.path);
                prop_assert!(!headers.iter().any(|h| h.to_ascii_lowercase().starts_with("transfer-encoding")));
            }
        }
    }
}

mod admission {
    use super::*;
    use patterns::gateway::admit::{admit, Clocks};
    use patterns::gateway::auth::{sign, AuthConfig, Claims, KeyRing, Verifier};
    use patterns::gateway::http::Limits;
    use std::collections::BTreeMap;

    struct Gateway {
        table: RouteTable,
        verifier: Verifier,
        limiter: Limiter,
    }

    impl Gateway {
        fn new() -> Gateway {
            Gateway::with(Mutants::none())
        }

        fn with(mutants: Mutants) -> Gateway {
            let mut private = route(
                "private",
                HostMatch::Any,
                PathMatch::Prefix("/private".into()),
                &[],
            );
            private.access = Access::Authenticated;
            let routes = vec![
                route(
                    "info",
                    HostMatch::Any,
                    PathMatch::Prefix("/info".into()),
                    &["GET"],
                ),
                private,
            ];
            let keys = KeyRing {
                current: BTreeMap::from([("k".to_string(), b"s".to_vec())]),
                ..KeyRing::default()
            };
            Gateway {
                table: RouteTable::new(3, routes, mutants).unwrap(),
                verifier: Verifier::new(AuthConfig::default(), keys),
                limiter: Limiter::new(LimitConfig {
                    rate_per_s: 1,
                    burst: 2,
                    ..LimitConfig::default()
                })
                .unwrap(),
            }
        }

        fn send(&mut self, head: &str, at_s: u64) -> Result<(String, Option<String>, String), u16> {
            let bytes = format!("{head}\r\nHost: gw\r\n\r\n");
            let clocks = Clocks {
                monotonic: Duration::from_secs(at_s),
                wall: Duration::from_secs(1_000 + at_s),
            };
            admit(
                bytes.as_bytes(),
                "10.0.0.1",
                1,
                clocks,
                &Limits::default(),
                &self.table,
                &mut self.verifier,
                &mut self.limiter,
            )
            .map(|a| (a.request.route, a.request.principal, a.request.path))
            .map_err(|refusal| refusal.status)
        }
    }

    fn token(principal: &str) -> String {
        let claims = Claims {
            principal: principal.into(),
            key_id: "k".into(),
            not_before_s: 0,
            expires_s: 5_000,
        };
        sign(&claims, b"s")
    }

    #[test]
    fn the_routed_path_is_the_authorized_and_forwarded_path() {
        // Goal: `/info/../private` is routed as `/private`, so it needs a token (Envoy#6435),
        // and the principal the gateway verified is the one forwarded (a client's
        // X-Principal header goes nowhere).
        let mut gw = Gateway::new();
        assert_eq!(gw.send("GET /info/../private HTTP/1.1", 0), Err(401));
        let ann = token("ann");
        let head = format!("GET /info/%2e%2e/private/x HTTP/1.1\r\nX-Principal: root\r\nAuthorization: Bearer {ann}");
        assert_eq!(
            gw.send(&head, 0),
            Ok(("private".into(), Some("ann".into()), "/private/x".into()))
        );
        assert_eq!(
            gw.send("GET /info/a HTTP/1.1", 0),
            Ok(("info".into(), None, "/info/a".into()))
        );
    }

    #[cfg(madsim)]
    #[test]
    fn mutant_matches_raw_path_lets_a_dot_segment_past_authentication() {
        // Goal: under the mutant `/info/../private` is routed (and authorized) as the public
        // `/info` while `/private` goes upstream (Envoy#6435).
        let mut gw = Gateway::with(Mutants::only(Mutant::MatchesRawPath));
        assert_eq!(
            gw.send("GET /info/../private HTTP/1.1", 0),
            Ok(("info".into(), None, "/private".into()))
        );
    }

    #[test]
    fn refusals_come_in_order_with_their_status() {
        // Goal: 404 without a route, 405 with a route for other methods, 401 on a bad token
        // even on a public route, 429 past the burst, and the limit refills.
        let mut gw = Gateway::new();
        assert_eq!(gw.send("GET /nothing HTTP/1.1", 0), Err(404));
        assert_eq!(gw.send("POST /info HTTP/1.1", 0), Err(405));
        assert_eq!(
            gw.send("GET /info HTTP/1.1\r\nAuthorization: Bearer nope", 0),
            Err(401)
        );
        assert!(gw.send("GET /info HTTP/1.1", 0).is_ok());
        assert!(gw.send("GET /info HTTP/1.1", 0).is_ok());
        assert_eq!(gw.send("GET /info HTTP/1.1", 0), Err(429));
        assert!(gw.send("GET /info HTTP/1.1", 1).is_ok());
    }
}

mod upstream {
    use super::*;
    use patterns::gateway::http::BackendRequest;
    use patterns::gateway::upstream::{
        attempt_timeout, may_retry, AttemptOutcome, NoAttempt, UpstreamConfig, Upstreams,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("i{i}")).collect()
    }

    fn upstreams(mutants: Mutants, n: usize) -> Upstreams {
        let config = UpstreamConfig {
            mutants,
            ..UpstreamConfig::default()
        };
        let mut up = Upstreams::new(config).unwrap();
        up.set_instances("svc", names(n), ms(0));
        up
    }

    #[test]
    fn round_robin_prefers_untried_and_skips_removed_instances() {
        // Goal: attempts rotate; a retry goes to an instance the request has not tried; an
        // instance discovery dropped gets nothing new.
        let mut up = upstreams(Mutants::none(), 3);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let attempt = up.start("svc", ms(0), &[], false).unwrap();
            seen.push(attempt.instance.clone());
            up.finish(attempt, AttemptOutcome::Success, ms(1));
        }
        assert_eq!(seen, names(3));
        let retry = up
            .start("svc", ms(2), &["i1".into(), "i2".into()], true)
            .unwrap();
        assert_eq!(retry.instance, "i3");
        up.finish(retry, AttemptOutcome::Success, ms(3));
        up.set_instances("svc", vec!["i2".into()], ms(4));
        for _ in 0..3 {
            let attempt = up.start("svc", ms(5), &[], false).unwrap();
            assert_eq!(attempt.instance, "i2");
            up.finish(attempt, AttemptOutcome::Success, ms(6));
        }
        up.set_instances("svc", vec![], ms(7));
        assert!(matches!(
            up.start("svc", ms(8), &[], false),
            Err(NoAttempt::NoInstance(_))
        ));
    }

    /// Fails `instance` five times in a row at `at`.
    fn fail(up: &mut Upstreams, instance: &str, at: Duration) {
        for _ in 0..5 {
            loop {
                let attempt = up.start("svc", at, &[], false).unwrap();
                if attempt.instance == instance {
                    up.finish(attempt, AttemptOutcome::Failure, at);
                    break;
                }
                up.finish(attempt, AttemptOutcome::Success, at);
            }
        }
    }

    #[test]
    fn ejection_respects_its_cap_and_ends() {
        // Goal: five failures in a row eject an instance for the base time; with ten
        // instances at most one (10 %) is out at once; under the mutant a second goes too.
        let mut up = upstreams(Mutants::none(), 10);
        fail(&mut up, "i1", ms(10));
        assert!(!up.is_eligible("i1", ms(10)));
        fail(&mut up, "i2", ms(20));
        assert!(up.is_eligible("i2", ms(20)), "the cap holds i2 in");
        assert!(up.is_eligible("i1", ms(1_010)), "the ejection ends");
        #[cfg(madsim)]
        {
            let mut broken = upstreams(Mutants::only(Mutant::EjectionOvershoots), 10);
            fail(&mut broken, "i1", ms(10));
            fail(&mut broken, "i2", ms(20));
            assert!(!broken.is_eligible("i1", ms(20)) && !broken.is_eligible("i2", ms(20)));
        }
    }

    #[test]
    fn an_ejected_instance_gets_no_new_attempt() {
        // Goal: while i1 is ejected the balancer skips it; under the mutant that forgets to
        // read the ejection list, i1 keeps its turn.
        let cases = [
            (Mutants::none(), true),
            #[cfg(madsim)]
            (Mutants::only(Mutant::IgnoresEjection), false),
        ];
        for (mutants, skipped) in cases {
            let mut up = upstreams(mutants, 3);
            fail(&mut up, "i1", ms(10));
            let mut seen = Vec::new();
            for _ in 0..6 {
                let attempt = up.start("svc", ms(20), &[], false).unwrap();
                seen.push(attempt.instance.clone());
                up.finish(attempt, AttemptOutcome::Success, ms(20));
            }
            assert_eq!(!seen.contains(&"i1".to_owned()), skipped, "{seen:?}");
        }
    }

    #[test]
    fn an_update_keeps_the_ejection_of_an_instance_still_listed() {
        // Goal: a discovery update that lists i1 again (as its re-registration after a
        // restart) leaves its ejection alone; the mutant rebuilds the instances and lets it
        // back in at once.
        let cases = [
            (Mutants::none(), false),
            #[cfg(madsim)]
            (Mutants::only(Mutant::UpdateRebuildsInstances), true),
        ];
        for (mutants, back) in cases {
            let mut up = upstreams(mutants, 3);
            fail(&mut up, "i1", ms(10));
            assert!(!up.is_eligible("i1", ms(10)));
            let listed = vec!["i1".to_owned(), "i2".to_owned(), "i3".to_owned()];
            up.update_instances("svc", listed, ms(20));
            assert_eq!(up.is_eligible("i1", ms(30)), back);
        }
    }

    #[test]
    fn an_instance_discovery_dropped_gets_nothing_even_when_healthy() {
        // Goal: a listing without i1 takes i1 out at once; the mutant keeps serving it.
        let cases = [
            (Mutants::none(), true),
            #[cfg(madsim)]
            (Mutants::only(Mutant::KeepsRemovedInstances), false),
        ];
        for (mutants, dropped) in cases {
            let mut up = upstreams(mutants, 2);
            up.set_instances("svc", vec!["i2".into()], ms(1));
            let mut seen = Vec::new();
            for _ in 0..4 {
                let attempt = up.start("svc", ms(2), &[], false).unwrap();
                seen.push(attempt.instance.clone());
                up.finish(attempt, AttemptOutcome::Success, ms(3));
            }
            assert_eq!(!seen.contains(&"i1".to_owned()), dropped, "{seen:?}");
        }
    }

    #[test]
    fn mutant_retries_past_route_timeout_gives_each_try_the_full_timeout() {
        // Goal: with 100 ms left of the route, an attempt waits 100 ms; the mutant waits the
        // full per-try timeout and answers after the route's deadline.
        let config = UpstreamConfig::default();
        assert_eq!(attempt_timeout(&config, ms(0), ms(900)), Some(ms(100)));
        #[cfg(madsim)]
        {
            let broken = UpstreamConfig {
                mutants: Mutants::only(Mutant::RetriesPastRouteTimeout),
                ..UpstreamConfig::default()
            };
            assert_eq!(attempt_timeout(&broken, ms(0), ms(900)), Some(ms(300)));
        }
    }

    fn request(method: &str, key: Option<&str>) -> BackendRequest {
        BackendRequest {
            request_id: 1,
            route: "r".into(),
            method: method.into(),
            path: "/".into(),
            query: None,
            principal: None,
            idempotency_key: key.map(str::to_owned),
            body: serde_json::Value::Null,
        }
    }

    #[test]
    fn only_safe_requests_are_retried() {
        // Goal: a POST that may have reached the backend is not retried unless it carries an
        // idempotency key; one refused before sending is; under the mutant every one is.
        let none = Mutants::none();
        assert!(may_retry(
            &request("GET", None),
            AttemptOutcome::Timeout,
            &none
        ));
        assert!(!may_retry(
            &request("POST", None),
            AttemptOutcome::Timeout,
            &none
        ));
        assert!(!may_retry(
            &request("POST", None),
            AttemptOutcome::Failure,
            &none
        ));
        assert!(may_retry(
            &request("POST", None),
            AttemptOutcome::NotSent,
            &none
        ));
        assert!(may_retry(
            &request("POST", Some("k")),
            AttemptOutcome::Timeout,
            &none
        ));
        assert!(!may_retry(
            &request("GET", None),
            AttemptOutcome::Success,
            &none
        ));
        #[cfg(madsim)]
        {
            let broken = Mutants::only(Mutant::RetriesNonIdempotent);
            assert!(may_retry(
                &request("POST", None),
                AttemptOutcome::Timeout,
                &broken
            ));
        }
    }

    #[test]
    fn retries_stay_within_the_budget_and_the_deadline() {
        // Goal: retries in flight stop at max(3, 20 % of attempts in flight); no attempt
        // starts after the route timeout, and none outlasts it.
        let mut up = upstreams(Mutants::none(), 3);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(up.start("svc", ms(0), &[], true).unwrap());
        }
        assert_eq!(
            up.start("svc", ms(0), &[], true).unwrap_err(),
            NoAttempt::BudgetSpent
        );
        assert!(up.start("svc", ms(0), &[], false).is_ok());
        assert_eq!(up.in_flight(), (4, 3));
        for attempt in held {
            up.finish(attempt, AttemptOutcome::Success, ms(1));
        }
        let config = UpstreamConfig::default();
        assert_eq!(attempt_timeout(&config, ms(0), ms(0)), Some(ms(300)));
        assert_eq!(attempt_timeout(&config, ms(0), ms(900)), Some(ms(100)));
        assert_eq!(attempt_timeout(&config, ms(0), ms(1_000)), None);
    }
}
