//! The key-value service: a primary and a backup, over HTTP/1.1 with hyper.
//!
//! Every operation commits at the backup, which makes the pair linearizable without clocks:
//! - The primary serves `GET /kv/{key}` and `PUT /kv/{key}` one at a time. A `PUT` is first
//!   replicated (`PUT /replicate/{key}`, the write's version in a header), then stored on the
//!   primary's disk (fsynced), then applied and acknowledged. A `GET` first asks the backup
//!   whether the primary still leads (`POST /heartbeat`), then answers from memory. When the
//!   backup cannot be reached the primary refuses (503): it cannot know whether the backup
//!   has taken over.
//! - The backup applies replicated writes newer than the key's version (a late copy of an
//!   older write is ignored), storing them before it answers. It serves no client while the
//!   primary leads. When it has heard nothing from the primary for `promote_after` (the
//!   primary heartbeats every `heartbeat_every` when idle), it stores `promoted` and takes
//!   over for good: from then on it answers the primary's requests with 409, so the primary
//!   stops serving, and it serves clients itself.
//! - Both nodes keep their state on disk ([`crate::store`]); a restarted node reloads it.
//!   A promoted backup stays promoted; a restarted primary whose backup took over learns it
//!   at its first request.
//!
//! The linearization point of every operation served by the primary is its request's
//! arrival at the backup (the primary holds its lock across the operation), and of every
//! operation served by the promoted backup its arrival there; the primary never serves once
//! the backup took over. A write whose client got no answer may be at the backup only: it
//! takes effect there, which is allowed.

use crate::client::{exchange, Conn, BOOT_HEADER};
use crate::rt::{self, Instant, TcpListener, TokioIo};
use crate::store::{Entry, State, Store, Version};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// The port both nodes listen on.
pub const PORT: u16 = 8080;
/// The request header that carries a replicated write's version (`boot.seq`).
const VERSION_HEADER: &str = "x-kv-version";
/// The largest value accepted, in bytes.
const VALUE_BYTES_MAX: usize = 64 * 1024;

/// Known bugs, off by default: each one is a mutant of the scenario.
///
/// Like the patterns' mutants, they exist in simulation builds only (`--cfg madsim`). In a
/// production build `Bugs` is empty and each bug is off for good: the service asks through
/// the methods, which are then a constant `false`, so the buggy paths are compiled out.
#[cfg(madsim)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    /// The primary goes on alone when the backup does not answer (replication falls back to
    /// asynchronous, as MySQL's semi-synchronous replication does after its timeout).
    pub replication_optional: bool,
    /// Saves skip fsync: an acknowledged write is only in the page cache.
    pub ack_before_fsync: bool,
    /// A restarted node starts its background duties (heartbeats, the takeover watch) but
    /// not its listener: the warm-start path skips a step of the cold one.
    pub listen_only_on_first_boot: bool,
}

#[cfg(madsim)]
impl Bugs {
    /// Whether [`Bugs::replication_optional`] is on.
    pub fn replication_optional(&self) -> bool {
        self.replication_optional
    }
    /// Whether [`Bugs::ack_before_fsync`] is on.
    pub fn ack_before_fsync(&self) -> bool {
        self.ack_before_fsync
    }
    /// Whether [`Bugs::listen_only_on_first_boot`] is on.
    pub fn listen_only_on_first_boot(&self) -> bool {
        self.listen_only_on_first_boot
    }
}

/// Known bugs: none in a production build (they exist in simulation builds only).
#[cfg(not(madsim))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {}

#[cfg(not(madsim))]
impl Bugs {
    /// Never: a production build has no bug to switch on.
    #[inline(always)]
    pub fn replication_optional(&self) -> bool {
        false
    }
    /// Never: a production build has no bug to switch on.
    #[inline(always)]
    pub fn ack_before_fsync(&self) -> bool {
        false
    }
    /// Never: a production build has no bug to switch on.
    #[inline(always)]
    pub fn listen_only_on_first_boot(&self) -> bool {
        false
    }
}

/// A node's role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serves clients and replicates to the backup at this address (`"host:port"`).
    Primary {
        /// The backup's address.
        backup: String,
    },
    /// Stores the primary's writes; takes over when the primary is gone.
    Backup,
}

