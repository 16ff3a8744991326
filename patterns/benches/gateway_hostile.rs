//! 100,000 hostile requests through the gateway's parser, normaliser and router
//! (`cargo bench -p patterns --bench gateway_hostile`; `GATEWAY_HOSTILE_CASES=N` for another
//! count). Fails on the first panic or bypass: an accepted target that does not normalise to
//! itself, keeps a dot segment, an escaped dot or slash, or a double slash, or a route that
//! depends on the order the table was built in. `cargo test` runs a few thousand of the same
//! shapes (`patterns/tests/gateway.rs`).

use patterns::gateway::http::{parse_request, Limits};
use patterns::gateway::mutant::Mutants;
use patterns::gateway::route::{normalize, Access, HostMatch, PathMatch, Route, RouteTable};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::time::Instant;

const PIECES: [&str; 22] = [
    "/", "//", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%", "%4", "%41", "%7e", "\\", "?",
    "#", ";", "a", "api", "v1", "private", "%00",
];

fn target(rng: &mut Xoshiro256PlusPlus) -> String {
    let mut target = if rng.gen_bool(0.9) {
        String::from("/")
    } else {
        String::new()
    };
    for _ in 0..rng.gen_range(0..16) {
        if rng.gen_bool(0.1) {
            target.push(char::from_u32(rng.gen_range(0..0x300)).unwrap_or('x'));
        } else {
            target.push_str(PIECES[rng.gen_range(0..PIECES.len())]);
        }
    }
    target
}

fn route(name: &str, host: HostMatch, path: PathMatch, methods: &[&str]) -> Route {
    Route {
        name: name.into(),
        host,
        path,
        methods: (!methods.is_empty()).then(|| methods.iter().map(|m| m.to_string()).collect()),
        service: name.into(),
        access: Access::Public,
    }
}

fn main() {
    let cases: u64 = std::env::var("GATEWAY_HOSTILE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let routes = vec![
        route("root", HostMatch::Any, PathMatch::Prefix("/".into()), &[]),
        route("api", HostMatch::Any, PathMatch::Prefix("/api".into()), &[]),
        route(
            "v1",
            HostMatch::Any,
            PathMatch::Prefix("/api/v1".into()),
            &["GET"],
        ),
        route(
            "exact",
            HostMatch::Any,
            PathMatch::Exact("/api/v1/a".into()),
            &[],
        ),
        route(
            "private",
            HostMatch::Any,
            PathMatch::Prefix("/private".into()),
            &[],
        ),
        route(
            "wild",
            HostMatch::Suffix(".example.com".into()),
            PathMatch::Prefix("/".into()),
            &[],
        ),
    ];
    let mut reversed = routes.clone();
    reversed.reverse();
    let forward = RouteTable::new(1, routes, Mutants::none()).expect("a valid table");
    let backward = RouteTable::new(1, reversed, Mutants::none()).expect("a valid table");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x6761_7465);
    #[allow(clippy::disallowed_methods)] // Reported, never judged: no simulated code runs here.
    let started = Instant::now();
    let mut accepted = 0u64;
    for case in 0..cases {
        let target = target(&mut rng);
        let host = ["x.org", "a.example.com", "gw"][rng.gen_range(0..3)];
        let method = ["GET", "POST", "G T", ""][rng.gen_range(0..4)];
        if let Ok(normal) = normalize(&target) {
            let path = &normal.path;
            let again = normalize(path).expect("a normalised path normalises").path;
            let lower = path.to_ascii_lowercase();
            let clean = again == *path
                && !path.contains("//")
                && !path.split('/').any(|s| s == "." || s == "..")
                && !lower.contains("%2e")
                && !lower.contains("%2f")
                && !lower.contains("%5c");
            assert!(clean, "case {case}: {target:?} normalised to {path:?}");
            let a = forward.route(host, method, path).map(|r| r.name.clone());
            let b = backward.route(host, method, path).map(|r| r.name.clone());
            assert_eq!(a, b, "case {case}: {target:?} routes by insertion order");
        }
        let bytes = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        if let Ok(request) = parse_request(bytes.as_bytes(), &Limits::default()) {
            accepted += 1;
            let again = normalize(&request.target.path).expect("accepted targets normalise");
            assert_eq!(again.path, request.target.path, "case {case}: {target:?}");
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{cases} hostile requests: no panic, no bypass ({accepted} accepted) in {:.2} s",
        elapsed.as_secs_f64()
    );
}
