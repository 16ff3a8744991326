//! The clients of the `event-sourcing` scenario: writers that run account commands with
//! optimistic concurrency and idempotent retries, a reader, and a subscriber. Each records
//! what it observes in the oracle and the linearizability history.

use super::fold::{AccountModel, Intent};
use super::oracle::{Oracle, ReadKind, ReadObservation, IDEMPOTENT, LINEARIZABLE};
use super::{
    Command, ReaderOp, ReaderRead, WriterOp, AUDIT_STREAM, REPLAY_EQUALS_LIVE,
    WRONG_EXPECTED_VERSION,
};
use harness::history::{History, OpId};
use harness::linearizability::models::{ExpectedVersion as ModelExpected, LogInput, LogOutput};
use harness::{Checked, Observer, Violation};
use patterns::event_sourcing::account::{Account, AccountCommand, AccountEvent, DEPOSITED};
use patterns::event_sourcing::aggregate::{
    rehydrate, replay, tail_from, Aggregate, EventCodec, Loaded, Snapshot, SnapshotPolicy,
    Upcasters,
};
use patterns::event_sourcing::driver::{CallError, StoreClient};
use patterns::event_sourcing::event::{
    AppendError, AppendRequest, Appended, EventData, EventId, ExpectedVersion, RecordedEvent,
};
use patterns::event_sourcing::mutant::Mutants;
use sim_core::net::Addr;
use sim_core::time;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a client waits for an answer.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(300);
/// Most attempts of one append (the first and its retries with the same event ids).
const APPEND_ATTEMPTS_MAX: u32 = 8;
/// The pause before retrying an append.
const RETRY_BACKOFF: Duration = Duration::from_millis(150);
/// Most events a client asks for in one read: more than a run appends, so reads are whole.
pub const READ_COUNT_MAX: u64 = 2048;
/// A subscriber that hears nothing for this long subscribes again from its cursor.
const SUBSCRIBER_IDLE: Duration = Duration::from_millis(300);
/// Writers snapshot their aggregates this often.
const SNAPSHOT_POLICY: SnapshotPolicy = SnapshotPolicy { every_events: 3 };

/// The linearizability history of the run.
pub type LogHistory = History<LogInput<String>, LogOutput>;

/// What every client task of a run shares (one thread: `Rc` and `RefCell` suffice).
pub struct Ctx {
    /// The store's address.
    pub store: Addr,
    /// The oracle.
    pub oracle: RefCell<Oracle>,
    /// The oracle's account model (what each account event means, and its own fold).
    pub model: RefCell<AccountModel>,
    /// Appends and stream reads, for the linearizability check.
    pub history: RefCell<LogHistory>,
    /// Every live state a writer computed after its own acknowledged append: (stream, state).
    pub lives: RefCell<Vec<(String, Loaded<Account>)>>,
    /// The subscriber's events, contiguous from position 0.
    pub subscribed: RefCell<Vec<RecordedEvent>>,
    /// Tells the subscriber to stop.
    pub stop: Cell<bool>,
    /// The mutants on (the snapshot fold runs in the client).
    pub mutants: Mutants,
    /// Where violations and sometimes-invariants are reported.
    pub observer: Observer,
    /// The account's upcasters.
    pub upcasters: Upcasters,
}

/// True simulated time in nanoseconds, for histories (the checker's clock, not the system's).
pub fn true_ns() -> u64 {
    u64::try_from(time::true_now().as_nanos()).unwrap_or(u64::MAX)
}

/// The model's expected version of a store's.
fn model_expected(expected: ExpectedVersion) -> ModelExpected {
    match expected {
        ExpectedVersion::Any => ModelExpected::Any,
        ExpectedVersion::NoStream => ModelExpected::NoStream,
        ExpectedVersion::StreamExists => ModelExpected::StreamExists,
        ExpectedVersion::Exactly(version) => ModelExpected::Exactly(version),
    }
}

