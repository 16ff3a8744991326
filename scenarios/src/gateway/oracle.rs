//! The gateway scenario's own judgement, written apart from `patterns::gateway`: the routes
//! it expects (its own reading of the documented precedence over its own copy of the table),
//! the request targets it disguises (so that the normalised path is known by construction,
//! never computed by the code under test), token validity by a clock, and the rate bound.

use serde::{Deserialize, Serialize};

/// Who may call a route, as the oracle keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// A valid token is needed.
    Token,
}

/// Which hosts a route serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostRule {
    /// Exactly this host.
    Exact(&'static str),
    /// Any host.
    Any,
}

/// Which paths a route serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathRule {
    /// Exactly this path.
    Exact(&'static str),
    /// This path and below, by whole segments.
    Prefix(&'static str),
}

/// One route of the oracle's copy of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OracleRoute {
    /// Its name.
    pub name: &'static str,
    /// Hosts.
    pub host: HostRule,
    /// Paths.
    pub path: PathRule,
    /// Methods (empty: any).
    pub methods: &'static [&'static str],
    /// The service.
    pub service: &'static str,
    /// Who may call it.
    pub access: Access,
}

const fn route(
    name: &'static str,
    host: HostRule,
    path: PathRule,
    methods: &'static [&'static str],
    service: &'static str,
    access: Access,
) -> OracleRoute {
    OracleRoute {
        name,
        host,
        path,
        methods,
        service,
        access,
    }
}

/// Version 1 of the table, in the order it is given to the gateway: general routes first, so
/// that a gateway that decides by insertion order routes differently.
pub const TABLE_V1: &[OracleRoute] = &[
    route(
        "api",
        HostRule::Any,
        PathRule::Prefix("/api"),
        &[],
        "orders",
        Access::Token,
    ),
    route(
        "catalog-read",
        HostRule::Any,
        PathRule::Prefix("/api/catalog"),
        &["GET"],
        "catalog",
        Access::Public,
    ),
    route(
        "orders-create",
        HostRule::Any,
        PathRule::Exact("/api/orders"),
        &["POST"],
        "orders",
        Access::Token,
    ),
    route(
        "public",
        HostRule::Any,
        PathRule::Prefix("/public"),
        &[],
        "catalog",
        Access::Public,
    ),
    route(
        "catalog-site",
        HostRule::Exact("catalog.example"),
        PathRule::Prefix("/"),
        &["GET"],
        "catalog",
        Access::Public,
    ),
    route(
        "admin",
        HostRule::Exact("admin.example"),
        PathRule::Prefix("/api"),
        &["GET", "DELETE"],
        "orders",
        Access::Token,
    ),
];

/// Version 2, loaded at run time: `/public` now needs a token, and reports have a route of
/// their own.
pub const TABLE_V2: &[OracleRoute] = &[
    route(
        "api",
        HostRule::Any,
        PathRule::Prefix("/api"),
        &[],
        "orders",
        Access::Token,
    ),
    route(
        "catalog-read",
        HostRule::Any,
        PathRule::Prefix("/api/catalog"),
        &["GET"],
        "catalog",
        Access::Public,
    ),
    route(
        "orders-create",
        HostRule::Any,
        PathRule::Exact("/api/orders"),
        &["POST"],
        "orders",
        Access::Token,
    ),
    route(
        "public",
        HostRule::Any,
        PathRule::Prefix("/public"),
        &[],
        "catalog",
        Access::Token,
    ),
    route(
        "catalog-site",
        HostRule::Exact("catalog.example"),
        PathRule::Prefix("/"),
        &["GET"],
        "catalog",
        Access::Public,
    ),
    route(
        "admin",
        HostRule::Exact("admin.example"),
        PathRule::Prefix("/api"),
        &["GET", "DELETE"],
        "orders",
        Access::Token,
    ),
    route(
        "reports",
        HostRule::Any,
        PathRule::Prefix("/api/reports"),
        &[],
        "catalog",
        Access::Token,
    ),
];

/// The table of a version (1 or 2).
pub fn table(version: u64) -> &'static [OracleRoute] {
    if version >= 2 {
        TABLE_V2
    } else {
        TABLE_V1
    }
}

