//! The read side as a sim-core node: a [`Projection`] driven over the node's disk and the
//! event store's subscription, and a query server with read-your-writes.
//!
//! # Files
//!
//! The read model and its checkpoint are one file, [`VIEW_PATH`], replaced durably on every
//! store (a temporary file, fsync, rename, directory fsync: [`sim_core::disk::replace_durably`]):
//! after a crash the node finds the old model or the new one, never a mix. On every start it
//! reads the file and stores it again before serving (a store that failed may have left the
//! new file visible but not durable; storing it again makes what is about to be served
//! durable). A disk error restarts the projection the same way after a backoff; the view node
//! answers [`ViewResponse::Recovering`] meanwhile. A damaged file (its checksum fails) is
//! logged and replaced by the empty model: the read model is derived data, rebuilt from the
//! log.
//!
//! # Queries
//!
//! A query names the position it needs (`min_position`: the client's consistency token, or
//! the highest position it has seen, for monotonic reads). The node answers from its stored
//! model as soon as that model reaches the position; if it does not within the query's
//! `wait_max`, it answers with what it has and says so: `fresh: false`. It never presents a
//! model below the asked position as fresh.
//!
//! # Rebuild
//!
//! [`ViewRequest::Rebuild`] rebuilds the model from scratch from the log (up to the
//! projection's position), with the next generation, and replaces the live model with it
//! once it is stored; it is answered [`ViewResponse::Rebuilt`] then.

use crate::cqrs::mutant::{Mutant, Mutants};
use crate::cqrs::projection::{Note, Projection, ProjectionConfig, Step};
use crate::cqrs::view::{BankView, Query, QueryBody};
use crate::event_sourcing::driver::StoreClient;
use crate::event_sourcing::event::RecordedEvent;
use futures::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use sim_core::disk::{self, DiskError};
use sim_core::net::{Addr, NetError, Request, Socket};
use sim_core::time;
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;
use tracing::{debug, error, info, warn};

/// The read model's file.
pub const VIEW_PATH: &str = "view.bin";
/// The checkpoint's own file, used only under [`Mutant::CheckpointNotAtomic`].
pub const CHECKPOINT_PATH: &str = "view.chk";
/// The port a view node listens on by default.
pub const VIEW_PORT: u16 = 12;
/// How often the node looks at its waiting queries and its projection's timers, at most.
const POLL_EVERY: Duration = Duration::from_millis(10);
/// Most events a rebuild reads per call.
const REBUILD_PAGE: u64 = 512;

/// A request to a view node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ViewRequest {
    /// A query that needs the model at `min_position` or later.
    Query {
        /// What is asked.
        query: Query,
        /// The position the answer must reflect to be fresh.
        min_position: u64,
        /// How long the node may wait for its model to reach it (capped by the node).
        wait_max: Duration,
    },
    /// Rebuild the model from the log.
    Rebuild,
}

/// A query's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The model's position: the events below it are folded in.
    pub position: u64,
    /// The model's generation (how many rebuilds).
    pub generation: u64,
    /// Whether the position reaches the asked one. `false`: the answer is stale, and says so.
    pub fresh: bool,
    /// The answer.
    pub body: QueryBody,
}

/// A view node's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ViewResponse {
    /// A query's answer.
    Answer(Answer),
    /// The rebuilt model is stored and served.
    Rebuilt {
        /// Its generation.
        generation: u64,
        /// Its position.
        position: u64,
    },
    /// The rebuild did not finish (the log could not be read, or the projection moved on).
    RebuildFailed(String),
    /// The node is opening its model; retry later.
    Recovering,
}

/// Settings of a view node.
#[derive(Clone, Debug)]
pub struct ViewNodeConfig {
    /// The event store node.
    pub store: Addr,
    /// The port to listen on.
    pub port: u16,
    /// The projection's settings (and the mutants).
    pub projection: ProjectionConfig,
    /// The timeout of each call to the store.
    pub store_timeout: Duration,
    /// The longest a query may wait for its position.
    pub wait_cap: Duration,
    /// The wait before opening the model again after a disk error.
    pub reopen_backoff: Duration,
}

impl ViewNodeConfig {
    /// The defaults, for the store at `store`.
    pub fn new(store: Addr) -> Self {
        ViewNodeConfig {
            store,
            port: VIEW_PORT,
            projection: ProjectionConfig::default(),
            store_timeout: Duration::from_millis(200),
            wait_cap: Duration::from_secs(2),
            reopen_backoff: Duration::from_millis(30),
        }
    }
}

