//! The command side: a node that handles [`BankCommand`]s against the event store.
//!
//! A command is handled statelessly: the node loads the account's stream from the store,
//! looks for events the same command id already left there (a retry: it answers with their
//! position and writes nothing), validates the command against the folded state
//! ([`AccountState::decide`], pure), and appends the resulting event with the stream's
//! version as the expected version. A concurrent writer makes the append fail with a version
//! conflict: it loads again and decides again, up to [`CommandNodeConfig::conflicts_max`]
//! times. A transfer is two appends: the debit on the source (validated) and then the credit
//! on the target (never refused), each found again on a retry, so a transfer retried after
//! any failure completes exactly once.
//!
//! The answer carries a *consistency token*: the global position of the command's last
//! event. A query that passes it gets a view that includes the command, or is told the view
//! is stale ([`crate::cqrs::view_node`]).
//!
//! A transfer whose handler stopped between the debit and the credit (a crash, a store that
//! stopped answering) and whose client gave up is finished by the node's *transfer
//! completer*, a process manager that follows the log and credits every debit left without
//! its credit.
//!
//! Requests are handled concurrently, each in its own task. Between requests the node keeps
//! only a cache of folded account states, so that a load reads just the events appended since
//! (a stream only grows: the store serves nothing a crash could take back); the cache is lost
//! with the node and rebuilt from the store, so a crash loses nothing but the answers in
//! flight.

use crate::cqrs::bank::BankEventBody;
use crate::cqrs::bank::{
    account_of, event_id, stream_of, AccountState, BankCommand, BankError, BankEvent,
};
use crate::cqrs::execution::{Appended, Execution, Need, Step};
use crate::cqrs::mutant::{Mutant, Mutants};
use crate::event_sourcing::driver::{CallError, StoreClient};
use crate::event_sourcing::event::{AppendError, AppendRequest, ExpectedVersion};
use serde::{Deserialize, Serialize};
use sim_core::net::{Addr, NetError, Request, Socket};
use sim_core::time;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// The port a command node listens on by default.
pub const COMMAND_PORT: u16 = 11;
/// Most events a stream read returns; a longer stream is read in several calls.
const STREAM_PAGE: u64 = 1024;
/// Most account states the node keeps folded between requests; past it the cache starts over.
const CACHED_ACCOUNTS_MAX: usize = 4096;

/// A debit the transfer completer waits on: (from, to, amount, the round it was first seen,
/// the transfer's principal).
type Debit = (String, String, u64, u64, Option<String>);

/// A command, named by a client-chosen id that makes it idempotent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRequest {
    /// Unique per command; a retry of the command reuses it.
    pub command_id: u64,
    /// The command.
    pub command: BankCommand,
    /// Who asks (for example the principal an API gateway authenticated), if known: kept
    /// in the events' metadata.
    pub principal: Option<String>,
}

/// A command node's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Done (now or by an earlier attempt): the global position of its last event, the
    /// consistency token.
    Done {
        /// The consistency token.
        token: u64,
    },
    /// Refused: nothing was written.
    Refused(BankError),
    /// The store did not answer or refused: the command may have been applied in part or in
    /// whole. Retry it with the same id.
    Unavailable(String),
}

/// Settings of a command node.
#[derive(Clone, Debug)]
pub struct CommandNodeConfig {
    /// The event store node.
    pub store: Addr,
    /// The port to listen on.
    pub port: u16,
    /// The timeout of each call to the store.
    pub store_timeout: Duration,
    /// How often the transfer completer reads the log for debits left without their credit.
    pub complete_every: Duration,
    /// Version conflicts tolerated per command before it is answered unavailable.
    pub conflicts_max: u32,
    /// The deliberately broken variants switched on (none in production).
    pub mutants: Mutants,
}

impl CommandNodeConfig {
    /// The defaults, for the store at `store`.
    pub fn new(store: Addr) -> Self {
        CommandNodeConfig {
            store,
            port: COMMAND_PORT,
            store_timeout: Duration::from_millis(200),
            complete_every: Duration::from_millis(250),
            conflicts_max: 8,
            mutants: Mutants::none(),
        }
    }
}

/// The command node's program: serve commands until the socket closes.
pub async fn run_command_node(config: CommandNodeConfig) {
    let socket = match Socket::bind(config.port) {
        Ok(socket) => Rc::new(socket),
        Err(error) => return warn!("the command node cannot bind port {}: {error}", config.port),
    };
    let store = match StoreClient::bind(config.store, config.store_timeout) {
        Ok(store) => Rc::new(store),
        Err(error) => return warn!("the command node cannot bind a store client: {error}"),
    };
    let handler = Rc::new(Handler {
        store,
        config,
        attempts: Cell::new(0),
        accounts: RefCell::default(),
    });
    let completer = handler.clone();
    sim_core::task::spawn(async move { completer.complete_transfers().await });
    loop {
        match socket.recv_request::<CommandRequest>().await {
            Ok((request, body)) => {
                let socket = socket.clone();
                let handler = handler.clone();
                sim_core::task::spawn(async move { handler.serve(&socket, request, body).await });
            }
            Err(NetError::Decode { from, message }) => {
                debug!("an undecodable request from {from}: {message}");
            }
            Err(_) => return,
        }
    }
}

