//! Protocol translation: external HTTP/1.1 requests (parsed with `httparse`, never by hand)
//! into the backends' typed messages, and typed answers back into HTTP/1.1 bytes.
//!
//! # What is accepted
//!
//! One complete request: a head of at most [`Limits::head_max_bytes`] with at most
//! [`Limits::headers_max`] headers, a `Host` header, a body of exactly `Content-Length` bytes
//! (at most [`Limits::body_max_bytes`]) holding JSON or nothing. Refused, with a 4xx or 5xx
//! answer and never sent to a backend:
//!
//! * a malformed head (`httparse` errors), a missing or repeated `Host` (400);
//! * `Transfer-Encoding` (chunked bodies are not supported: 501), and `Content-Length` with
//!   conflicting or malformed values (400): the two request-smuggling shapes;
//! * a body that is not JSON (400), too large (413), a head too large (431);
//! * a target that does not normalise ([`crate::gateway::route::normalize`]: 400).
//!
//! No client header reaches a backend: the backend gets a typed [`BackendRequest`], so
//! identity headers a client sends (`x-principal`, `x-user`, ...) go nowhere, and the backend
//! learns the caller only from the gateway, in [`BackendRequest::principal`]. The token comes from
//! `Authorization: Bearer <token>`; the idempotency key from `Idempotency-Key`.

use crate::gateway::route::{normalize, Target};
use serde::{Deserialize, Serialize};

/// Size limits of external requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest head (request line and headers).
    pub head_max_bytes: usize,
    /// The most headers.
    pub headers_max: usize,
    /// The largest body.
    pub body_max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            head_max_bytes: 8 * 1024,
            headers_max: 32,
            body_max_bytes: 64 * 1024,
        }
    }
}

/// A request as the gateway understood it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalRequest {
    /// The method (upper case, as sent).
    pub method: String,
    /// The normalised target.
    pub target: Target,
    /// The path as sent (before the query), for logs: never matched, authorized or
    /// forwarded.
    pub raw_path: String,
    /// The host (lower case, without port).
    pub host: String,
    /// The bearer token, if any.
    pub token: Option<String>,
    /// The `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// The body (`null` when empty).
    pub body: serde_json::Value,
}

/// A refusal: the status and a short reason (sent as a JSON error body).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}")]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// Why.
    pub reason: String,
}

fn refuse(status: u16, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
    }
}

/// Parses one complete external request.
pub fn parse_request(bytes: &[u8], limits: &Limits) -> Result<ExternalRequest, Refusal> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.headers_max];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if bytes.len() > limits.head_max_bytes => {
            return Err(refuse(431, "the request head is too large"))
        }
        Ok(httparse::Status::Partial) => return Err(refuse(400, "an incomplete request")),
        Err(httparse::Error::TooManyHeaders) => return Err(refuse(431, "too many headers")),
        Err(error) => return Err(refuse(400, format!("a malformed request: {error}"))),
    };
    if head_len > limits.head_max_bytes {
        return Err(refuse(431, "the request head is too large"));
    }
    if request.version != Some(1) {
        return Err(refuse(505, "only HTTP/1.1 is served"));
    }
    let method = request.method.unwrap_or_default().to_owned();
    let raw = request.path.unwrap_or_default();
    let raw_path = raw.split_once('?').map_or(raw, |(path, _)| path).to_owned();
    let target = normalize(raw).map_err(|error| refuse(400, format!("a bad target: {error}")))?;
    let mut host = None;
    let mut token = None;
    let mut idempotency_key = None;
    let mut content_length: Option<usize> = None;
    for header in request.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        let value = std::str::from_utf8(header.value)
            .map_err(|_| refuse(400, format!("header {name} is not text")))?
            .trim();
        match name.as_str() {
            "host" => {
                if host.is_some() {
                    return Err(refuse(400, "two Host headers"));
                }
                host = Some(value.to_owned());
            }
            "transfer-encoding" => return Err(refuse(501, "Transfer-Encoding is not supported")),
            "content-length" => {
                let length = value
                    .parse::<usize>()
                    .ok()
                    .filter(|_| !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| refuse(400, "a malformed Content-Length"))?;
                if content_length.is_some_and(|known| known != length) {
                    return Err(refuse(400, "conflicting Content-Length headers"));
                }
                content_length = Some(length);
            }
            "authorization" => {
                let bearer = value
                    .strip_prefix("Bearer ")
                    .ok_or_else(|| refuse(401, "only Bearer tokens are accepted"))?;
                token = Some(bearer.trim().to_owned());
            }
            "idempotency-key" => idempotency_key = Some(value.to_owned()),
            _ => {}
        }
    }
    let host = host.ok_or_else(|| refuse(400, "no Host header"))?;
    let host = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host.as_str(), |(name, _)| name)
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(refuse(400, "an empty Host"));
    }
    let length = content_length.unwrap_or(0);
    if length > limits.body_max_bytes {
        return Err(refuse(413, "the body is too large"));
    }
    let rest = &bytes[head_len..];
    if rest.len() != length {
        return Err(refuse(
            400,
            format!(
                "the body has {} bytes, Content-Length says {length}",
                rest.len()
            ),
        ));
    }
    let body = if rest.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(rest).map_err(|_| refuse(400, "the body is not JSON"))?
    };
    Ok(ExternalRequest {
        method,
        target,
        raw_path,
        host,
        token,
        idempotency_key,
        body,
    })
}

/// What a backend instance receives: the gateway's typed message, never the client's bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendRequest {
    /// A unique id per client request (the same across the gateway's retries of it).
    pub request_id: u64,
    /// The route chosen.
    pub route: String,
    /// The method.
    pub method: String,
    /// The normalised path: the one routed and authorized.
    pub path: String,
    /// The query, as received.
    pub query: Option<String>,
    /// The caller the gateway authenticated (`None` on a public route without a token).
    pub principal: Option<String>,
    /// The client's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// The body (JSON text on the wire: the simulator's encoding is not self-describing).
    #[serde(with = "json_text")]
    pub body: serde_json::Value,
}

/// A backend's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendResponse {
    /// The HTTP status to answer with.
    pub status: u16,
    /// The JSON body (JSON text on the wire).
    #[serde(with = "json_text")]
    pub body: serde_json::Value,
}

/// A JSON value carried as its text, for encodings that are not self-describing (postcard).
mod json_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &serde_json::Value,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<serde_json::Value, D::Error> {
        let text = String::deserialize(deserializer)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// An HTTP/1.1 response with a JSON body.
pub fn render_response(status: u16, body: &serde_json::Value) -> Vec<u8> {
    let body = serde_json::to_vec(body).expect("a JSON value encodes");
    let mut bytes = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        reason_phrase(status),
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

/// The response to a refusal: `{"error": reason}`.
pub fn render_refusal(refusal: &Refusal) -> Vec<u8> {
    render_response(
        refusal.status,
        &serde_json::json!({ "error": refusal.reason }),
    )
}

/// Parses a response the gateway rendered (for clients and checks): status and JSON body.
pub fn parse_response(bytes: &[u8]) -> Result<BackendResponse, String> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err("an incomplete response".into()),
        Err(error) => return Err(format!("a malformed response: {error}")),
    };
    let status = response.code.ok_or("no status")?;
    let body = &bytes[head..];
    let body = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?
    };
    Ok(BackendResponse { status, body })
}