/// The methods the gateway considers when it tells 405 from 404.
const KNOWN_METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// What admission should do with a request whose normalised path is `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routed {
    /// This route.
    Route(OracleRoute),
    /// No route for the path (404).
    NotFound,
    /// A route for the path, not for the method (405).
    MethodNotAllowed,
}

/// The route of `(host, method, path)` in `table`, by the documented precedence: only routes
/// of the most specific host class that matches the host count (an exact host over any
/// host); among them an exact path over a prefix, a longer prefix over a shorter one; a
/// route that lists the method over one that takes any.
pub fn expected_route(table: &[OracleRoute], host: &str, method: &str, path: &str) -> Routed {
    let host = host.split(':').next().unwrap_or("").to_ascii_lowercase();
    let host_class = |r: &OracleRoute| match r.host {
        HostRule::Exact(exact) if exact == host => Some(0),
        HostRule::Exact(_) => None,
        HostRule::Any => Some(1),
    };
    let Some(best_class) = table.iter().filter_map(host_class).min() else {
        return Routed::NotFound;
    };
    let in_class: Vec<&OracleRoute> = table
        .iter()
        .filter(|r| host_class(r) == Some(best_class))
        .collect();
    let path_fits = |r: &OracleRoute| match r.path {
        PathRule::Exact(exact) => exact == path,
        PathRule::Prefix("/") => true,
        PathRule::Prefix(prefix) => {
            path == prefix || (path.starts_with(prefix) && path[prefix.len()..].starts_with('/'))
        }
    };
    let method_fits = |r: &OracleRoute, m: &str| r.methods.is_empty() || r.methods.contains(&m);
    // Lower is better: exact path, then longer prefix, then listed methods.
    let score = |r: &OracleRoute| {
        let (kind, len) = match r.path {
            PathRule::Exact(p) => (0, p.len()),
            PathRule::Prefix(p) => (1, p.len()),
        };
        (kind, usize::MAX - len, usize::from(r.methods.is_empty()))
    };
    let best = in_class
        .iter()
        .filter(|r| path_fits(r) && method_fits(r, method))
        .min_by_key(|r| score(r));
    match best {
        Some(route) => Routed::Route(**route),
        None if in_class
            .iter()
            .any(|r| path_fits(r) && KNOWN_METHODS.iter().any(|m| method_fits(r, m))) =>
        {
            Routed::MethodNotAllowed
        }
        None => Routed::NotFound,
    }
}

/// A way to write a path that means the same after normalisation, or one that the gateway
/// must refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Disguise {
    /// A `.` segment before segment `at`.
    Dot {
        /// Where.
        at: u8,
    },
    /// An empty segment (`//`) before segment `at`.
    DoubleSlash {
        /// Where.
        at: u8,
    },
    /// `<name>/..` before segment `at` (`public` makes a request that looks public).
    Detour {
        /// Where.
        at: u8,
        /// The segment that `..` removes again: `public` or `zz`.
        public: bool,
    },
    /// `zz/%2e%2e` before segment `at`.
    EncodedDetour {
        /// Where.
        at: u8,
    },
    /// The first character of segment `at` written as a percent-escape.
    Escape {
        /// Where.
        at: u8,
        /// Upper-case hex digits.
        upper: bool,
    },
    /// A leading `..` that climbs above the root: refused (400).
    Climb,
    /// The slash before segment `at` written `%2f`: refused (400).
    EncodedSlash {
        /// Where.
        at: u8,
    },
}

