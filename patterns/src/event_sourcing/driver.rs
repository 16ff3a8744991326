//! The event store as a node of sim-core: the sans-IO [`Store`] driven over the node's disk
//! and served over the simulated network.
//!
//! ```
//! use patterns::event_sourcing::driver::{run_node, NodeConfig, NodeEvent, NodeHook};
//! use patterns::event_sourcing::driver::{StoreClient, STORE_PORT};
//! use patterns::event_sourcing::event::{AppendRequest, EventData, EventId, ExpectedVersion};
//! use sim_core::{net::Addr, run, SimConfig};
//! use std::{sync::Arc, time::Duration};
//!
//! let report = run(7, SimConfig::default(), |sim| async move {
//!     // The store node's program; sim-core runs it again on every restart.
//!     let hook: NodeHook = Arc::new(|_event: &NodeEvent| {});
//!     let store = sim
//!         .node("store")
//!         .init(move || run_node(NodeConfig::default(), hook.clone()))
//!         .build();
//!     let client = sim.node("client").build();
//!     sim.sleep(Duration::from_millis(50)).await; // The store opens its files meanwhile.
//!     let event = EventData {
//!         event_id: EventId(1),
//!         event_type: "greeted".into(),
//!         schema_version: 1,
//!         payload: b"hello".to_vec(),
//!     };
//!     let append = AppendRequest {
//!         stream: "greetings".into(),
//!         expected: ExpectedVersion::NoStream,
//!         events: vec![event],
//!     };
//!     let answer = sim.spawn_on(client, async move {
//!         let server = Addr::new(store, STORE_PORT);
//!         let client = StoreClient::bind(server, Duration::from_millis(300)).unwrap();
//!         client.append(&append).await
//!     });
//!     // Ok(Ok(..)): the append is durable (log and checkpoint synced) and acknowledged.
//!     assert_eq!(answer.await.unwrap().unwrap().unwrap().first_version, 0);
//!     Ok(())
//! });
//! assert!(report.outcome.is_pass(), "{}", report.outcome);
//! ```
//!
//! # Files
//!
//! The node keeps [`LOG_PATH`] and [`CHECKPOINT_PATH`] on its disk (see
//! [`crate::event_sourcing::log`] for their formats). On every start it opens them, creating
//! the missing ones, then syncs the directory: always, not only after a create, because a
//! create whose directory sync failed (or was cut by a crash) leaves a name that is not durable
//! and the next start cannot tell. It then reads both files whole and runs [`Store::recover`].
//!
//! # Serving
//!
//! The node answers [`StoreRequest`]s with [`StoreResponse`]s and pushes [`Push`] datagrams to
//! subscribers. It pumps the store's effects: a file effect becomes a disk operation (at most
//! one in flight, as the store asks), an [`Effect::Ack`] the reply to the append's caller, an
//! [`Effect::Deliver`] a push to the subscriber. While a disk operation is in flight it keeps
//! taking requests, so the appends that arrive meanwhile share the next commit (group commit;
//! [`NodeEvent::Committed`] reports each commit's size). A subscriber is named by its socket's
//! address; pushes are datagrams that the network may lose, so a subscriber that sees a gap, or
//! hears nothing for a while, subscribes again from its cursor (subscribing again replaces the
//! subscription). Subscriptions live in memory: after a restart subscribers subscribe again.
//!
//! # Faults
//!
//! * **Disk errors** (a failed write, sync or truncate) halt the store ([`Effect::Halted`]; the
//!   appends in flight are answered "outcome unknown"). The node then restarts the store *in
//!   process*: it drops it, waits [`NodeConfig::reopen_backoff`], reopens and reads the files
//!   and recovers, as after a crash. (It could as well crash itself; restarting in process
//!   keeps the socket, and the recovery commit already copes with fsyncgate: see
//!   [`Store::recover`].) A failed open or read is retried the same way. Meanwhile every
//!   request is answered [`Refusal::Recovering`], which changes nothing.
//! * **Corruption**: when recovery finds acknowledged data damaged ([`OpenError::Recovery`]),
//!   the node refuses to serve for good: it reports [`NodeEvent::RefusedCorrupt`], notes the
//!   error in the trace, and answers every request with [`Refusal::CorruptLog`] carrying the
//!   recovery error. It never serves data it cannot vouch for. A single node cannot repair
//!   from a replica; an operator must.
//! * **Crashes** kill the node's tasks; its `init` runs again on what survived on the disk.
//!
//! # Logs
//!
//! The node tells its story with `tracing` (see `dst replay SCENARIO --seed S --log info`):
//! recovery, the truncation of a torn tail, a set-aside checkpoint slot, halts on disk errors
//! and failed opens at `info` and `warn`; the refusal to serve a corrupt log at `error`; each
//! commit and each recognized retry at `debug`.

