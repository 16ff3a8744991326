//! Admission: the sans-IO pipeline every external request goes through before any backend
//! sees it, in this order (each step can only refuse):
//!
//! 1. parse and normalise ([`crate::gateway::http::parse_request`]): 4xx/5xx on bad input;
//! 2. route ([`RouteTable::route`]) on the normalised path: 404 when nothing matches, 405
//!    when a route matches the path but not the method;
//! 3. authenticate ([`Verifier::verify`]) on routes that need it, by the gateway's own wall
//!    clock: 401 without a valid token; on public routes a token, if sent, must be valid too;
//! 4. rate limit ([`Limiter::check`]) per principal, or per client address when there is
//!    none, on the monotonic clock: 429 with `retry_after_ms`; 503 when the key table is
//!    full (fail closed).
//!
//! What comes out is the typed [`BackendRequest`] to send upstream: its path is the path that
//! was routed, authorized and limited.

use crate::gateway::auth::Verifier;
use crate::gateway::http::{parse_request, BackendRequest, Limits, Refusal};
use crate::gateway::limit::{Decision, Limiter};
use crate::gateway::mutant::Mutant;
use crate::gateway::route::{Access, RouteTable};
use std::time::Duration;

/// An admitted request: the route's service and the message for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Admitted {
    /// The backend service.
    pub service: String,
    /// The route table's version that routed it.
    pub table_version: u64,
    /// The message to send.
    pub request: BackendRequest,
}

/// The clocks an admission reads, passed in (the core reads none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clocks {
    /// The node's monotonic clock (rate limits).
    pub monotonic: Duration,
    /// The node's wall clock since the epoch (token validity counts its whole seconds).
    pub wall: Duration,
}

/// Admits or refuses one external request from `client` (its address, the rate-limit key
/// of callers without a principal), numbered `request_id`.
#[allow(clippy::too_many_arguments)]
pub fn admit(
    bytes: &[u8],
    client: &str,
    request_id: u64,
    clocks: Clocks,
    limits: &Limits,
    table: &RouteTable,
    verifier: &mut Verifier,
    limiter: &mut Limiter,
) -> Result<Admitted, Refusal> {
    let refuse = |status: u16, reason: String| Refusal { status, reason };
    let external = parse_request(bytes, limits)?;
    let path = if table.mutants().contains(Mutant::MatchesRawPath) {
        // The bug: routing and authorization see the path as sent; the normalised one goes
        // upstream.
        &external.raw_path
    } else {
        &external.target.path
    };
    let Some(route) = table.route(&external.host, &external.method, path) else {
        // A route for the path with other methods is a 405, not a 404.
        let other_method = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .any(|method| table.route(&external.host, method, path).is_some());
        return Err(if other_method {
            refuse(405, format!("{} is not allowed on {path}", external.method))
        } else {
            refuse(404, format!("no route for {path}"))
        });
    };
    let principal = match (&external.token, route.access) {
        (Some(token), _) => Some(
            verifier
                .verify_at(token, clocks.wall, clocks.monotonic)
                .map_err(|error| refuse(401, error.to_string()))?
                .principal,
        ),
        (None, Access::Authenticated) => return Err(refuse(401, "a token is required".into())),
        (None, Access::Public) => None,
    };
    let key = match &principal {
        Some(principal) => format!("principal:{principal}"),
        None => format!("client:{client}"),
    };
    match limiter.check(&key, clocks.monotonic) {
        Decision::Admit => {}
        Decision::Deny { retry_after } => {
            return Err(refuse(
                429,
                format!("over the limit; retry after {} ms", retry_after.as_millis()),
            ))
        }
        Decision::TableFull => {
            return Err(refuse(503, "the rate limiter is full".into()));
        }
    }
    Ok(Admitted {
        service: route.service.clone(),
        table_version: table.version(),
        request: BackendRequest {
            request_id,
            route: route.name.clone(),
            method: external.method,
            path: external.target.path,
            query: external.target.query,
            principal,
            idempotency_key: external.idempotency_key,
            body: external.body,
        },
    })
}