/// How an append ended for its client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Acknowledged.
    Appended(Appended),
    /// Refused for the expected version.
    WrongExpectedVersion,
    /// The client gave up without knowing.
    Indeterminate,
}

impl Ctx {
    /// Reports a broken invariant (the run stops, unless the invariant is muted); returns
    /// whether the client may go on.
    pub fn report(&self, result: Checked) -> bool {
        let ok = result.is_ok();
        self.observer.report(result);
        ok
    }

    /// Sends `append` until an answer settles it, with the same event ids on every attempt;
    /// records it in the oracle and the history. `client_id` names the history's client.
    pub async fn append(
        &self,
        client: &StoreClient,
        client_id: u64,
        append: &AppendRequest,
    ) -> Result<AppendOutcome, Violation> {
        self.oracle.borrow_mut().submit(append);
        let input = LogInput::Append {
            stream: append.stream.clone(),
            expected_version: model_expected(append.expected),
            events: append.events.len() as u64,
        };
        let op = self
            .history
            .borrow_mut()
            .invoke(client_id, input, true_ns());
        let op = op.expect("the history holds every operation of a run");
        // Whether an attempt may have been stored without the client hearing of it.
        let mut unknown = false;
        for attempt in 0..APPEND_ATTEMPTS_MAX {
            if attempt > 0 {
                time::sleep(RETRY_BACKOFF).await;
            }
            let answer = client.append(append).await;
            match answer {
                Ok(Ok(appended)) => return self.appended(op, append, appended),
                Ok(Err(AppendError::WrongExpectedVersion { current, .. })) => {
                    self.observer.reached(&WRONG_EXPECTED_VERSION);
                    let output = LogOutput::WrongExpectedVersion { actual: current };
                    let _ = self.history.borrow_mut().complete(op, output, true_ns());
                    let what = "wrong expected version";
                    self.oracle.borrow_mut().failed(append, what, unknown)?;
                    return Ok(AppendOutcome::WrongExpectedVersion);
                }
                Ok(Err(AppendError::EventIdConflict { event_id })) => {
                    return Err(IDEMPOTENT.violated(format!(
                        "attempt {} of an append to `{}` with the same events was answered with \
                         a conflict on event id {event_id}",
                        attempt + 1,
                        append.stream
                    )));
                }
                Ok(Err(AppendError::OutcomeUnknown)) | Err(CallError::Rpc(_)) => unknown = true,
                // Nothing of this attempt was stored. Retry.
                Ok(Err(_)) | Err(CallError::Refused(_)) | Err(CallError::Unexpected(_)) => {}
            }
        }
        // Undecided, even if every attempt was refused: the network may have duplicated a
        // request and delivered the copy later, to a store that then served it.
        let _ = self.history.borrow_mut().mark_indeterminate(op);
        Ok(AppendOutcome::Indeterminate)
    }

    fn appended(
        &self,
        op: OpId,
        append: &AppendRequest,
        appended: Appended,
    ) -> Result<AppendOutcome, Violation> {
        let now = true_ns();
        let output = LogOutput::Appended {
            version: appended.last_version,
        };
        let _ = self.history.borrow_mut().complete(op, output, now);
        self.oracle.borrow_mut().acked(append, &appended, now)?;
        Ok(AppendOutcome::Appended(appended))
    }