use crate::event_sourcing::event::{AppendError, AppendRequest, Appended, RecordedEvent};
use crate::event_sourcing::store::{
    Effect, IoError, OpenError, ReadError, RecoveryReport, RequestId, Store, StoreConfig,
    StoreFile, SubscribeError, SubscriberId,
};
use futures::future::{self, Either, LocalBoxFuture};
use serde::{Deserialize, Serialize};
use sim_core::disk::{self, DiskError, File};
use sim_core::net::{Addr, NetError, Request, RpcError, Socket};
use sim_core::time;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, error, info, warn};

/// The log file's path on the node's disk.
pub const LOG_PATH: &str = "events.log";
/// The checkpoint file's path on the node's disk.
pub const CHECKPOINT_PATH: &str = "events.chk";
/// The port a store node listens on by default.
pub const STORE_PORT: u16 = 7;

/// A request to a store node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreRequest {
    /// Appends a batch atomically; answered [`StoreResponse::Append`] once durable.
    Append(AppendRequest),
    /// Reads durable events of a stream; answered [`StoreResponse::Events`].
    ReadStream {
        /// The stream.
        stream: String,
        /// The first version to read.
        from_version: u64,
        /// Most events to return (the node caps it at [`NodeConfig::read_count_max`]).
        count_max: u64,
    },
    /// Reads durable events of all streams by global position; answered
    /// [`StoreResponse::Events`].
    ReadAll {
        /// The first position to read.
        from_position: u64,
        /// Most events to return (the node caps it at [`NodeConfig::read_count_max`]).
        count_max: u64,
    },
    /// Subscribes the calling socket from a global position (replacing its subscription, if
    /// any); answered [`StoreResponse::Subscribe`], then events come as [`Push`]es.
    Subscribe {
        /// The position of the first event to push.
        from_position: u64,
    },
    /// Ends the calling socket's subscription; answered [`StoreResponse::Unsubscribed`].
    Unsubscribe,
}

/// A store node's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreResponse {
    /// The append's result.
    Append(Result<Appended, AppendError>),
    /// The events read.
    Events(Result<Vec<RecordedEvent>, ReadError>),
    /// The subscription's result.
    Subscribe(Result<(), SubscribeError>),
    /// Whether a subscription ended.
    Unsubscribed(bool),
    /// The node does not serve now; the request changed nothing.
    Refused(Refusal),
}

/// Why a store node does not serve a request. Nothing was done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The node is opening its files (after a start, a crash or a disk error); retry later.
    #[error("unavailable: recovering")]
    Recovering,
    /// Recovery found acknowledged data damaged; the node refuses to serve for good.
    #[error("unavailable: corrupt log: {detail}")]
    CorruptLog {
        /// The recovery error.
        detail: String,
    },
    /// The node's configuration is invalid; it cannot serve.
    #[error("unavailable: invalid configuration: {detail}")]
    Misconfigured {
        /// What is wrong.
        detail: String,
    },
}

/// Committed events pushed to a subscriber, in position order (a datagram: it may be lost,
/// duplicated or reordered on the way).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    /// Consecutive events.
    pub events: Vec<RecordedEvent>,
}

/// Settings of a store node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// The store's settings.
    pub store: StoreConfig,
    /// The port to listen on.
    pub port: u16,
    /// Most events one read returns.
    pub read_count_max: u64,
    /// The wait before reopening the files after a disk error.
    pub reopen_backoff: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            store: StoreConfig::default(),
            port: STORE_PORT,
            read_count_max: 4096,
            reopen_backoff: Duration::from_millis(20),
        }
    }
}