/// The request target for the canonical (normalised) `path` written with `disguises`, and
/// whether the gateway must refuse it (400).
pub fn disguise(path: &str, disguises: &[Disguise]) -> (String, bool) {
    // Each segment is kept with the separator written before it.
    let mut segments: Vec<(String, String)> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| ("/".to_string(), s.to_string()))
        .collect();
    let mut refused = false;
    for d in disguises {
        let len = segments.len();
        if len == 0 {
            continue;
        }
        let slot = |at: u8| usize::from(at) % len;
        match *d {
            Disguise::Dot { at } => segments.insert(slot(at), ("/".into(), ".".into())),
            Disguise::DoubleSlash { at } => segments.insert(slot(at), ("/".into(), String::new())),
            Disguise::Detour { at, public } => {
                let i = slot(at);
                let name = if public { "public" } else { "zz" };
                segments.insert(i, ("/".into(), "..".into()));
                segments.insert(i, ("/".into(), name.into()));
            }
            Disguise::EncodedDetour { at } => {
                let i = slot(at);
                segments.insert(i, ("/".into(), "%2e%2e".into()));
                segments.insert(i, ("/".into(), "zz".into()));
            }
            Disguise::Escape { at, upper } => {
                let segment = &mut segments[slot(at)].1;
                let Some(first) = segment.chars().next() else {
                    continue;
                };
                if !first.is_ascii_alphanumeric() {
                    continue;
                }
                let escaped = if upper {
                    format!("%{:02X}", first as u32)
                } else {
                    format!("%{:02x}", first as u32)
                };
                segment.replace_range(..1, &escaped);
            }
            Disguise::Climb => {
                segments.insert(0, ("/".into(), "..".into()));
                refused = true;
            }
            Disguise::EncodedSlash { at } => {
                let i = slot(at);
                if i > 0 {
                    segments[i].0 = "%2f".into();
                    refused = true;
                }
            }
        }
    }
    if segments.is_empty() {
        return ("/".into(), refused);
    }
    let raw = segments
        .iter()
        .map(|(separator, segment)| format!("{separator}{segment}"))
        .collect();
    (raw, refused)
}

/// A credential as the oracle knows it (it made every token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credential {
    /// No `Authorization` header.
    None,
    /// A token signed by the issuer with a key the gateways know.
    Genuine {
        /// Who.
        principal: String,
        /// The key.
        key_id: String,
        /// Not valid before (wall s).
        not_before_s: u64,
        /// Not valid after (wall s).
        expires_s: u64,
    },
    /// A token that no gateway may accept at any time (bad signature, unknown key, tampered,
    /// garbage).
    Forged,
}

/// Whether `credential` is valid at wall time `wall_s` (whole seconds, as the gateway reads
/// its clock) with `skew_s` of allowance, when the retired key `retired` is accepted until
/// `retired_until_s`.
pub fn valid_at(
    credential: &Credential,
    wall_s: u64,
    skew_s: u64,
    retired: &str,
    retired_until_s: u64,
) -> bool {
    match credential {
        Credential::Genuine {
            key_id,
            not_before_s,
            expires_s,
            ..
        } => {
            (key_id != retired || wall_s <= retired_until_s)
                && wall_s + skew_s >= *not_before_s
                && wall_s <= expires_s + skew_s
        }
        Credential::None | Credential::Forged => false,
    }
}

/// Key settings of the gateways, as the oracle knows them.
#[derive(Clone, Copy, Debug)]
pub struct AuthRules<'a> {
    /// Clock-skew allowance (s).
    pub skew_s: u64,
    /// The retired key's id.
    pub retired: &'a str,
    /// The retired key is accepted until this wall time (s).
    pub retired_until_s: u64,
}

/// How `auth-gate` judges one request that reached a backend: what breaks the gate, if
/// anything. `principal` is the one the gateway forwarded; `takes` are the gateway's
/// receptions of the request, each as (excused, the gateway's wall clock then in s), where
/// an excused one is taken while the gateway's clock was in trouble; `public` whether the
/// request's route is public under a table version in use.
pub fn auth_breach(
    principal: Option<&str>,
    credential: &Credential,
    takes: &[(bool, u64)],
    public: bool,
    rules: AuthRules,
) -> Option<String> {
    match principal {
        Some(principal) => {
            let genuine =
                matches!(credential, Credential::Genuine { principal: p, .. } if p == principal);
            let valid = takes.iter().any(|&(excused, wall_s)| {
                excused
                    || valid_at(
                        credential,
                        wall_s,
                        rules.skew_s,
                        rules.retired,
                        rules.retired_until_s,
                    )
            });
            (!genuine || !valid).then(|| {
                format!(
                    "forwarded as {principal} with credential {credential:?}, taken at gateway wall times {:?} s (skew {} s)",
                    takes.iter().map(|t| t.1).collect::<Vec<_>>(),
                    rules.skew_s
                )
            })
        }
        None => (*credential != Credential::None || !public).then(|| {
            format!(
                "forwarded without a principal (route public: {public}), credential {credential:?}"
            )
        }),
    }
}