/// How a node runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The address to listen on.
    pub listen: String,
    /// Primary or backup.
    pub role: Role,
    /// The directory of the state files.
    pub state_dir: String,
    /// How long the primary waits for the backup (connection included).
    pub backup_timeout: Duration,
    /// How often an idle primary tells the backup it leads, and how often the backup looks
    /// at the time since it last heard from the primary.
    pub heartbeat_every: Duration,
    /// The backup takes over after this long without a word from the primary.
    pub promote_after: Duration,
    /// Known bugs switched on.
    pub bugs: Bugs,
}

impl Config {
    /// A node with the default timings.
    pub fn new(role: Role) -> Self {
        Config {
            listen: format!("0.0.0.0:{PORT}"),
            role,
            state_dir: "/data".into(),
            backup_timeout: Duration::from_millis(150),
            heartbeat_every: Duration::from_millis(100),
            promote_after: Duration::from_millis(1000),
            bugs: Bugs::default(),
        }
    }
}

/// Runs a node until its listener fails.
pub async fn serve(config: Config) -> io::Result<()> {
    let mut store = Store::new(&config.state_dir, config.bugs);
    let mut state = load(&mut store).await;
    state.boot += 1;
    save_retrying(&mut store, &state).await;
    rt::note(
        "boot",
        format!("boot {} with {} keys", state.boot, state.entries.len()),
    );
    let warm_start_bug = config.bugs.listen_only_on_first_boot() && state.boot > 1;
    let listener = if warm_start_bug {
        None
    } else {
        Some(TcpListener::bind(config.listen.as_str()).await?)
    };
    let node = Arc::new(Node::new(config, store, state));
    rt::spawn(node.clone().keep_time());
    let Some(listener) = listener else {
        return std::future::pending().await;
    };
    loop {
        let (stream, _) = listener.accept().await?;
        let node = node.clone();
        rt::spawn(async move {
            let service = service_fn(move |request| {
                let node = node.clone();
                async move { Ok::<_, Infallible>(node.handle(request).await) }
            });
            let served = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%error, "server connection ended");
            }
        });
    }
}