/// What a store node reports about itself, for observation (tests, scenarios, logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    /// The files were read and the store recovered; it serves once its recovery commit ends.
    Opened {
        /// What recovery found.
        report: RecoveryReport,
    },
    /// Opening or reading the files failed; the node retries after its backoff.
    OpenFailed {
        /// The disk error.
        error: String,
    },
    /// Recovery found acknowledged data damaged: the node refuses to serve from now on.
    RefusedCorrupt {
        /// The recovery error.
        error: String,
    },
    /// A disk error halted the store; the node restarts it from its files.
    Halted {
        /// The disk error.
        error: IoError,
    },
    /// A commit completed (log and checkpoint synced).
    Committed {
        /// Appends it made durable (0 for the recovery commit).
        appends: u64,
        /// Events it made durable.
        events: u64,
    },
    /// An append was answered with the result of an earlier, committed append with the same
    /// event ids (an idempotent retry).
    RetryRecognized,
}

/// A callback for [`NodeEvent`]s; it runs on the node, inside the driver's loop.
pub type NodeHook = Arc<dyn Fn(&NodeEvent) + Send + Sync>;

/// The store node's program: open, recover, serve; restart the store after a disk error;
/// refuse to serve after corruption. Returns only when the node's socket closes.
pub async fn run_node(config: NodeConfig, hook: NodeHook) {
    let socket = match Socket::bind(config.port) {
        Ok(socket) => socket,
        Err(error) => {
            let error = format!("cannot bind port {}: {error}", config.port);
            error!("the store cannot start: {error}");
            return hook(&NodeEvent::OpenFailed { error });
        }
    };
    let recovering = Refusal::Recovering;
    loop {
        let (files, log, checkpoint) = match answering(&socket, &recovering, open()).await {
            Ok(opened) => opened,
            Err(error) => {
                let error = error.to_string();
                warn!(
                    "opening the files failed: {error}; retrying in {} ms",
                    config.reopen_backoff.as_millis()
                );
                hook(&NodeEvent::OpenFailed { error });
                answering(&socket, &recovering, time::sleep(config.reopen_backoff)).await;
                continue;
            }
        };
        let store = match Store::recover(config.store.clone(), &log, &checkpoint) {
            Ok(store) => store,
            Err(error) => return refuse_forever(&socket, error, &hook).await,
        };
        let report = store.recovery_report().clone();
        log_recovery(&report);
        hook(&NodeEvent::Opened { report });
        match Serving::new(&socket, store, files, &config, &hook)
            .run()
            .await
        {
            Stop::Halted(error) => {
                warn!(
                    "a disk error halted the store: {error}; reopening the files in {} ms",
                    config.reopen_backoff.as_millis()
                );
                hook(&NodeEvent::Halted { error });
            }
            Stop::SocketClosed => {
                debug!("the socket closed: the store stops");
                return;
            }
        }
        answering(&socket, &recovering, time::sleep(config.reopen_backoff)).await;
    }
}

/// Logs what recovery found.
fn log_recovery(report: &RecoveryReport) {
    if let Some(torn) = &report.torn_tail {
        warn!(
            "truncating a torn tail: {} bytes at offset {} ({}), never acknowledged",
            torn.len, torn.offset, torn.reason
        );
    }
    if let Some(slot) = report.damaged_checkpoint_slot {
        warn!("checkpoint slot {slot} is damaged; recovered from the other slot");
    }
    info!(
        "recovered {} events: {} valid log bytes, {} synced per the checkpoint",
        report.events, report.valid_len, report.synced_len
    );
}

/// Answers every request with the refusal that `error` calls for, until the socket closes.
async fn refuse_forever(socket: &Socket, error: OpenError, hook: &NodeHook) {
    let detail = error.to_string();
    let refusal = match error {
        OpenError::Recovery(_) => {
            error!(
                "corrupt log: acknowledged data is damaged; refusing to serve for good: {detail}"
            );
            sim_core::trace::note(
                "store-refuses",
                format!("event store refuses to serve: {detail}"),
            );
            hook(&NodeEvent::RefusedCorrupt {
                error: detail.clone(),
            });
            Refusal::CorruptLog { detail }
        }
        OpenError::Config(_) => {
            error!("invalid configuration; refusing to serve: {detail}");
            Refusal::Misconfigured { detail }
        }
    };
    answering(socket, &refusal, future::pending::<()>()).await;
}