    /// Reads a whole stream, checks it with the oracle and records it in the history.
    pub async fn read_stream(
        &self,
        client: &StoreClient,
        client_id: u64,
        stream: &str,
    ) -> Result<Option<Vec<RecordedEvent>>, Violation> {
        let input = LogInput::Read {
            stream: stream.to_owned(),
        };
        let invoked = true_ns();
        let op = self.history.borrow_mut().invoke(client_id, input, invoked);
        let op = op.expect("the history holds every operation of a run");
        let Ok(Ok(events)) = client.read_stream(stream, 0, READ_COUNT_MAX).await else {
            // A read changes nothing: one without an answer is simply left out.
            let _ = self.history.borrow_mut().fail_definitely(op);
            return Ok(None);
        };
        let returned = true_ns();
        let kind = ReadKind::Stream {
            stream: stream.to_owned(),
            from_version: 0,
        };
        self.observe(kind, &events, invoked, returned)?;
        let mut history = self.history.borrow_mut();
        if (events.len() as u64) < READ_COUNT_MAX {
            let version = events.last().map(|event| event.version);
            let _ = history.complete(op, LogOutput::ReadOk { version }, returned);
        } else {
            let _ = history.fail_definitely(op);
        }
        Ok(Some(events))
    }

    /// Feeds one read to the oracle.
    pub fn observe(
        &self,
        kind: ReadKind,
        events: &[RecordedEvent],
        invoked_ns: u64,
        returned_ns: u64,
    ) -> Checked {
        let count_max = if matches!(kind, ReadKind::Push) {
            u64::MAX
        } else {
            READ_COUNT_MAX
        };
        self.oracle.borrow_mut().read(&ReadObservation {
            kind,
            events,
            count_max,
            invoked_ns,
            returned_ns,
        })
    }
}

/// A writer's knowledge of one stream.
#[derive(Clone, Debug, Default)]
struct StreamCache {
    /// The state as the writer last loaded or changed it.
    live: Option<Loaded<Account>>,
    /// The writer's latest snapshot of the stream.
    snapshot: Option<Snapshot<Account>>,
}

/// A writer: runs account commands on shared streams.
pub struct Writer<'a> {
    ctx: &'a Ctx,
    /// 1-based, also the history's client id and the high bits of its event ids.
    index: u64,
    client: StoreClient,
    cache: BTreeMap<String, StreamCache>,
    commands: u64,
}

/// The event data and the live event of one decided event.
type Decided = (EventData, AccountEvent);

impl<'a> Writer<'a> {
    /// A writer on the current node.
    pub fn new(ctx: &'a Ctx, index: u64) -> Self {
        let client = StoreClient::bind(ctx.store, CALL_TIMEOUT).expect("a client binds a port");
        Writer {
            ctx,
            index,
            client,
            cache: BTreeMap::new(),
            commands: 0,
        }
    }

    /// Runs the writer's operations; stops at the first broken invariant.
    pub async fn run(mut self, ops: Vec<WriterOp>) {
        for op in ops {
            time::sleep(Duration::from_millis(op.think_ms.max(1))).await;
            let stream = super::account_stream(op.stream);
            let result = match &op.command {
                Command::Load => self.load(&stream).await.map(|_| ()),
                Command::Audit { note_len } => self.audit(*note_len).await,
                Command::AuditBurst { count, note_len } => self.burst(*count, *note_len).await,
                command => self.command(&stream, command, op.reload).await,
            };
            if !self.ctx.report(result) {
                return;
            }
        }
    }

    fn event_id(&self, command: u64, index: u32) -> EventId {
        EventId((u128::from(self.index) << 64) | (u128::from(command) << 8) | u128::from(index))
    }

    fn next_command(&mut self) -> u64 {
        self.commands += 1;
        self.commands
    }

    /// An audit note appended with no expected version.
    fn audit_note(&mut self, note_len: u16) -> AppendRequest {
        let command = self.next_command();
        let event = EventData {
            event_id: self.event_id(command, 0),
            event_type: "audit-note".into(),
            schema_version: 1,
            payload: filler(command, usize::from(note_len)).into_bytes(),
        };
        AppendRequest {
            stream: AUDIT_STREAM.into(),
            expected: ExpectedVersion::Any,
            events: vec![event],
        }
    }

    async fn audit(&mut self, note_len: u16) -> Checked {
        let append = self.audit_note(note_len);
        self.ctx.append(&self.client, self.index, &append).await?;
        Ok(())
    }