/// The first window that breaks the rate bound, if any: admissions of one key at one
/// gateway (its monotonic clock, ns, any order) over any interval `[a, b]` number at most
/// `burst + floor(rate x (b - a))`.
pub fn rate_excess(admitted_ns: &[u64], rate_per_s: u64, burst: u64) -> Option<String> {
    let mut times = admitted_ns.to_vec();
    times.sort_unstable();
    for (i, &start) in times.iter().enumerate() {
        for (j, &end) in times.iter().enumerate().skip(i) {
            let count = (j - i + 1) as u64;
            let allowed = burst
                + u64::try_from(u128::from(end - start) * u128::from(rate_per_s) / 1_000_000_000)
                    .unwrap_or(u64::MAX);
            if count > allowed {
                return Some(format!(
                    "{count} admitted within {} ms (at most {allowed})",
                    (end - start) / 1_000_000
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_name(table: &[OracleRoute], host: &str, method: &str, path: &str) -> String {
        match expected_route(table, host, method, path) {
            Routed::Route(r) => r.name.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn the_oracle_routes_by_precedence_not_by_order() {
        let t = TABLE_V1;
        assert_eq!(
            route_name(t, "gw.example", "GET", "/api/catalog/items"),
            "catalog-read"
        );
        assert_eq!(
            route_name(t, "gw.example", "POST", "/api/catalog/items"),
            "api"
        );
        assert_eq!(
            route_name(t, "gw.example", "POST", "/api/orders"),
            "orders-create"
        );
        assert_eq!(route_name(t, "gw.example", "GET", "/api/orders"), "api");
        assert_eq!(route_name(t, "gw.example", "GET", "/apix"), "NotFound");
        assert_eq!(
            route_name(t, "catalog.example", "GET", "/api/orders"),
            "catalog-site"
        );
        assert_eq!(
            route_name(t, "catalog.example", "POST", "/x"),
            "MethodNotAllowed"
        );
        assert_eq!(
            route_name(t, "Admin.Example:443", "GET", "/public"),
            "NotFound"
        );
        assert_eq!(
            route_name(t, "admin.example", "PUT", "/api/x"),
            "MethodNotAllowed"
        );
        assert_eq!(
            route_name(TABLE_V2, "gw.example", "GET", "/api/reports/q"),
            "reports"
        );
        assert_eq!(route_name(t, "gw.example", "GET", "/api/reports/q"), "api");
    }

    #[test]
    fn disguises_keep_the_meaning_or_are_refused() {
        let d = |ds: &[Disguise]| disguise("/api/orders/7", ds);
        assert_eq!(d(&[]), ("/api/orders/7".into(), false));
        assert_eq!(
            d(&[Disguise::Dot { at: 1 }]),
            ("/api/./orders/7".into(), false)
        );
        assert_eq!(
            d(&[Disguise::Detour {
                at: 0,
                public: true
            }]),
            ("/public/../api/orders/7".into(), false)
        );
        assert_eq!(
            d(&[Disguise::EncodedDetour { at: 2 }]),
            ("/api/orders/zz/%2e%2e/7".into(), false)
        );
        assert_eq!(
            d(&[Disguise::Escape {
                at: 1,
                upper: false
            }]),
            ("/api/%6frders/7".into(), false)
        );
        assert_eq!(
            d(&[Disguise::DoubleSlash { at: 4 }]),
            ("/api//orders/7".into(), false)
        );
        assert!(d(&[Disguise::Climb]).1);
        assert_eq!(
            d(&[Disguise::EncodedSlash { at: 1 }]),
            ("/api%2forders/7".into(), true)
        );
        assert_eq!(
            disguise("/", &[Disguise::Dot { at: 0 }]),
            ("/".into(), false)
        );
    }

    #[test]
    fn tokens_are_judged_by_the_clock_given() {
        let token = Credential::Genuine {
            principal: "ann".into(),
            key_id: "k1".into(),
            not_before_s: 100,
            expires_s: 104,
        };
        assert!(valid_at(&token, 99, 1, "k1", 200));
        assert!(!valid_at(&token, 98, 1, "k1", 200));
        assert!(valid_at(&token, 105, 1, "k1", 200));
        assert!(!valid_at(&token, 106, 1, "k1", 200));
        assert!(
            !valid_at(&token, 102, 1, "k1", 101),
            "the retired key's grace ended"
        );
        assert!(!valid_at(&Credential::Forged, 102, 1, "k1", 200));
    }

    #[test]
    fn the_rate_bound_rejects_one_too_many() {
        let ms = 1_000_000;
        // Burst 4, 10 per second: four at once, then one per 100 ms.
        let fine = [0, 0, 0, 0, 100 * ms, 200 * ms, 300 * ms];
        assert_eq!(rate_excess(&fine, 10, 4), None);
        let over = [0, 0, 0, 0, 99 * ms];
        assert!(rate_excess(&over, 10, 4).is_some());
        let over_later = [0, 0, 0, 0, 100 * ms, 150 * ms];
        assert!(rate_excess(&over_later, 10, 4).is_some());
    }

    fn rules() -> AuthRules<'static> {
        AuthRules {
            skew_s: 1,
            retired: "k1",
            retired_until_s: 100,
        }
    }

    fn token(principal: &str, key_id: &str, not_before_s: u64, expires_s: u64) -> Credential {
        Credential::Genuine {
            principal: principal.into(),
            key_id: key_id.into(),
            not_before_s,
            expires_s,
        }
    }

    #[test]
    fn auth_breach_passes_what_the_gate_allows() {
        let ann = token("ann", "k2", 10, 20);
        // Valid, at the skew's edges, or taken in clock trouble.
        for wall_s in [9, 10, 20, 21] {
            assert_eq!(
                auth_breach(Some("ann"), &ann, &[(false, wall_s)], false, rules()),
                None
            );
        }
        assert_eq!(
            auth_breach(Some("ann"), &ann, &[(true, 50)], false, rules()),
            None
        );
        // One valid take of several is enough (a retried delivery).
        assert_eq!(
            auth_breach(
                Some("ann"),
                &ann,
                &[(false, 50), (false, 15)],
                false,
                rules()
            ),
            None
        );
        // Anonymous on a public route.
        assert_eq!(
            auth_breach(None, &Credential::None, &[(false, 5)], true, rules()),
            None
        );
        // The retired key within its grace.
        assert_eq!(
            auth_breach(
                Some("ann"),
                &token("ann", "k1", 0, 500),
                &[(false, 100)],
                false,
                rules()
            ),
            None
        );
    }

    #[test]
    fn auth_breach_rejects_each_way_through_the_gate() {
        let ann = token("ann", "k2", 10, 20);
        let breaches = [
            // Expired, not yet valid (beyond the skew).
            auth_breach(Some("ann"), &ann, &[(false, 22)], false, rules()),
            auth_breach(Some("ann"), &ann, &[(false, 8)], false, rules()),
            // Another principal's token, a forged one, none.
            auth_breach(Some("ben"), &ann, &[(false, 15)], false, rules()),
            auth_breach(
                Some("ann"),
                &Credential::Forged,
                &[(false, 15)],
                false,
                rules(),
            ),
            auth_breach(
                Some("ann"),
                &Credential::None,
                &[(true, 15)],
                false,
                rules(),
            ),
            // The retired key after its grace.
            auth_breach(
                Some("ann"),
                &token("ann", "k1", 0, 500),
                &[(false, 101)],
                false,
                rules(),
            ),
            // No principal: a credential was dropped, or a protected route was served.
            auth_breach(None, &ann, &[(false, 15)], true, rules()),
            auth_breach(None, &Credential::Forged, &[(false, 15)], true, rules()),
            auth_breach(None, &Credential::None, &[(false, 15)], false, rules()),
        ];
        for (i, breach) in breaches.iter().enumerate() {
            assert!(breach.is_some(), "hand-made breach {i} passed the gate");
        }
    }
}