/// Runs `work` while answering every request with `refusal`.
async fn answering<T>(socket: &Socket, refusal: &Refusal, work: impl Future<Output = T>) -> T {
    let mut work = pin!(work);
    loop {
        let request = pin!(socket.recv_request::<StoreRequest>());
        match future::select(work.as_mut(), request).await {
            Either::Left((output, _)) => return output,
            Either::Right((Ok((request, _)), _)) => {
                let _ = socket.reply(request, &StoreResponse::Refused(refusal.clone()));
            }
            Either::Right((Err(NetError::Decode { .. }), _)) => {}
            // The socket closed: the node is going down; nothing is left to answer.
            Either::Right((Err(_), _)) => return work.await,
        }
    }
}

/// The store's open files.
struct Files {
    log: Rc<File>,
    checkpoint: Rc<File>,
}

impl Files {
    fn get(&self, file: StoreFile) -> Rc<File> {
        match file {
            StoreFile::Log => self.log.clone(),
            StoreFile::Checkpoint => self.checkpoint.clone(),
        }
    }
}

/// Opens (or creates) both files, makes their names durable, reads them whole.
async fn open() -> Result<(Files, Vec<u8>, Vec<u8>), DiskError> {
    let log = open_or_create(LOG_PATH).await?;
    let checkpoint = open_or_create(CHECKPOINT_PATH).await?;
    disk::sync_dir("").await?;
    let log_bytes = log.read_to_end().await?;
    let checkpoint_bytes = checkpoint.read_to_end().await?;
    let files = Files {
        log: Rc::new(log),
        checkpoint: Rc::new(checkpoint),
    };
    Ok((files, log_bytes, checkpoint_bytes))
}

async fn open_or_create(path: &str) -> Result<File, DiskError> {
    match disk::open(path).await {
        Err(DiskError::NotFound { .. }) => disk::create(path).await,
        other => other,
    }
}

/// A completed disk operation.
enum Completion {
    Write(Result<(), IoError>),
    Sync(Result<(), IoError>),
    Truncate(Result<(), IoError>),
}

/// Why serving stopped.
enum Stop {
    Halted(IoError),
    SocketClosed,
}

/// What the serving loop waits for.
enum Input {
    Request(Request, StoreRequest),
    Done(Completion),
    Closed,
}

/// An append waiting for its answer.
struct PendingAppend {
    request: Request,
    /// The store's committed end when the append arrived: an answer placing the events below
    /// it repeats an earlier append.
    committed_end: u64,
}

/// Commit counters already reported.
#[derive(Default)]
struct Seen {
    commits: u64,
    appends: u64,
    events: u64,
}

/// One incarnation of the store, being served.
struct Serving<'a> {
    socket: &'a Socket,
    store: Store,
    files: Files,
    config: &'a NodeConfig,
    hook: &'a NodeHook,
    inflight: Option<LocalBoxFuture<'static, Completion>>,
    appends: BTreeMap<RequestId, PendingAppend>,
    subscribers: BTreeMap<SubscriberId, Addr>,
    next_request: RequestId,
    seen: Seen,
}

fn io_error(error: DiskError) -> IoError {
    IoError::new(error.to_string())
}

/// The subscriber id of a socket address (node and port).
pub fn subscriber_id(addr: Addr) -> SubscriberId {
    (u64::from(addr.node.0) << 16) | u64::from(addr.port)
}

impl<'a> Serving<'a> {
    fn new(
        socket: &'a Socket,
        store: Store,
        files: Files,
        config: &'a NodeConfig,
        hook: &'a NodeHook,
    ) -> Self {
        Serving {
            socket,
            store,
            files,
            config,
            hook,
            inflight: None,
            appends: BTreeMap::new(),
            subscribers: BTreeMap::new(),
            next_request: 1,
            seen: Seen::default(),
        }
    }

    async fn run(mut self) -> Stop {
        loop {
            if let Some(error) = self.pump() {
                return Stop::Halted(error);
            }
            match self.next_input().await {
                Input::Request(request, body) => self.on_request(request, body),
                Input::Done(completion) => self.on_done(completion),
                Input::Closed => return Stop::SocketClosed,
            }
        }
    }

