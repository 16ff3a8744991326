//! API Gateway: the single entry point in front of backend services: sans-IO cores and the
//! node that pumps them; simulation-tested by the `gateway` scenario (`scenarios/`).
//!
//! * [`route`]: path normalisation applied once, and a versioned route table with a
//!   documented precedence.
//! * [`admit`]: the admission pipeline: parse, route, authenticate, limit.
//! * [`auth`]: HMAC-SHA256 signed tokens with not-before, expiry, skew, key rotation,
//!   revocation and a verdict cache that never outlives a token.
//! * [`driver`]: the gateway as a sim-core node (discovery followed, upstream attempts).
//! * [`http`]: external HTTP/1.1 requests parsed with `httparse` into typed backend
//!   messages (smuggling shapes, oversize and non-JSON bodies refused; identity headers
//!   dropped), and answers rendered back.
//! * [`limit`]: per-key GCRA rate limiting on the monotonic clock, with burst.
//! * [`upstream`]: balancing over discovered instances, a breaker per instance, outlier
//!   ejection with a documented cap, retries only when safe and within a budget, timeouts.
//! * [`mutant`]: the deliberately re-introduced bugs, off by default.

pub mod admit;
pub mod auth;
pub mod driver;
pub mod http;
pub mod limit;
pub mod mutant;
pub mod route;
pub mod upstream;
