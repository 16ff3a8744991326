//! Authentication: signed bearer tokens (HMAC-SHA256 with the `hmac` and `sha2` crates),
//! with not-before and expiry, a clock-skew allowance, key rotation and revocation, and a
//! bounded cache of verdicts that never outlives a token.
//!
//! # Tokens
//!
//! `v1.<principal>.<key id>.<not before>.<expires>.<signature>`: the principal and the key id
//! are 1 to 64 characters of `A-Z a-z 0-9 - _`; the times are whole seconds of wall-clock
//! time since the Unix epoch; the signature is the lower-case hex HMAC-SHA256, under the
//! key named, of everything before the last dot. [`sign`] makes one.
//!
//! # Verification, by the gateway's own clock
//!
//! A token is accepted at wall time `now` when its signature verifies under a key of the
//! [`KeyRing`] (the current keys, or a retired one until its grace ends), `not_before -
//! skew <= now <= expires + skew`, and its principal is not revoked. Comparison of
//! signatures is constant-time. A verdict may be cached ([`Verifier::verify`]); a cached
//! verdict is used only while the token itself is still valid, and revocation clears the
//! cache.

use crate::gateway::mutant::{Mutant, Mutants};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

/// Why a token is refused (answered 401; nothing reaches a backend).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, or not of the documented shape.
    #[error("malformed token")]
    Malformed,
    /// The key named is not in the key ring (or its grace ended).
    #[error("unknown key {0}")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Before its not-before (beyond the skew allowance).
    #[error("not valid before {0}")]
    NotYetValid(u64),
    /// After its expiry (beyond the skew allowance).
    #[error("expired at {0}")]
    Expired(u64),
    /// Its principal is revoked.
    #[error("principal {0} is revoked")]
    Revoked(String),
}

/// The claims a token carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// Who.
    pub principal: String,
    /// The key that signs it.
    pub key_id: String,
    /// Not valid before (s since the epoch).
    pub not_before_s: u64,
    /// Not valid after (s since the epoch).
    pub expires_s: u64,
}

fn name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn mac(secret: &[u8], message: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(message.as_bytes());
    mac
}

/// Signs `claims` with `secret` (the key named by `claims.key_id`). Panics on a principal
/// or key id outside the documented alphabet (a caller's bug: tokens are made by the
/// issuer, not by users).
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    assert!(
        name_ok(&claims.principal) && name_ok(&claims.key_id),
        "bad principal or key id"
    );
    let body = format!(
        "v1.{}.{}.{}.{}",
        claims.principal, claims.key_id, claims.not_before_s, claims.expires_s
    );
    let tag = mac(secret, &body).finalize().into_bytes();
    let mut token = body;
    token.push('.');
    for byte in tag {
        let _ = write!(token, "{byte:02x}");
    }
    token
}

fn parse(token: &str) -> Result<(Claims, &str, Vec<u8>), AuthError> {
    let (body, signature) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
    let parts: Vec<&str> = body.split('.').collect();
    let [version, principal, key_id, not_before, expires] = parts.as_slice() else {
        return Err(AuthError::Malformed);
    };
    if *version != "v1" || !name_ok(principal) || !name_ok(key_id) || signature.len() != 64 {
        return Err(AuthError::Malformed);
    }
    let number = |text: &str| {
        if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthError::Malformed);
        }
        text.parse::<u64>().map_err(|_| AuthError::Malformed)
    };
    let claims = Claims {
        principal: principal.to_string(),
        key_id: key_id.to_string(),
        not_before_s: number(not_before)?,
        expires_s: number(expires)?,
    };
    let mut tag = Vec::with_capacity(32);
    for pair in signature.as_bytes().chunks(2) {
        let text = std::str::from_utf8(pair).map_err(|_| AuthError::Malformed)?;
        tag.push(u8::from_str_radix(text, 16).map_err(|_| AuthError::Malformed)?);
    }
    Ok((claims, body, tag))
}

/// The signing keys a gateway accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRing {
    /// Key id -> secret: the current keys.
    pub current: BTreeMap<String, Vec<u8>>,
    /// Key id -> (secret, accepted until this wall time in s): keys rotated out, in grace.
    pub retired: BTreeMap<String, (Vec<u8>, u64)>,
}

impl KeyRing {
    fn secret(&self, key_id: &str, now_s: u64) -> Option<&[u8]> {
        if let Some(secret) = self.current.get(key_id) {
            return Some(secret);
        }
        match self.retired.get(key_id) {
            Some((secret, until)) if now_s <= *until => Some(secret),
            _ => None,
        }
    }
}

/// Settings of a verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// The clock-skew allowance, in s (Envoy's `clock_skew_seconds`, 60 by default).
    pub skew_s: u64,
    /// Most verdicts cached.
    pub cache_max: usize,
    /// How long a verdict may be cached, in s (never beyond the token's own validity).
    pub cache_ttl_s: u64,
    /// The deliberately broken variants switched on (none in production).
    pub mutants: Mutants,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            skew_s: 60,
            cache_max: 1024,
            cache_ttl_s: 300,
            mutants: Mutants::none(),
        }
    }
}

