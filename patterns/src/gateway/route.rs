//! Routing: path normalisation and a versioned route table with a documented precedence.
//!
//! # Normalisation (applied once)
//!
//! [`normalize`] turns a request target into the one path the gateway matches, authorizes,
//! rate-limits *and* sends upstream, so that no two of them can disagree (Envoy's
//! CVE-2019-9901: `/info/../private` passed the authorization of `/info` and reached
//! `/private`). In order:
//!
//! 1. The target must be in origin form (it starts with `/`); a `#` is refused; the query
//!    (from the first `?`) is kept apart, unchanged.
//! 2. Percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded (`%2e`
//!    becomes `.`); escapes of `/` and `\` (`%2f`, `%5c`) are refused (they would split or
//!    join segments after routing); other escapes are kept, with upper-case hex; a malformed
//!    escape, a raw `\`, a control character or a non-ASCII byte is refused.
//! 3. Runs of `/` are merged into one.
//! 4. `.` segments are removed and `..` removes the segment before it (RFC 3986,
//!    `remove_dot_segments`); a `..` that would climb above the root is refused.
//!
//! The result is idempotent: normalising a normalised path changes nothing.
//!
//! # Precedence
//!
//! A route names a host pattern, a path pattern and optionally the methods it accepts.
//! [`RouteTable::route`] picks, in order:
//!
//! 1. the most specific host class that matches the request's host: an exact host, then
//!    the longest matching wildcard suffix (`*.example.com`), then any host. Routes of less
//!    specific host classes are not considered at all (as a virtual host in Envoy);
//! 2. among them, an exact path before a prefix, and a longer prefix before a shorter one
//!    (prefixes match whole segments: `/api` matches `/api` and `/api/x`, not `/apix`);
//! 3. a route that lists the method before one that accepts any method.
//!
//! Two routes that no rule separates are refused when the table is built
//! ([`TableError::Conflict`]), so the result never depends on the order routes were added in.

use crate::gateway::mutant::{Mutant, Mutants};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BTreeSet;

/// Why a request target is refused (answered 400, never routed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The target does not start with `/`.
    #[error("the target is not in origin form")]
    NotOriginForm,
    /// A `#` in the target.
    #[error("a fragment in the target")]
    Fragment,
    /// `%2f` or `%5c`.
    #[error("an escaped slash or backslash")]
    EscapedSlash,
    /// A `%` not followed by two hex digits.
    #[error("a malformed percent-escape")]
    BadEscape,
    /// A raw backslash, control character or non-ASCII byte.
    #[error("a forbidden character in the path")]
    ForbiddenChar,
    /// A `..` above the root.
    #[error("the path climbs above the root")]
    AboveRoot,
}

/// A normalised request target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The normalised path: matched, authorized, limited and sent upstream.
    pub path: String,
    /// The query, without its `?` (as received).
    pub query: Option<String>,
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Normalises a request target (see the [module docs](self)).
pub fn normalize(target: &str) -> Result<Target, PathError> {
    if target.contains('#') {
        return Err(PathError::Fragment);
    }
    let (raw, query) = match target.split_once('?') {
        Some((raw, query)) => (raw, Some(query.to_owned())),
        None => (target, None),
    };
    if !raw.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    // Step 2: escapes.
    let bytes = raw.as_bytes();
    let mut decoded = String::with_capacity(raw.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            let (Some(high), Some(low)) = (
                bytes.get(index + 1).copied().and_then(hex),
                bytes.get(index + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadEscape);
            };
            let value = high * 16 + low;
            if value == b'/' || value == b'\\' {
                return Err(PathError::EscapedSlash);
            }
            if is_unreserved(value) {
                decoded.push(value as char);
            } else {
                decoded.push('%');
                decoded.push_str(&format!("{value:02X}"));
            }
            index += 3;
            continue;
        }
        if byte == b'\\' || byte.is_ascii_control() || !byte.is_ascii() {
            return Err(PathError::ForbiddenChar);
        }
        decoded.push(byte as char);
        index += 1;
    }
    // Steps 3 and 4: segments.
    let mut segments: Vec<&str> = Vec::new();
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            segment => segments.push(segment),
        }
    }
    let mut path = String::from("/");
    path.push_str(&segments.join("/"));
    if trailing && !segments.is_empty() {
        path.push('/');
    }
    Ok(Target { path, query })
}

/// Which hosts a route serves.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HostMatch {
    /// Exactly this host (lower case, no port).
    Exact(String),
    /// Any host that ends with this suffix, which starts with a dot (`.example.com` for
    /// `*.example.com`).
    Suffix(String),
    /// Any host.
    Any,
}

/// Which paths a route serves (matched against the normalised path).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PathMatch {
    /// Exactly this path.
    Exact(String),
    /// This path and every path below it, by whole segments (`/api` matches `/api` and
    /// `/api/x`, not `/apix`; `/` matches everything).
    Prefix(String),
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Access {
    /// Anyone.
    Public,
    /// Callers with a valid token.
    Authenticated,
}

/// One route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Its name (unique in a table).
    pub name: String,
    /// The hosts.
    pub host: HostMatch,
    /// The paths.
    pub path: PathMatch,
    /// The methods it accepts (`None`: any).
    pub methods: Option<BTreeSet<String>>,
    /// The backend service it sends to.
    pub service: String,
    /// Who may call it.
    pub access: Access,
}