struct Handler {
    store: Rc<StoreClient>,
    config: CommandNodeConfig,
    /// Attempts made by this incarnation (for the mutant's fresh event ids).
    attempts: Cell<u64>,
    /// Per account, the furthest state a load folded (at most [`CACHED_ACCOUNTS_MAX`]).
    accounts: RefCell<BTreeMap<String, AccountState>>,
}

/// Why an attempt ended without a definite answer.
enum Attempt {
    Conflict,
    Unavailable(String),
}

impl From<CallError> for Attempt {
    fn from(error: CallError) -> Self {
        Attempt::Unavailable(error.to_string())
    }
}

impl Handler {
    async fn serve(&self, socket: &Socket, request: Request, body: CommandRequest) {
        let response = self.execute(&body).await;
        match &response {
            CommandResponse::Done { token } => {
                debug!("command {} done at {token}", body.command_id)
            }
            CommandResponse::Refused(error) => {
                debug!("command {} refused: {error}", body.command_id)
            }
            CommandResponse::Unavailable(why) => {
                info!("command {} unavailable: {why}", body.command_id)
            }
        }
        let _ = socket.reply(request, &response);
    }

    async fn execute(&self, request: &CommandRequest) -> CommandResponse {
        for _ in 0..=self.config.conflicts_max {
            match self.attempt(request).await {
                Ok(Some(response)) => return response,
                Ok(None) => continue,
                Err(Attempt::Conflict) => continue,
                Err(Attempt::Unavailable(why)) => return CommandResponse::Unavailable(why),
            }
        }
        CommandResponse::Unavailable(format!(
            "{} version conflicts in a row",
            self.config.conflicts_max + 1
        ))
    }

    /// One attempt: performs what the [`Execution`] asks; `None` when it must start over.
    async fn attempt(&self, request: &CommandRequest) -> Result<Option<CommandResponse>, Attempt> {
        let (mut execution, mut need) = Execution::start(
            request.command_id,
            request.command.clone(),
            self.config.mutants.clone(),
        );
        loop {
            let step = match need {
                Need::Load(account) => execution.on_loaded(self.load(&account).await?),
                Need::Append {
                    account,
                    index,
                    body,
                    expected,
                } => {
                    let appended = match self
                        .append(
                            &account,
                            request.command_id,
                            request.principal.as_deref(),
                            index,
                            body,
                            expected,
                        )
                        .await
                    {
                        Ok(position) => Appended::At(position),
                        Err(Attempt::Conflict) => Appended::Conflict,
                        Err(other) => return Err(other),
                    };
                    execution.on_appended(appended)
                }
            };
            need = match step {
                Step::Need(next) => next,
                Step::Done(token) => return Ok(Some(CommandResponse::Done { token })),
                Step::Refused(error) => return Ok(Some(CommandResponse::Refused(error))),
                Step::StartOver => return Ok(None),
            };
        }
    }

    /// Deduplication by command id is on (it is off only under a mutant).
    fn deduplicates(&self) -> bool {
        !self
            .config
            .mutants
            .contains(Mutant::RetriedCommandNotDeduplicated)
    }

