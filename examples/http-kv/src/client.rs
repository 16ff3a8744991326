//! HTTP/1.1 connections with hyper's client, and the key-value client that fails over.

use crate::rt::{self, JoinHandle, TcpStream, TokioIo};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, HOST};
use hyper::{Method, Request, StatusCode};
use std::time::Duration;

/// The response header that carries the answering node's boot number.
pub const BOOT_HEADER: &str = "x-kv-boot";

/// A response: status, the answering node's boot number, body.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The answering node's boot number (0 when it sent none).
    pub boot: u64,
    /// The body.
    pub body: Bytes,
}

/// One HTTP/1.1 connection: hyper's request sender and the task that drives the connection.
/// Dropping it aborts the task, which closes the socket.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
    host: HeaderValue,
}

impl Conn {
    /// Connects to `addr` (`"host:port"`).
    pub async fn open(addr: &str) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|error| format!("connect to {addr}: {error}"))?;
        stream
            .set_nodelay(true)
            .map_err(|error| error.to_string())?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| format!("handshake with {addr}: {error}"))?;
        let task = rt::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "client connection ended");
            }
        });
        let host = HeaderValue::from_str(addr).map_err(|error| error.to_string())?;
        Ok(Conn { sender, task, host })
    }

    /// Whether the connection can take another request.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed() && !self.task.is_finished()
    }

    /// Sends one request and reads the whole response.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<Answer, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|error| error.to_string())?;
        self.sender
            .ready()
            .await
            .map_err(|error| error.to_string())?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status();
        let boot = response
            .headers()
            .get(BOOT_HEADER)
            .and_then(|value| value.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| error.to_string())?
            .to_bytes();
        Ok(Answer { status, boot, body })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends one request on `conn`, opening it first if needed, within `timeout` (connection
/// included). On any failure the connection is dropped: an HTTP/1.1 connection with a request
/// of unknown fate cannot carry the next one.
pub async fn exchange(
    conn: &mut Option<Conn>,
    addr: &str,
    timeout: Duration,
    (method, path): (Method, &str),
    headers: &[(&'static str, String)],
    body: Bytes,
) -> Result<Answer, String> {
    let attempt = async {
        if !conn.as_ref().is_some_and(Conn::is_open) {
            *conn = Some(Conn::open(addr).await?);
        }
        let open = conn.as_mut().expect("opened above");
        open.send(method, path, headers, body).await
    };
    let result = match rt::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer from {addr} within {} ms",
            timeout.as_millis()
        )),
    };
    if result.is_err() {
        *conn = None;
    }
    result
}

/// An answer from the service, and which server gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served<T> {
    /// What the operation returned.
    pub value: T,
    /// The index of the answering server in the client's list.
    pub server: usize,
    /// The answering server's boot number.
    pub boot: u64,
}

/// Why an operation has no answer: its effect is unknown (a refusal may come after the
/// backup applied a write, a timeout after anything).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    /// The index of the server asked.
    pub server: usize,
    /// What happened.
    pub reason: String,
}

/// A client of the key-value service: talks to one server at a time and moves to the next
/// when an operation fails. Each operation is one attempt.
pub struct KvClient {
    servers: Vec<String>,
    current: usize,
    conn: Option<Conn>,
    timeout: Duration,
}

impl KvClient {
    /// A client of `servers` (`"host:port"`, the primary first) with a timeout per operation.
    pub fn new(servers: Vec<String>, timeout: Duration) -> Self {
        assert!(!servers.is_empty(), "a client needs a server");
        KvClient {
            servers,
            current: 0,
            conn: None,
            timeout,
        }
    }

    /// `GET /kv/{key}`: the value, `None` for a key never written.
    pub async fn get(&mut self, key: &str) -> Result<Served<Option<String>>, Failed> {
        let answer = self.call(Method::GET, key, Bytes::new()).await?;
        let value = match answer.value.status {
            StatusCode::OK => Some(String::from_utf8_lossy(&answer.value.body).into_owned()),
            StatusCode::NOT_FOUND => None,
            status => return Err(self.failed(answer.server, format!("GET answered {status}"))),
        };
        Ok(Served {
            value,
            server: answer.server,
            boot: answer.boot,
        })
    }

    /// `PUT /kv/{key}` with `value` as the body.
    pub async fn put(&mut self, key: &str, value: &str) -> Result<Served<()>, Failed> {
        let body = Bytes::copy_from_slice(value.as_bytes());
        let answer = self.call(Method::PUT, key, body).await?;
        match answer.value.status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(Served {
                value: (),
                server: answer.server,
                boot: answer.boot,
            }),
            status => Err(self.failed(answer.server, format!("PUT answered {status}"))),
        }
    }

    async fn call(
        &mut self,
        method: Method,
        key: &str,
        body: Bytes,
    ) -> Result<Served<Answer>, Failed> {
        let server = self.current;
        let path = format!("/kv/{key}");
        let addr = self.servers[server].clone();
        let answer = exchange(
            &mut self.conn,
            &addr,
            self.timeout,
            (method, &path),
            &[],
            body,
        )
        .await
        .map_err(|reason| self.failed(server, reason))?;
        let boot = answer.boot;
        Ok(Served {
            value: answer,
            server,
            boot,
        })
    }

    /// The failure, after moving on to the next server.
    fn failed(&mut self, server: usize, reason: String) -> Failed {
        self.conn = None;
        self.current = (server + 1) % self.servers.len();
        Failed { server, reason }
    }
}