    /// Several audit notes appended concurrently (each its own history client), so that the
    /// store sees appends arrive while a commit is in flight.
    pub async fn burst(&mut self, count: u8, note_len: u16) -> Checked {
        let appends: Vec<AppendRequest> = (0..count).map(|_| self.audit_note(note_len)).collect();
        let (ctx, client) = (self.ctx, &self.client);
        let running = appends.iter().zip(0u64..).map(|(append, k)| {
            let client_id = self.index * 1000 + k;
            ctx.append(client, client_id, append)
        });
        for result in futures::future::join_all(running).await {
            result?;
        }
        Ok(())
    }

    /// Runs one command: decide on the cached (or reloaded) state, append with the state's
    /// version as the expected one; on a conflict reload and decide once more.
    async fn command(&mut self, stream: &str, command: &Command, reload: bool) -> Checked {
        let mut reload = reload;
        for _ in 0..2 {
            let cached = self.cache.get(stream).and_then(|cache| cache.live.clone());
            let loaded = match cached {
                Some(loaded) if !reload => loaded,
                _ => match self.load(stream).await? {
                    Some(loaded) => loaded,
                    None => return Ok(()),
                },
            };
            let number = self.next_command();
            let decided = decide(&loaded.state, command, stream, number);
            let events = decided.iter().zip(0u32..);
            let append = AppendRequest {
                stream: stream.to_owned(),
                expected: loaded.expected(),
                events: events
                    .map(|((data, _), index)| EventData {
                        event_id: self.event_id(number, index),
                        ..data.clone()
                    })
                    .collect(),
            };
            for (data, (_, event)) in append.events.iter().zip(&decided) {
                let intent = Intent::of(event);
                self.ctx.model.borrow_mut().intend(data.event_id, intent);
            }
            match self.ctx.append(&self.client, self.index, &append).await? {
                AppendOutcome::Appended(appended) => {
                    return self.applied(stream, loaded, &decided, &appended);
                }
                AppendOutcome::WrongExpectedVersion => reload = true,
                AppendOutcome::Indeterminate => {
                    self.cache.entry(stream.to_owned()).or_default().live = None;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The live state after an acknowledged append of `decided` on top of `loaded`.
    fn applied(
        &mut self,
        stream: &str,
        mut loaded: Loaded<Account>,
        decided: &[Decided],
        appended: &Appended,
    ) -> Checked {
        let next = loaded.version.map_or(0, |version| version + 1);
        if appended.first_version != next {
            return Err(LINEARIZABLE.violated(format!(
                "an append to `{stream}` expecting {} was acknowledged at {appended}",
                loaded.expected()
            )));
        }
        let events: Vec<AccountEvent> = decided.iter().map(|(_, event)| event.clone()).collect();
        loaded
            .apply_appended(&events, appended)
            .expect("the version was checked above");
        let what = "the live state after an acknowledged append";
        self.judge(stream, what, &loaded)?;
        self.ctx
            .lives
            .borrow_mut()
            .push((stream.to_owned(), loaded.clone()));
        self.cache.entry(stream.to_owned()).or_default().live = Some(loaded);
        Ok(())
    }

    /// `replay-equals-live` for one state of `stream` (see [`AccountModel::judge`]).
    fn judge(&self, stream: &str, what: &str, loaded: &Loaded<Account>) -> Checked {
        let (model, oracle) = (self.ctx.model.borrow(), self.ctx.oracle.borrow());
        model.judge(&oracle, stream, what, loaded)
    }

    /// Loads a stream the way an application does (from the writer's snapshot plus the tail),
    /// and checks it and a full replay against the oracle's model of the stream.
    async fn load(&mut self, stream: &str) -> Result<Option<Loaded<Account>>, Violation> {
        let ctx = self.ctx;
        let Some(events) = ctx.read_stream(&self.client, self.index, stream).await? else {
            return Ok(None);
        };
        let cache = self.cache.entry(stream.to_owned()).or_default();
        let full = replay_or_violation(&events, &ctx.upcasters, stream)?;
        let from = tail_from(cache.snapshot.as_ref(), &ctx.mutants);
        let tail: Vec<RecordedEvent> = events
            .iter()
            .filter(|e| e.version >= from)
            .cloned()
            .collect();
        let loaded = rehydrate(cache.snapshot.as_ref(), &tail, &ctx.upcasters, &ctx.mutants)
            .map_err(|error| replay_violation(stream, &error.to_string()))?;
        let snapshot_version = cache.snapshot.as_ref().map(|s| s.version);
        {
            let (model, oracle) = (ctx.model.borrow(), ctx.oracle.borrow());
            model.judge(&oracle, stream, "a full replay", &full)?;
            let what = match snapshot_version {
                Some(version) => format!("a load from the snapshot at v{version} plus the tail"),
                None => "a load without a snapshot".to_owned(),
            };
            model.judge(&oracle, stream, &what, &loaded)?;
        }
        if let Some(version) = loaded.version {
            if SNAPSHOT_POLICY.due(snapshot_version, version) {
                cache.snapshot = Snapshot::of(&loaded);
            }
        }
        cache.live = Some(loaded.clone());
        Ok(Some(loaded))
    }
}

fn replay_violation(stream: &str, detail: &str) -> Violation {
    REPLAY_EQUALS_LIVE.violated(format!("stream `{stream}`: {detail}"))
}

fn replay_or_violation(
    events: &[RecordedEvent],
    upcasters: &Upcasters,
    stream: &str,
) -> Result<Loaded<Account>, Violation> {
    replay(events, upcasters).map_err(|error| replay_violation(stream, &format!("replay: {error}")))
}

/// A live state at version `v`, and the replay of `events` (a read of the stream) up to `v`,
/// each equal the oracle's model of the stream at `v`.
pub fn check_live(
    model: &AccountModel,
    oracle: &Oracle,
    stream: &str,
    live: &Loaded<Account>,
    events: &[RecordedEvent],
    upcasters: &Upcasters,
) -> Checked {
    model.judge(oracle, stream, "a live state", live)?;
    let Some(version) = live.version else {
        return Ok(());
    };
    let prefix: Vec<RecordedEvent> = events
        .iter()
        .filter(|event| event.version <= version)
        .cloned()
        .collect();
    let replayed = replay_or_violation(&prefix, upcasters, stream)?;
    let what = format!("the replay of a read up to v{version}");
    model.judge(oracle, stream, &what, &replayed)
}

/// Deterministic filler text of `len` bytes.
fn filler(seed: u64, len: usize) -> String {
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    (0..len)
        .map(|i| char::from(letters[(seed as usize + i) % letters.len()]))
        .collect()
}

/// A `money-deposited` event as the account's old code wrote it (schema version 1: the amount
/// alone, a `u32` in postcard's varint: 7 bits per byte, least significant first, the high bit
/// set on every byte but the last). Encoded here, from the documented format, and not with the
/// pattern's own `deposited_v1`: an encoder and an upcaster that agree with each other but not
/// with the format would otherwise pass.
fn legacy_deposited(event_id: EventId, amount: u32) -> EventData {
    let mut payload = Vec::new();
    let mut rest = amount;
    while rest >= 0x80 {
        payload.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    payload.push(rest as u8);
    EventData {
        event_id,
        event_type: DEPOSITED.to_owned(),
        schema_version: 1,
        payload,
    }
}

/// The events a command produces on `state` (with placeholder ids), each with its live form.
/// A command that does not apply becomes one that does: an account is opened first, a
/// withdrawal never exceeds the balance.
fn decide(state: &Account, command: &Command, stream: &str, number: u64) -> Vec<Decided> {
    let placeholder = EventId(0);
    let of = |event: AccountEvent| (event.to_data(placeholder), event);
    if state.owner.is_none() {
        return vec![of(AccountEvent::Opened {
            owner: stream.to_owned(),
        })];
    }
    let deposit = |state: &Account, amount: u64, memo_len: u16| {
        let memo = filler(number, usize::from(memo_len));
        state.handle(AccountCommand::Deposit { amount, memo })
    };
    let handled = match command {
        Command::Deposit { amount, memo_len } => deposit(state, *amount, *memo_len),
        Command::Withdraw { amount } if state.balance > 0 => {
            state.handle(AccountCommand::Withdraw {
                amount: (*amount).clamp(1, state.balance),
            })
        }
        Command::LegacyDeposit { amount } => {
            let amount = (*amount).max(1);
            let live = AccountEvent::Deposited {
                amount: u64::from(amount),
                memo: String::new(),
            };
            return vec![(legacy_deposited(placeholder, amount), live)];
        }
        Command::DepositMany { amounts, memo_len } => {
            let mut scratch = state.clone();
            let mut events = Vec::new();
            for amount in amounts {
                if let Ok(produced) = deposit(&scratch, (*amount).max(1), *memo_len) {
                    for event in produced {
                        scratch.apply(&event);
                        events.push(event);
                    }
                }
            }
            Ok(events)
        }
        _ => deposit(state, 1, 0),
    };
    let events = match handled {
        Ok(events) if !events.is_empty() => events,
        _ => deposit(state, 1, 0).unwrap_or_default(),
    };
    events.into_iter().map(of).collect()
}

/// The reader: reads streams and the whole log, checking each read.
pub async fn reader(ctx: &Ctx, client_id: u64, ops: Vec<ReaderOp>) {
    let client = StoreClient::bind(ctx.store, CALL_TIMEOUT).expect("a client binds a port");
    for op in ops {
        time::sleep(Duration::from_millis(op.think_ms.max(1))).await;
        let result = match op.read {
            ReaderRead::Stream { stream } => {
                let stream = super::any_stream(stream);
                ctx.read_stream(&client, client_id, &stream)
                    .await
                    .map(|_| ())
            }
            ReaderRead::All { from_position } => read_all(ctx, &client, from_position).await,
        };
        if !ctx.report(result) {
            return;
        }
    }
}

async fn read_all(ctx: &Ctx, client: &StoreClient, from_position: u64) -> Checked {
    let invoked = true_ns();
    if let Ok(Ok(events)) = client.read_all(from_position, READ_COUNT_MAX).await {
        let kind = ReadKind::All { from_position };
        ctx.observe(kind, &events, invoked, true_ns())?;
    }
    Ok(())
}

/// The subscriber: follows the log from position 0, resubscribing from its cursor when it
/// sees a gap (a lost push) or hears nothing for a while; stops when told.
pub async fn subscriber(ctx: &Ctx) {
    let client = StoreClient::bind(ctx.store, CALL_TIMEOUT).expect("a client binds a port");
    while !ctx.stop.get() {
        let next = ctx.subscribed.borrow().len() as u64;
        let _ = client.subscribe(next).await;
        while !ctx.stop.get() {
            let Some(push) = client.next_push(SUBSCRIBER_IDLE).await else {
                break;
            };
            let now = true_ns();
            if !ctx.report(ctx.observe(ReadKind::Push, &push.events, now, now)) {
                return;
            }
            if !take(ctx, push.events) {
                break;
            }
        }
    }
}

/// Adds pushed events to the subscriber's log; false on a gap.
fn take(ctx: &Ctx, events: Vec<RecordedEvent>) -> bool {
    let mut log = ctx.subscribed.borrow_mut();
    for event in events {
        let next = log.len() as u64;
        if event.position > next {
            return false;
        }
        if event.position == next {
            log.push(event);
        }
    }
    true
}