    /// The next request or the completion of the disk operation in flight, whichever comes
    /// first; requests first when both are ready, so that they join the next commit.
    async fn next_input(&mut self) -> Input {
        let socket = self.socket;
        loop {
            let request = pin!(socket.recv_request::<StoreRequest>());
            let received = match self.inflight.as_mut() {
                Some(io) => match future::select(request, io.as_mut()).await {
                    Either::Left((received, _)) => received,
                    Either::Right((completion, _)) => {
                        self.inflight = None;
                        return Input::Done(completion);
                    }
                },
                None => request.await,
            };
            match received {
                Ok((request, body)) => return Input::Request(request, body),
                Err(NetError::Decode { .. }) => continue,
                Err(_) => return Input::Closed,
            }
        }
    }

    /// Performs the store's effects; returns the error if the store halted.
    fn pump(&mut self) -> Option<IoError> {
        let mut halted = None;
        while let Some(effect) = self.store.poll_effect() {
            match effect {
                Effect::Write {
                    file,
                    offset,
                    bytes,
                } => {
                    let file = self.files.get(file);
                    self.start_io(Box::pin(async move {
                        Completion::Write(file.write_at(&bytes, offset).await.map_err(io_error))
                    }));
                }
                Effect::Sync { file } => {
                    let file = self.files.get(file);
                    self.start_io(Box::pin(async move {
                        Completion::Sync(file.sync_all().await.map_err(io_error))
                    }));
                }
                Effect::Truncate { file, len } => {
                    let file = self.files.get(file);
                    self.start_io(Box::pin(async move {
                        Completion::Truncate(file.truncate(len).await.map_err(io_error))
                    }));
                }
                Effect::Ack { request, result } => self.answer(request, result),
                Effect::Deliver { subscriber, events } => self.push(subscriber, events),
                Effect::Halted { error } => halted = Some(error),
            }
        }
        self.report_commits();
        halted
    }

    fn start_io(&mut self, io: LocalBoxFuture<'static, Completion>) {
        assert!(
            self.inflight.is_none(),
            "the store issued a second file effect while one is in flight"
        );
        self.inflight = Some(io);
    }

    fn on_done(&mut self, completion: Completion) {
        match completion {
            Completion::Write(result) => self.store.on_write_done(result),
            Completion::Sync(result) => self.store.on_sync_done(result),
            Completion::Truncate(result) => self.store.on_truncate_done(result),
        }
    }

    fn answer(&mut self, request: RequestId, result: Result<Appended, AppendError>) {
        let Some(pending) = self.appends.remove(&request) else {
            return;
        };
        if matches!(&result, Ok(appended) if appended.last_position < pending.committed_end) {
            debug!("a retry of an append already committed: answered with its result");
            (self.hook)(&NodeEvent::RetryRecognized);
        }
        let _ = self
            .socket
            .reply(pending.request, &StoreResponse::Append(result));
    }

    fn push(&mut self, subscriber: SubscriberId, events: Vec<RecordedEvent>) {
        if let Some(&to) = self.subscribers.get(&subscriber) {
            // A lost push is the subscriber's to notice (a gap, or silence): it resubscribes.
            let _ = self.socket.send(to, &Push { events });
        }
        self.store.on_delivered(subscriber);
    }

    fn report_commits(&mut self) {
        let stats = self.store.stats();
        if stats.commits == self.seen.commits {
            return;
        }
        let appends = stats.appends - self.seen.appends;
        let events = stats.events - self.seen.events;
        self.seen = Seen {
            commits: stats.commits,
            appends: stats.appends,
            events: stats.events,
        };
        if appends == 0 {
            debug!("the recovery commit is durable: serving");
        } else {
            debug!("group commit: {appends} appends ({events} events) durable");
        }
        (self.hook)(&NodeEvent::Committed { appends, events });
    }

    fn on_request(&mut self, request: Request, body: StoreRequest) {
        let count_cap = |count_max: u64| {
            usize::try_from(count_max.min(self.config.read_count_max)).unwrap_or(usize::MAX)
        };
        let response = match body {
            StoreRequest::Append(append) => {
                let id = self.next_request;
                self.next_request += 1;
                let committed_end = self.store.committed_end();
                let pending = PendingAppend {
                    request,
                    committed_end,
                };
                self.appends.insert(id, pending);
                self.store.append(id, append);
                return;
            }
            StoreRequest::ReadStream {
                stream,
                from_version,
                count_max,
            } => StoreResponse::Events(self.store.read_stream(
                &stream,
                from_version,
                count_cap(count_max),
            )),
            StoreRequest::ReadAll {
                from_position,
                count_max,
            } => StoreResponse::Events(self.store.read_all(from_position, count_cap(count_max))),
            StoreRequest::Subscribe { from_position } => {
                StoreResponse::Subscribe(self.subscribe(request.from(), from_position))
            }
            StoreRequest::Unsubscribe => {
                let subscriber = subscriber_id(request.from());
                self.subscribers.remove(&subscriber);
                StoreResponse::Unsubscribed(self.store.unsubscribe(subscriber))
            }
        };
        let _ = self.socket.reply(request, &response);
    }