/// What a view node reports about itself, for observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewEvent {
    /// The stored model was read and stored again: serving from this position.
    Opened {
        /// The stored model's position.
        position: u64,
    },
    /// A poison event was parked.
    Parked {
        /// Its position.
        position: u64,
    },
    /// A query waited and was answered stale.
    AnsweredStale,
}

/// A callback for [`ViewEvent`]s.
pub type ViewHook = Rc<dyn Fn(&ViewEvent)>;

/// The shared state of the node's tasks.
struct Shared {
    config: ViewNodeConfig,
    /// `None` while the model is being opened.
    projection: RefCell<Option<Projection>>,
    hook: ViewHook,
    /// Set by a task that gave the projection work (a rebuild it adopted); the projecting
    /// loop, which sleeps until the projection's next deadline, wakes for it.
    kicked: Cell<bool>,
    /// The projecting loop's waker while it waits.
    waiting: RefCell<Option<Waker>>,
}

impl Shared {
    /// Wakes the projecting loop to perform what the projection now asks.
    fn kick(&self) {
        self.kicked.set(true);
        if let Some(waker) = self.waiting.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// The view node's program: open the model, project, serve queries; start over after a disk
/// error. Returns only when the node's socket closes.
pub async fn run_view_node(config: ViewNodeConfig, hook: ViewHook) {
    let socket = match Socket::bind(config.port) {
        Ok(socket) => Rc::new(socket),
        Err(error) => return warn!("the view node cannot bind port {}: {error}", config.port),
    };
    let bind = || StoreClient::bind(config.store, config.store_timeout);
    let (subscriber, reader) = match (bind(), bind()) {
        (Ok(subscriber), Ok(reader)) => (Rc::new(subscriber), Rc::new(reader)),
        _ => return warn!("the view node cannot bind its store clients"),
    };
    let shared = Rc::new(Shared {
        config: config.clone(),
        projection: RefCell::new(None),
        hook,
        kicked: Cell::new(false),
        waiting: RefCell::new(None),
    });
    let server = sim_core::task::spawn(serve(shared.clone(), socket.clone(), reader.clone()));
    loop {
        let stored = match open(&config.projection.mutants).await {
            Ok(view) => view,
            Err(error) => {
                warn!(
                    "opening the view failed: {error}; again in {} ms",
                    config.reopen_backoff.as_millis()
                );
                time::sleep(config.reopen_backoff).await;
                continue;
            }
        };
        info!(
            "the view is open at position {} (generation {})",
            stored.position, stored.generation
        );
        (shared.hook)(&ViewEvent::Opened {
            position: stored.position,
        });
        let projection = Projection::new(config.projection.clone(), stored, now());
        *shared.projection.borrow_mut() = Some(projection);
        let error = project(&shared, &subscriber, &reader).await;
        *shared.projection.borrow_mut() = None;
        warn!(
            "storing the view failed: {error}; reopening in {} ms",
            config.reopen_backoff.as_millis()
        );
        time::sleep(config.reopen_backoff).await;
        if server.is_finished() {
            return;
        }
    }
}

fn now() -> Duration {
    time::now().since_origin()
}

/// Reads the stored model and stores it again.
async fn open(mutants: &Mutants) -> Result<BankView, String> {
    let split = mutants.contains(Mutant::CheckpointNotAtomic);
    let mut view = match BankView::decode(&read_file(VIEW_PATH).await?) {
        Ok(view) => view,
        Err(damage) => {
            // The model is derived data: rebuild it from the log rather than stop for good.
            // Until it catches up it answers with lower positions (stale to a client that
            // passes its token).
            error!("the view file is damaged ({damage}); rebuilding the model from the log");
            BankView::default()
        }
    };
    if split {
        // The bug's layout: the position lives in its own file.
        let checkpoint = read_file(CHECKPOINT_PATH).await?;
        if let Ok(bytes) = <[u8; 8]>::try_from(checkpoint.as_slice()) {
            view.position = u64::from_le_bytes(bytes);
        }
    }
    store(&view, mutants).await.map_err(|e| e.to_string())?;
    Ok(view)
}

async fn read_file(path: &str) -> Result<Vec<u8>, String> {
    match disk::open(path).await {
        Ok(file) => file.read_to_end().await.map_err(|e| e.to_string()),
        Err(DiskError::NotFound { .. }) => Ok(Vec::new()),
        Err(error) => Err(error.to_string()),
    }
}

/// Stores `view` durably: one file, replaced atomically.
async fn store(view: &BankView, mutants: &Mutants) -> Result<(), DiskError> {
    disk::replace_durably(VIEW_PATH, &view.encode()).await?;
    if mutants.contains(Mutant::CheckpointNotAtomic) {
        // The bug: the checkpoint is a second write; a crash between the two leaves the data
        // ahead of it.
        disk::replace_durably(CHECKPOINT_PATH, &view.position.to_le_bytes()).await?;
    }
    Ok(())
}

/// What the projecting loop waits for.
enum Input {
    Page(u64, Result<Vec<RecordedEvent>, String>),
    Stored(Result<(), String>),
    Push(Vec<RecordedEvent>),
    Subscribed,
    Tick,
}

/// A page read in flight: its first position and the events (or why the read failed).
type PageRead = LocalBoxFuture<'static, (u64, Result<Vec<RecordedEvent>, String>)>;

/// Runs the projection until a store fails; returns the error.
async fn project(
    shared: &Shared,
    subscriber: &Rc<StoreClient>,
    reader: &Rc<StoreClient>,
) -> String {
    let mutants = shared.config.projection.mutants.clone();
    let mut reading: Option<PageRead> = None;
    let mut storing: Option<LocalBoxFuture<'static, Result<(), String>>> = None;
    let mut subscribing: Option<LocalBoxFuture<'static, ()>> = None;
    loop {
        // Perform what the projection asks.
        let (steps, notes, next_tick) = {
            let mut guard = shared.projection.borrow_mut();
            let projection = guard.as_mut().expect("the projection runs");
            let steps: Vec<Step> = std::iter::from_fn(|| projection.poll_step()).collect();
            (steps, projection.take_notes(), projection.next_tick(now()))
        };
        for note in notes {
            match note {
                Note::Parked { position, error } => {
                    warn!("parked the poison event at {position}: {error}");
                    (shared.hook)(&ViewEvent::Parked { position });
                }
                Note::WentLive(position) => debug!("caught up at {position}: live"),
                Note::GapRead(position) => debug!("a gap in the pushes at {position}: reading it"),
            }
        }
        for step in steps {
            match step {
                Step::Read { from, count } => {
                    let reader = reader.clone();
                    reading = Some(Box::pin(async move {
                        let page = match reader.read_all(from, count).await {
                            Ok(Ok(events)) => Ok(events),
                            Ok(Err(error)) => Err(error.to_string()),
                            Err(error) => Err(error.to_string()),
                        };
                        (from, page)
                    }));
                }
                Step::Subscribe { from } => {
                    let subscriber = subscriber.clone();
                    subscribing = Some(Box::pin(async move {
                        if let Err(error) = subscriber.subscribe(from).await {
                            debug!("subscribing from {from} failed: {error}");
                        }
                    }));
                }
                Step::Store(view) => {
                    let mutants = mutants.clone();
                    storing = Some(Box::pin(async move {
                        store(&view, &mutants).await.map_err(|e| e.to_string())
                    }));
                }
            }
        }
        // Until the projection's next deadline: every input it waits for (a push, a page, a
        // store, a subscription) wakes the loop by itself. At least a millisecond: a wait of
        // zero would spin without letting time pass.
        let wait = next_tick
            .saturating_sub(now())
            .max(Duration::from_millis(1));
        let mut push = pin!(subscriber.next_push(wait));
        let input = poll_fn(|cx| {
            if shared.kicked.take() {
                return Poll::Ready(Input::Tick);
            }
            *shared.waiting.borrow_mut() = Some(cx.waker().clone());
            if let Some(io) = storing.as_mut() {
                if let Poll::Ready(result) = io.as_mut().poll(cx) {
                    storing = None;
                    return Poll::Ready(Input::Stored(result));
                }
            }
            if let Some(io) = reading.as_mut() {
                if let Poll::Ready((from, page)) = io.as_mut().poll(cx) {
                    reading = None;
                    return Poll::Ready(Input::Page(from, page));
                }
            }
            if let Some(io) = subscribing.as_mut() {
                if let Poll::Ready(()) = io.as_mut().poll(cx) {
                    subscribing = None;
                    return Poll::Ready(Input::Subscribed);
                }
            }
            match push.as_mut().poll(cx) {
                Poll::Ready(Some(push)) => Poll::Ready(Input::Push(push.events)),
                Poll::Ready(None) => Poll::Ready(Input::Tick),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let mut guard = shared.projection.borrow_mut();
        let projection = guard.as_mut().expect("the projection runs");
        let now = now();
        match input {
            Input::Page(from, page) => projection.on_page(now, from, page),
            Input::Stored(result) => {
                if let Err(error) = projection.on_stored(result) {
                    return error;
                }
            }
            Input::Push(events) => projection.on_push(now, events),
            Input::Subscribed | Input::Tick => {}
        }
        projection.on_tick(now);
    }
}

/// Serves queries and rebuilds.
async fn serve(shared: Rc<Shared>, socket: Rc<Socket>, reader: Rc<StoreClient>) {
    loop {
        match socket.recv_request::<ViewRequest>().await {
            Ok((request, body)) => {
                let shared = shared.clone();
                let socket = socket.clone();
                let reader = reader.clone();
                sim_core::task::spawn(async move {
                    let response = match body {
                        ViewRequest::Query {
                            query,
                            min_position,
                            wait_max,
                        } => answer(&shared, &query, min_position, wait_max).await,
                        ViewRequest::Rebuild => rebuild(&shared, &reader).await,
                    };
                    reply(&socket, request, &response);
                });
            }
            Err(NetError::Decode { from, message }) => {
                debug!("an undecodable request from {from}: {message}");
            }
            Err(_) => return,
        }
    }
}

fn reply(socket: &Socket, request: Request, response: &ViewResponse) {
    let _ = socket.reply(request, response);
}

/// Answers a query once the model reaches `min_position`, or stale at the wait's end.
async fn answer(
    shared: &Shared,
    query: &Query,
    min_position: u64,
    wait_max: Duration,
) -> ViewResponse {
    let deadline = time::now() + wait_max.min(shared.config.wait_cap);
    loop {
        {
            let guard = shared.projection.borrow();
            let Some(projection) = guard.as_ref() else {
                return ViewResponse::Recovering;
            };
            let reached = projection.reached(min_position);
            if reached || time::now() >= deadline {
                let view = projection.served();
                if !reached {
                    (shared.hook)(&ViewEvent::AnsweredStale);
                }
                return ViewResponse::Answer(Answer {
                    position: view.position,
                    generation: view.generation,
                    fresh: reached,
                    body: view.answer(query),
                });
            }
        }
        time::sleep(POLL_EVERY.min(deadline.saturating_duration_since(time::now()))).await;
    }
}

/// Rebuilds the model from the log, catching up with the live one, swaps it in, and waits
/// until the rebuilt one is stored.
async fn rebuild(shared: &Shared, reader: &StoreClient) -> ViewResponse {
    let stale_ok = shared
        .config
        .projection
        .mutants
        .contains(Mutant::RebuildAdoptsStale);
    let (mut rebuilder, start) = match shared.projection.borrow().as_ref() {
        Some(projection) => (projection.rebuilder(), projection.working().position),
        None => return ViewResponse::Recovering,
    };
    let deadline = time::now() + shared.config.wait_cap;
    let generation = loop {
        if time::now() >= deadline {
            return ViewResponse::RebuildFailed("the rebuild did not catch up in time".into());
        }
        let live = match shared.projection.borrow().as_ref() {
            Some(projection) => projection.working().position,
            None => return ViewResponse::Recovering,
        };
        // The bug reads only up to where the live model was when the rebuild started.
        let target = if stale_ok { start } else { live };
        if rebuilder.position() >= target {
            let rebuilt = rebuilder.clone().finish();
            let generation = rebuilt.generation;
            let adopted = match shared.projection.borrow_mut().as_mut() {
                Some(projection) => projection.adopt(rebuilt),
                None => return ViewResponse::Recovering,
            };
            // The adopted model is to be stored: the projecting loop may be asleep.
            shared.kick();
            if adopted {
                break generation;
            }
            // The live model restarted behind the rebuild: wait for it to catch up.
            time::sleep(POLL_EVERY).await;
            continue;
        }
        let from = rebuilder.position();
        match reader.read_all(from, REBUILD_PAGE.min(target - from)).await {
            Ok(Ok(page)) if !page.is_empty() => {
                for event in &page {
                    rebuilder.push(event);
                }
            }
            Ok(Ok(_)) => {
                return ViewResponse::RebuildFailed(format!("the log ends before {target}"))
            }
            Ok(Err(error)) => return ViewResponse::RebuildFailed(error.to_string()),
            Err(error) => return ViewResponse::RebuildFailed(error.to_string()),
        }
    };
    info!("rebuilt the view (generation {generation})");
    // Answered once the rebuilt model is the stored one.
    let deadline = time::now() + shared.config.wait_cap;
    while time::now() < deadline {
        match shared.projection.borrow().as_ref() {
            Some(projection) if projection.served().generation >= generation => {
                return ViewResponse::Rebuilt {
                    generation,
                    position: projection.served().position,
                };
            }
            Some(_) => {}
            None => return ViewResponse::Recovering,
        }
        time::sleep(POLL_EVERY).await;
    }
    ViewResponse::RebuildFailed("the rebuilt model was not stored in time".into())
}