/// Why a route table is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// Two routes that the precedence does not separate.
    #[error("routes {0} and {1} match the same requests with the same precedence")]
    Conflict(String, String),
    /// Two routes with one name.
    #[error("two routes are named {0}")]
    DuplicateName(String),
    /// A pattern that cannot match a normalised path or host.
    #[error("route {name}: {reason}")]
    BadPattern {
        /// The route.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// A versioned route table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTable {
    version: u64,
    /// In the order they were given (the precedence does not depend on it).
    routes: Vec<Route>,
    mutants: Mutants,
}

/// The precedence key of a route for a host (lower sorts first): host class, then path
/// kind and length, then method specificity.
fn rank(route: &Route) -> (u8, Reverse<usize>, u8, Reverse<usize>, u8) {
    let (host_class, host_len) = match &route.host {
        HostMatch::Exact(host) => (0, host.len()),
        HostMatch::Suffix(suffix) => (1, suffix.len()),
        HostMatch::Any => (2, 0),
    };
    let (path_kind, path_len) = match &route.path {
        PathMatch::Exact(path) => (0, path.len()),
        PathMatch::Prefix(prefix) => (1, prefix.len()),
    };
    let methods = u8::from(route.methods.is_none());
    (
        host_class,
        Reverse(host_len),
        path_kind,
        Reverse(path_len),
        methods,
    )
}

impl RouteTable {
    /// Builds version `version` of the table, refusing conflicts and bad patterns.
    pub fn new(version: u64, routes: Vec<Route>, mutants: Mutants) -> Result<Self, TableError> {
        let mut names = BTreeSet::new();
        for route in &routes {
            if !names.insert(route.name.clone()) {
                return Err(TableError::DuplicateName(route.name.clone()));
            }
            let bad = |reason: &str| TableError::BadPattern {
                name: route.name.clone(),
                reason: reason.into(),
            };
            let path = match &route.path {
                PathMatch::Exact(path) | PathMatch::Prefix(path) => path,
            };
            if normalize(path).map(|t| t.path).as_deref() != Ok(path.as_str())
                || (matches!(route.path, PathMatch::Prefix(_))
                    && path.len() > 1
                    && path.ends_with('/'))
            {
                return Err(bad(
                    "the path pattern is not a normalised path (a prefix has no trailing slash)",
                ));
            }
            match &route.host {
                HostMatch::Exact(host) if host.is_empty() || *host != host.to_ascii_lowercase() => {
                    return Err(bad("an exact host is lower case and not empty"));
                }
                HostMatch::Suffix(suffix)
                    if !suffix.starts_with('.') || *suffix != suffix.to_ascii_lowercase() =>
                {
                    return Err(bad("a host suffix starts with a dot and is lower case"));
                }
                _ => {}
            }
        }
        for (index, a) in routes.iter().enumerate() {
            for b in &routes[index + 1..] {
                let overlap_methods = match (&a.methods, &b.methods) {
                    (Some(x), Some(y)) => !x.is_disjoint(y),
                    (None, None) => true,
                    _ => false,
                };
                if a.host == b.host && a.path == b.path && overlap_methods {
                    return Err(TableError::Conflict(a.name.clone(), b.name.clone()));
                }
            }
        }
        Ok(RouteTable {
            version,
            routes,
            mutants,
        })
    }

    /// The table's version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The mutants the table was built with.
    pub fn mutants(&self) -> &Mutants {
        &self.mutants
    }

    /// The routes, in the order given.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for a request: `host` (any case, a port is ignored), `method`, and a path
    /// *already normalised* with [`normalize`]. `None`: no route (404).
    pub fn route(&self, host: &str, method: &str, path: &str) -> Option<&Route> {
        let host = host
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
            .to_ascii_lowercase();
        let host_matches = |route: &Route| match &route.host {
            HostMatch::Exact(exact) => *exact == host,
            HostMatch::Suffix(suffix) => {
                host.ends_with(suffix.as_str()) && host.len() > suffix.len()
            }
            HostMatch::Any => true,
        };
        let path_matches = |route: &Route| match &route.path {
            PathMatch::Exact(exact) => exact == path,
            PathMatch::Prefix(prefix) => {
                prefix == "/"
                    || path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        };
        let method_matches = |route: &Route| {
            route
                .methods
                .as_ref()
                .is_none_or(|methods| methods.contains(method))
        };
        if self.mutants.contains(Mutant::RouteByInsertionOrder) {
            // The bug: the first route added that matches wins.
            return self
                .routes
                .iter()
                .find(|r| host_matches(r) && path_matches(r) && method_matches(r));
        }
        // The most specific host class that any route matches, then the best route in it.
        let host_key = |route: &Route| {
            let (class, len, ..) = rank(route);
            (class, len)
        };
        let best_host = self
            .routes
            .iter()
            .filter(|r| host_matches(r))
            .map(host_key)
            .min()?;
        self.routes
            .iter()
            .filter(|r| host_matches(r) && host_key(r) == best_host)
            .filter(|r| path_matches(r) && method_matches(r))
            .min_by_key(|r| rank(r))
    }
}