/// Verifies tokens against a key ring and a revocation list, with a verdict cache.
#[derive(Clone, Debug)]
pub struct Verifier {
    config: AuthConfig,
    keys: KeyRing,
    revoked: BTreeSet<String>,
    /// Token -> (claims, cached until in wall s, and under
    /// [`Mutant::AuthCacheTtlFromTokenLife`] the entry's end on the monotonic clock).
    cache: BTreeMap<String, (Claims, u64, Option<Duration>)>,
}

impl Verifier {
    /// A verifier with `keys`.
    pub fn new(config: AuthConfig, keys: KeyRing) -> Verifier {
        Verifier {
            config,
            keys,
            revoked: BTreeSet::new(),
            cache: BTreeMap::new(),
        }
    }

    /// Replaces the key ring (a rotation). Cached verdicts of keys no longer accepted go.
    pub fn set_keys(&mut self, keys: KeyRing) {
        self.keys = keys;
        self.cache.clear();
    }

    /// Revokes a principal: its tokens are refused from now on, cached or not.
    pub fn revoke(&mut self, principal: &str) {
        self.revoked.insert(principal.to_owned());
        self.cache
            .retain(|_, (claims, _, _)| claims.principal != principal);
    }

    /// Verifies `token` at wall time `now_s` (the gateway's own clock).
    pub fn verify(&mut self, token: &str, now_s: u64) -> Result<Claims, AuthError> {
        self.verify_at(token, Duration::from_secs(now_s), Duration::ZERO)
    }

    /// Verifies `token` at wall time `wall` (since the Unix epoch, the gateway's own clock;
    /// only its whole seconds count) and monotonic time `monotonic` (which only a mutant
    /// reads).
    pub fn verify_at(
        &mut self,
        token: &str,
        wall: Duration,
        monotonic: Duration,
    ) -> Result<Claims, AuthError> {
        let now_s = wall.as_secs();
        let skew = self.config.skew_s;
        let ttl_from_life = self
            .config
            .mutants
            .contains(Mutant::AuthCacheTtlFromTokenLife);
        if let Some((claims, until, ends)) = self.cache.get(token) {
            // The bug (wso2/product-apim#9380): the entry's own end, fixed when it was
            // cached, stands in for the token's expiry; the wall clock is not asked again.
            let unexpired = match ends {
                Some(ends) if ttl_from_life => monotonic < *ends,
                _ => now_s <= claims.expires_s.saturating_add(skew),
            };
            let outlives = self.config.mutants.contains(Mutant::AuthCacheOutlivesToken);
            // The bug (fast-jwt#194): the cache checks a token's not-before otherwise than
            // the verifier does; here, not at all, as if a verdict once valid stayed valid.
            let early = self
                .config
                .mutants
                .contains(Mutant::AuthCacheIgnoresNotBefore);
            let valid = now_s <= *until
                && (outlives || unexpired)
                && (early || now_s.saturating_add(skew) >= claims.not_before_s)
                // A retired key's grace may have ended since.
                && self.keys.secret(&claims.key_id, now_s).is_some();
            if valid {
                return Ok(claims.clone());
            }
            self.cache.remove(token);
        }
        let (claims, body, tag) = parse(token)?;
        let secret = self
            .keys
            .secret(&claims.key_id, now_s)
            .ok_or_else(|| AuthError::UnknownKey(claims.key_id.clone()))?;
        mac(secret, body)
            .verify_slice(&tag)
            .map_err(|_| AuthError::BadSignature)?;
        if now_s.saturating_add(skew) < claims.not_before_s {
            return Err(AuthError::NotYetValid(claims.not_before_s));
        }
        if now_s > claims.expires_s.saturating_add(skew) {
            return Err(AuthError::Expired(claims.expires_s));
        }
        if self.revoked.contains(&claims.principal) {
            return Err(AuthError::Revoked(claims.principal));
        }
        if self.cache.len() >= self.config.cache_max {
            // Drop what expired, then (still full) the entry that ends soonest.
            self.cache.retain(|_, (_, until, _)| *until >= now_s);
            if self.cache.len() >= self.config.cache_max {
                let soonest = self
                    .cache
                    .iter()
                    .min_by_key(|(_, (_, until, _))| *until)
                    .map(|(token, _)| token.clone());
                if let Some(token) = soonest {
                    self.cache.remove(&token);
                }
            }
        }
        if self.config.cache_max > 0 {
            let until = now_s.saturating_add(self.config.cache_ttl_s);
            // The mutant's entry lives as long as the token has left by the wall clock now
            // (to the end of its last valid second), timed on the monotonic clock.
            let ends = ttl_from_life.then(|| {
                let last = Duration::from_secs(claims.expires_s.saturating_add(skew) + 1);
                monotonic + last.saturating_sub(wall)
            });
            self.cache
                .insert(token.to_owned(), (claims.clone(), until, ends));
        }
        Ok(claims)
    }
}