    /// The transfer completer: a process manager that follows the log and credits every
    /// debit whose credit is missing (its handler crashed, or the store stopped answering,
    /// between the two appends, and the client gave up). The credit's event id makes it
    /// idempotent with the handler's own. It waits one round before it acts on a debit, so
    /// that the handler usually gets there first. Its cursor and its pending debits live in
    /// memory: after a restart it reads the log again from the start.
    async fn complete_transfers(&self) {
        let mut cursor = 0u64;
        // Debits without a credit yet: command id -> (from, to, amount, round first seen,
        // the principal the transfer came with).
        let mut pending: BTreeMap<u64, Debit> = BTreeMap::new();
        let mut credited: BTreeSet<u64> = BTreeSet::new();
        let mut round = 0u64;
        loop {
            time::sleep(self.config.complete_every).await;
            round += 1;
            // Read what is new.
            loop {
                let page = match self.store.read_all(cursor, STREAM_PAGE).await {
                    Ok(Ok(page)) => page,
                    _ => break,
                };
                for event in &page {
                    cursor = event.position + 1;
                    let (Ok(Some(decoded)), Some(account)) =
                        (BankEvent::decode(event), account_of(&event.stream))
                    else {
                        continue;
                    };
                    match decoded.body {
                        BankEventBody::Debited { amount, to }
                            if !credited.contains(&decoded.command_id) =>
                        {
                            pending.insert(
                                decoded.command_id,
                                (account.to_owned(), to, amount, round, decoded.principal),
                            );
                        }
                        BankEventBody::Credited { .. } => {
                            credited.insert(decoded.command_id);
                            pending.remove(&decoded.command_id);
                        }
                        _ => {}
                    }
                }
                if (page.len() as u64) < STREAM_PAGE {
                    break;
                }
            }
            let due: Vec<(u64, Debit)> = pending
                .iter()
                .filter(|(_, (_, _, _, seen, _))| *seen < round)
                .map(|(command_id, debit)| (*command_id, debit.clone()))
                .collect();
            for (command_id, (from, to, amount, _, principal)) in due {
                let credit = BankEventBody::Credited { amount, from };
                // The bug of `completer-fresh-event-id`: the completer names its credit afresh
                // (a random UUID, say), so the store cannot recognise another's.
                let fresh = !self.deduplicates()
                    || self.config.mutants.contains(Mutant::CompleterFreshEventId);
                // The credit carries the transfer's principal, as the handler's own would.
                let result = self
                    .append_named(
                        &to,
                        command_id,
                        principal.as_deref(),
                        (1, credit),
                        ExpectedVersion::Any,
                        fresh,
                    )
                    .await;
                match result {
                    Ok(position) => {
                        info!("completed transfer {command_id:#x}: credited at {position}");
                        pending.remove(&command_id);
                    }
                    Err(_) => debug!("crediting transfer {command_id:#x} failed; again next round"),
                }
            }
        }
    }

    /// Loads an account's state: the cached one, folded further with the events appended
    /// since. Reading the whole stream and decoding every event again, for every command,
    /// made the command side quadratic in a stream's length (measured: the largest part of its
    /// work in long runs).
    async fn load(&self, account: &str) -> Result<AccountState, Attempt> {
        let stream = stream_of(account);
        let mut state = self
            .accounts
            .borrow()
            .get(account)
            .cloned()
            .unwrap_or_default();
        loop {
            let from = state.events_folded();
            let page = match self.store.read_stream(&stream, from, STREAM_PAGE).await? {
                Ok(page) => page,
                Err(error) => return Err(Attempt::Unavailable(error.to_string())),
            };
            if from > 0 && page.first().is_some_and(|event| event.version != from) {
                // Not the continuation of what was folded: trust nothing cached, start over.
                warn!(
                    "stream {stream} went on at version {} after {from}: reloading it",
                    page[0].version
                );
                self.accounts.borrow_mut().remove(account);
                state = AccountState::default();
                continue;
            }
            let short = (page.len() as u64) < STREAM_PAGE;
            state.fold(&page);
            if short {
                break;
            }
        }
        let mut cached = self.accounts.borrow_mut();
        if cached.len() >= CACHED_ACCOUNTS_MAX && !cached.contains_key(account) {
            cached.clear();
        }
        // Loads run concurrently and may end out of order: keep the furthest.
        let further = cached
            .get(account)
            .is_none_or(|old| old.events_folded() < state.events_folded());
        if further {
            cached.insert(account.to_string(), state.clone());
        }
        Ok(state)
    }

    /// Appends one event; the token is its global position.
    async fn append(
        &self,
        account: &str,
        command_id: u64,
        principal: Option<&str>,
        index: u8,
        body: BankEventBody,
        expected: ExpectedVersion,
    ) -> Result<u64, Attempt> {
        let fresh = !self.deduplicates();
        self.append_named(
            account,
            command_id,
            principal,
            (index, body),
            expected,
            fresh,
        )
        .await
    }

    /// Appends event `index` of a command, named by the command (or afresh, under a mutant).
    async fn append_named(
        &self,
        account: &str,
        command_id: u64,
        principal: Option<&str>,
        (index, body): (u8, BankEventBody),
        expected: ExpectedVersion,
        fresh: bool,
    ) -> Result<u64, Attempt> {
        let mut id = event_id(command_id, index);
        if fresh {
            // The bug: an id made fresh per attempt (a random UUID, say), so the store cannot
            // recognise a retry either.
            self.attempts.set(self.attempts.get() + 1);
            id.0 |= u128::from(self.attempts.get()) << 72;
        }
        let event = BankEvent {
            command_id,
            principal: principal.map(str::to_owned),
            body,
        };
        let append = AppendRequest {
            stream: stream_of(account),
            expected,
            events: vec![event.to_data(id)],
        };
        match self.store.append(&append).await? {
            Ok(appended) => Ok(appended.last_position),
            Err(AppendError::WrongExpectedVersion { .. }) => Err(Attempt::Conflict),
            Err(error) => Err(Attempt::Unavailable(error.to_string())),
        }
    }
}