/// Reads the stored state, retrying while the disk fails.
async fn load(store: &mut Store) -> State {
    loop {
        match store.load().await {
            Ok(state) => return state,
            Err(error) => {
                tracing::warn!(%error, "reading the stored state failed; retrying");
                rt::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Saves `state`, retrying while the disk fails.
async fn save_retrying(store: &mut Store, state: &State) {
    while let Err(error) = store.save(state).await {
        tracing::warn!(%error, "saving the state failed; retrying");
        rt::sleep(Duration::from_millis(50)).await;
    }
}

/// A request's route.
enum Route {
    Kv(String),
    Replicate(String),
    Heartbeat,
}

impl Route {
    fn of(method: &Method, path: &str) -> Option<Route> {
        let valid = |key: &str| (!key.is_empty() && !key.contains('/')).then(|| key.to_string());
        if let Some(key) = path.strip_prefix("/kv/") {
            let readable = method == Method::GET || method == Method::PUT;
            return valid(key).filter(|_| readable).map(Route::Kv);
        }
        if let Some(key) = path.strip_prefix("/replicate/") {
            return valid(key)
                .filter(|_| method == Method::PUT)
                .map(Route::Replicate);
        }
        (path == "/heartbeat" && method == Method::POST).then_some(Route::Heartbeat)
    }
}

/// What a request asks, with its body read.
struct Asked {
    method: Method,
    route: Route,
    version: Option<Version>,
    body: Bytes,
}

/// A node: its role's state behind one lock (one operation at a time), and its settings.
struct Node {
    config: Config,
    boot: u64,
    inner: Mutex<Inner>,
}

/// The state the lock guards.
struct Inner {
    state: State,
    store: Store,
    /// The primary's writes in this boot so far.
    seq: u64,
    /// The primary's connection to the backup.
    backup: Option<Conn>,
    /// The primary learnt that the backup took over.
    fenced: bool,
    /// When the backup last heard from the primary.
    heard: Instant,
}

/// The backup's answer to the primary.
enum Backed {
    Ok,
    /// The backup took over: the primary must stop.
    Fenced,
    /// No answer or an error: the backup may or may not have done it.
    Unknown(String),
}

fn reply(status: StatusCode, boot: u64, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(BOOT_HEADER, boot.to_string().parse().expect("digits"));
    response
}

fn parse_version(text: &str) -> Option<Version> {
    let (boot, seq) = text.split_once('.')?;
    Some((boot.parse().ok()?, seq.parse().ok()?))
}

impl Node {
    fn new(config: Config, store: Store, state: State) -> Self {
        Node {
            boot: state.boot,
            inner: Mutex::new(Inner {
                state,
                store,
                seq: 0,
                backup: None,
                fenced: false,
                heard: Instant::now(),
            }),
            config,
        }
    }

    fn is_primary(&self) -> bool {
        matches!(self.config.role, Role::Primary { .. })
    }

    /// Serves one request, noting it in the trace.
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (method, path) = (request.method().clone(), request.uri().path().to_string());
        rt::note("http", format!("{method} {path}"));
        let response = match self.read(request).await {
            Ok(asked) => self.route(asked).await,
            Err(response) => response,
        };
        rt::note(
            "http",
            format!("{method} {path} -> {}", response.status().as_u16()),
        );
        response
    }

    /// Parses the route and reads the body (before taking the lock).
    async fn read(&self, request: Request<Incoming>) -> Result<Asked, Response<Full<Bytes>>> {
        let Some(route) = Route::of(request.method(), request.uri().path()) else {
            return Err(reply(StatusCode::NOT_FOUND, self.boot, "no such route"));
        };
        let version = request
            .headers()
            .get(VERSION_HEADER)
            .and_then(|value| parse_version(value.to_str().ok()?));
        let method = request.method().clone();
        let body = Limited::new(request.into_body(), VALUE_BYTES_MAX)
            .collect()
            .await
            .map_err(|_| reply(StatusCode::BAD_REQUEST, self.boot, "body unreadable"))?
            .to_bytes();
        Ok(Asked {
            method,
            route,
            version,
            body,
        })
    }

    async fn route(&self, asked: Asked) -> Response<Full<Bytes>> {
        let mut inner = self.inner.lock().await;
        match (&asked.route, self.is_primary()) {
            (Route::Kv(key), true) => {
                self.primary_kv(&mut inner, &asked.method, key, asked.body)
                    .await
            }
            (Route::Kv(key), false) => {
                self.backup_kv(&mut inner, &asked.method, key, asked.body)
                    .await
            }
            (Route::Replicate(key), false) => {
                self.backup_replicate(&mut inner, key, asked.version, asked.body)
                    .await
            }
            (Route::Heartbeat, false) => {
                if inner.state.promoted {
                    return reply(StatusCode::CONFLICT, self.boot, "took over");
                }
                inner.heard = Instant::now();
                reply(StatusCode::NO_CONTENT, self.boot, "")
            }
            (Route::Replicate(_) | Route::Heartbeat, true) => {
                reply(StatusCode::NOT_FOUND, self.boot, "not a backup")
            }
        }
    }

    /// A client's request at the primary.
    async fn primary_kv(
        &self,
        inner: &mut Inner,
        method: &Method,
        key: &str,
        value: Bytes,
    ) -> Response<Full<Bytes>> {
        if inner.fenced {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                self.boot,
                "the backup took over",
            );
        }
        if method == Method::GET {
            if let Err(why) = self
                .lead(
                    inner,
                    (Method::POST, "/heartbeat".into()),
                    &[],
                    Bytes::new(),
                )
                .await
            {
                return why;
            }
            return match inner.state.entries.get(key) {
                Some(entry) => reply(StatusCode::OK, self.boot, entry.value.clone()),
                None => reply(StatusCode::NOT_FOUND, self.boot, ""),
            };
        }
        let Ok(value) = String::from_utf8(value.to_vec()) else {
            return reply(StatusCode::BAD_REQUEST, self.boot, "a value is UTF-8");
        };
        inner.seq += 1;
        let version = (self.boot, inner.seq);
        let header = [(VERSION_HEADER, format!("{}.{}", version.0, version.1))];
        let replicate = (Method::PUT, format!("/replicate/{key}"));
        if let Err(why) = self
            .lead(inner, replicate, &header, value.clone().into())
            .await
        {
            return why;
        }
        self.store_put(inner, key, Entry { value, version }).await
    }

    /// Asks the backup to do `request`; `Err` is the answer to give the client when the
    /// primary cannot go on.
    async fn lead(
        &self,
        inner: &mut Inner,
        (method, path): (Method, String),
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<(), Response<Full<Bytes>>> {
        match self.ask_backup(inner, (method, &path), headers, body).await {
            Backed::Ok => Ok(()),
            Backed::Fenced => {
                inner.fenced = true;
                rt::note(
                    "fenced",
                    "the backup took over: the primary stops serving".into(),
                );
                Err(reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    self.boot,
                    "the backup took over",
                ))
            }
            Backed::Unknown(why) if self.config.bugs.replication_optional() => {
                tracing::warn!(%why, "the backup did not answer: going on alone");
                Ok(())
            }
            Backed::Unknown(why) => Err(reply(
                StatusCode::SERVICE_UNAVAILABLE,
                self.boot,
                format!("the backup did not answer: {why}"),
            )),
        }
    }

    /// One request to the backup.
    async fn ask_backup(
        &self,
        inner: &mut Inner,
        (method, path): (Method, &str),
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Backed {
        let Role::Primary { backup } = &self.config.role else {
            unreachable!("only the primary asks the backup");
        };
        let answer = exchange(
            &mut inner.backup,
            backup,
            self.config.backup_timeout,
            (method, path),
            headers,
            body,
        )
        .await;
        match answer {
            Ok(answer) if answer.status.is_success() => Backed::Ok,
            Ok(answer) if answer.status == StatusCode::CONFLICT => Backed::Fenced,
            Ok(answer) => Backed::Unknown(format!("the backup answered {}", answer.status)),
            Err(why) => Backed::Unknown(why),
        }
    }

    /// Stores `entry` under `key`, then applies it and acknowledges.
    async fn store_put(&self, inner: &mut Inner, key: &str, entry: Entry) -> Response<Full<Bytes>> {
        let mut next = inner.state.clone();
        next.entries.insert(key.to_string(), entry);
        match inner.store.save(&next).await {
            Ok(()) => {
                inner.state = next;
                reply(StatusCode::NO_CONTENT, self.boot, "")
            }
            Err(error) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                self.boot,
                format!("storing failed: {error}"),
            ),
        }
    }

    /// A client's request at the backup: served only once it took over.
    async fn backup_kv(
        &self,
        inner: &mut Inner,
        method: &Method,
        key: &str,
        value: Bytes,
    ) -> Response<Full<Bytes>> {
        if !inner.state.promoted {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                self.boot,
                "the primary leads",
            );
        }
        if method == Method::GET {
            return match inner.state.entries.get(key) {
                Some(entry) => reply(StatusCode::OK, self.boot, entry.value.clone()),
                None => reply(StatusCode::NOT_FOUND, self.boot, ""),
            };
        }
        let Ok(value) = String::from_utf8(value.to_vec()) else {
            return reply(StatusCode::BAD_REQUEST, self.boot, "a value is UTF-8");
        };
        // Versions order only the primary's replicated writes, which are over.
        let version = inner
            .state
            .entries
            .get(key)
            .map_or((0, 0), |entry| entry.version);
        self.store_put(inner, key, Entry { value, version }).await
    }

    /// The primary's write at the backup.
    async fn backup_replicate(
        &self,
        inner: &mut Inner,
        key: &str,
        version: Option<Version>,
        value: Bytes,
    ) -> Response<Full<Bytes>> {
        if inner.state.promoted {
            return reply(StatusCode::CONFLICT, self.boot, "took over");
        }
        inner.heard = Instant::now();
        let (Some(version), Ok(value)) = (version, String::from_utf8(value.to_vec())) else {
            return reply(
                StatusCode::BAD_REQUEST,
                self.boot,
                "a version and a UTF-8 value",
            );
        };
        if inner
            .state
            .entries
            .get(key)
            .is_some_and(|entry| entry.version >= version)
        {
            // A late copy of a write the primary gave up on: a newer one is here.
            return reply(StatusCode::NO_CONTENT, self.boot, "");
        }
        self.store_put(inner, key, Entry { value, version }).await
    }

    /// The primary's heartbeats and the backup's watch for a silent primary.
    async fn keep_time(self: Arc<Self>) {
        loop {
            rt::sleep(self.config.heartbeat_every).await;
            let mut inner = self.inner.lock().await;
            if self.is_primary() {
                if !inner.fenced {
                    let heartbeat = (Method::POST, "/heartbeat".to_string());
                    let _ = self.lead(&mut inner, heartbeat, &[], Bytes::new()).await;
                }
            } else if !inner.state.promoted
                && Instant::now().saturating_duration_since(inner.heard)
                    >= self.config.promote_after
            {
                self.promote(&mut inner).await;
            }
        }
    }

    /// The backup takes over, once that is stored.
    async fn promote(&self, inner: &mut Inner) {
        let mut next = inner.state.clone();
        next.promoted = true;
        match inner.store.save(&next).await {
            Ok(()) => {
                inner.state = next;
                rt::note(
                    "promoted",
                    "the backup took over from a silent primary".into(),
                );
            }
            Err(error) => tracing::warn!(%error, "storing the promotion failed; retrying"),
        }
    }
}