    fn subscribe(&mut self, from: Addr, from_position: u64) -> Result<(), SubscribeError> {
        let subscriber = subscriber_id(from);
        let _ = self.store.unsubscribe(subscriber);
        self.subscribers.insert(subscriber, from);
        let result = self.store.subscribe(subscriber, from_position);
        if result.is_err() {
            self.subscribers.remove(&subscriber);
        }
        result
    }
}

/// Why a call to a store node did not give an answer of the expected kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer (lost, late, or the node is down): an append may or may not have happened.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The node refused; nothing was done.
    #[error(transparent)]
    Refused(Refusal),
    /// The node answered with a response of another kind (a bug).
    #[error("unexpected response: {0}")]
    Unexpected(String),
}

/// A client of a store node, on the calling node's socket.
pub struct StoreClient {
    socket: Socket,
    server: Addr,
    timeout: Duration,
}

impl StoreClient {
    /// Binds an ephemeral port on the current node; calls `server` with `timeout` each.
    pub fn bind(server: Addr, timeout: Duration) -> Result<Self, NetError> {
        let socket = Socket::bind(0)?;
        Ok(StoreClient {
            socket,
            server,
            timeout,
        })
    }

    /// The client's address (its subscriber identity).
    pub fn local_addr(&self) -> Addr {
        self.socket.local_addr()
    }

    /// Sends one request and waits for its answer.
    pub async fn call(&self, request: &StoreRequest) -> Result<StoreResponse, CallError> {
        let response = self.socket.call(self.server, request, self.timeout).await?;
        match response {
            StoreResponse::Refused(refusal) => Err(CallError::Refused(refusal)),
            response => Ok(response),
        }
    }

    /// Appends a batch.
    pub async fn append(
        &self,
        append: &AppendRequest,
    ) -> Result<Result<Appended, AppendError>, CallError> {
        match self.call(&StoreRequest::Append(append.clone())).await? {
            StoreResponse::Append(result) => Ok(result),
            other => Err(CallError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Reads up to `count_max` events of `stream` from `from_version`.
    pub async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        count_max: u64,
    ) -> Result<Result<Vec<RecordedEvent>, ReadError>, CallError> {
        let request = StoreRequest::ReadStream {
            stream: stream.to_owned(),
            from_version,
            count_max,
        };
        self.events(&request).await
    }

    /// Reads up to `count_max` events of all streams from `from_position`.
    pub async fn read_all(
        &self,
        from_position: u64,
        count_max: u64,
    ) -> Result<Result<Vec<RecordedEvent>, ReadError>, CallError> {
        let request = StoreRequest::ReadAll {
            from_position,
            count_max,
        };
        self.events(&request).await
    }

    async fn events(
        &self,
        request: &StoreRequest,
    ) -> Result<Result<Vec<RecordedEvent>, ReadError>, CallError> {
        match self.call(request).await? {
            StoreResponse::Events(result) => Ok(result),
            other => Err(CallError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Subscribes this client from `from_position` (replacing its subscription).
    pub async fn subscribe(
        &self,
        from_position: u64,
    ) -> Result<Result<(), SubscribeError>, CallError> {
        match self
            .call(&StoreRequest::Subscribe { from_position })
            .await?
        {
            StoreResponse::Subscribe(result) => Ok(result),
            other => Err(CallError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The next push from the server, waiting at most `wait`; `None` if none came.
    pub async fn next_push(&self, wait: Duration) -> Option<Push> {
        let deadline = time::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(time::now());
            match time::timeout(left, self.socket.recv::<Push>()).await {
                Ok(Ok((from, push))) if from == self.server => return Some(push),
                // A push from elsewhere, or one that does not decode: skip it.
                Ok(Ok(_)) | Ok(Err(NetError::Decode { .. })) => continue,
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }
}
