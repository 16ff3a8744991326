//! The `e2e` scenario: the five patterns as one system, as the seed document draws them.
//! Clients send HTTP/1.1 requests with signed tokens to two API gateway replicas
//! ([`patterns::gateway`]: authentication, rate limits, translation, retries, a circuit
//! breaker and outlier ejection per upstream instance); the gateways find the backend
//! instances through a two-replica service registry ([`patterns::discovery`]); the
//! `accounts` instances handle bank commands on the event-sourced write side
//! ([`patterns::cqrs::command`] over [`patterns::event_sourcing`]'s store); the `ledger`
//! instances answer queries from read models projected from the log
//! ([`patterns::cqrs::view_node`]), and the answers travel back through the gateways.
//!
//! Each backend instance runs the pattern's node and, beside it on the same node, a thin
//! adapter on the port the gateways call: it translates the gateway's request into the
//! node's typed request (the `Idempotency-Key` becomes the command id, the `at` query
//! parameter the consistency token) and the answer back into JSON. The token a command's
//! answer carries is the position just past its last event.
//!
//! ## The checks (from the clients' records and the final log, with code of their own:
//! the fold and the conservation rule of [`crate::cqrs::oracle`], which never call the
//! pattern's code)
//! - `command-once` (always): whatever the retries on the way (the client's, the gateway's,
//!   the command handler's), the log holds at most one event batch per client command: every
//!   event carries the id of a command a client sent, no id has two events of one kind, and
//!   for each content (kind, account, amount, owner or counterpart) there are no more events
//!   than clients sent such commands.
//! - `acked-durable` (always): every command a client was told is done has its events in
//!   the final log, by its id and by its content.
//! - `principal-recorded` (always): every event of a client's command (by its id) carries in
//!   its metadata the principal of the client that sent it, whatever identity the body
//!   claims.
//! - `read-your-writes` (always): an answer is to the query asked and equals the fold of the
//!   final log up to its position; one that says it is fresh is at or past the token passed
//!   and has folded every event of the commands acknowledged to its reader before it asked
//!   (where they are is read from the final log, by command id).
//! - `rebuild-equals-live` (always, after heal): each ledger's read model, rebuilt from the
//!   log by an operator, answers what its live model answered at the same position.
//! - `conservation` (always): every answer keeps the domain's rule (no balance below zero;
//!   balances + in transit = deposited - withdrawn), judged on the answer alone.
//! - `retries-bounded` (always): on the network, no layer multiplies a command's tries
//!   beyond its allowance: a client sends it at most `CLIENT_TRIES` times, a gateway sends at
//!   most 1 + `retries_max` attempts per copy of a request it received, an adapter one command
//!   call per copy of an attempt it received (retries at every layer multiply).
//! - `breaker-respected` (always): no attempt leaves a gateway for an instance while that
//!   gateway's breaker for it is open: the states as the gateway reported them (an instance
//!   newly listed, or a restart, starts closed), the attempts as the network carried them. The
//!   gateways' breakers are sized for this system (6 calls, half failed, open 400 ms), so
//!   they do open (`breaker-opened`, sometimes).
//! - `visible-after-heal` (eventually, 4 s): through every gateway, and from every ledger's
//!   view node asked directly, a fresh answer at the end of the log: what is durable becomes
//!   visible in every read model.
//! - `listed-after-heal` (eventually, 4 s): a registry replica lists every `accounts` and
//!   `ledger` instance as up (an instance that restarted registered again).
//! - sometimes: `client-retried` (a command's outcome was unknown and the client sent it
//!   again), `gateway-retried` (a gateway tried an attempt again), `answered-stale` (a
//!   ledger said it was behind the client's token), `breaker-opened`.

use crate::cqrs::oracle::{self as bank_oracle, Fold};
use crate::cqrs::read_log;
use crate::gateway::{build_registries, stay_registered};
use harness::{
    Checked, Env, FaultBudget, FaultKind, Invariant, MutantSpec, Observer, Scenario, ScenarioSpec,
};
use patterns::circuit_breaker::{Config as BreakerConfig, OpenWait, State as BreakerState, Window};
use patterns::cqrs::bank::BankCommand;
use patterns::cqrs::command::{
    run_command_node, CommandNodeConfig, CommandRequest, CommandResponse, COMMAND_PORT,
};
use patterns::cqrs::view::{BankView, Query, QueryBody};
use patterns::cqrs::view_node::{
    run_view_node, Answer, ViewEvent, ViewHook, ViewNodeConfig, ViewRequest, ViewResponse,
    VIEW_PORT,
};
use patterns::discovery::driver::{RegistryRequest, RegistryResponse};
use patterns::discovery::{Key, Status};
use patterns::event_sourcing::driver::{run_node, NodeConfig, NodeEvent, NodeHook, STORE_PORT};
use patterns::event_sourcing::event::RecordedEvent;
use patterns::gateway::auth::{sign, AuthConfig, Claims, KeyRing};
use patterns::gateway::driver::{
    run_gateway, ExternalAnswer, ExternalCall, GatewayConfig, GatewayEvent, GatewayHook,
    GATEWAY_PORT,
};
use patterns::gateway::http::{parse_response, BackendRequest, BackendResponse, Limits};
use patterns::gateway::limit::LimitConfig;
use patterns::gateway::mutant::{Mutant as GatewayMutant, Mutants as GatewayMutants};
use patterns::gateway::route::{Access, HostMatch, PathMatch, Route};
use patterns::gateway::upstream::UpstreamConfig;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use sim_core::disk::{DiskConfig, DiskFaults, Latency};
use sim_core::net::{Addr, MessageKind, NetControl, NetTap, RpcError, Socket, TapEvent, Tapped};
use sim_core::time::WALL_EPOCH_UNIX_S;
use sim_core::{time, NodeId, SimConfig};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

const REGISTRIES: [&str; 2] = ["registry-1", "registry-2"];
const STORE: &str = "store";
/// Principals of the clients, in order; a client past the list is `user<N>`.
const PRINCIPALS: [&str; 6] = ["ann", "ben", "cat", "dan", "eve", "fay"];

/// How many nodes of each kind the system has (the registry has two replicas and the event
/// store one node, always).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Gateway replicas (`gateway-1`...), 1 to 8.
    pub gateways: usize,
    /// Write-side instances (`accounts-1`...), 1 to 8.
    pub accounts: usize,
    /// Read-side instances (`ledger-1`...), 1 to 8.
    pub ledgers: usize,
    /// Clients (`client-1`...), each with its own principal and account, 1 to 26.
    pub clients: usize,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            gateways: 2,
            accounts: 2,
            ledgers: 2,
            clients: 3,
        }
    }
}

impl Topology {
    fn names(prefix: &str, count: usize) -> Vec<String> {
        (1..=count).map(|i| format!("{prefix}-{i}")).collect()
    }
    fn gateways(&self) -> Vec<String> {
        Self::names("gateway", self.gateways)
    }
    fn accounts(&self) -> Vec<String> {
        Self::names("accounts", self.accounts)
    }
    fn ledgers(&self) -> Vec<String> {
        Self::names("ledger", self.ledgers)
    }
    fn clients(&self) -> Vec<String> {
        Self::names("client", self.clients)
    }
    /// Checks the counts.
    pub fn validate(&self) -> Result<(), String> {
        let within = |what: &str, n: usize, max: usize| {
            if (1..=max).contains(&n) {
                Ok(())
            } else {
                Err(format!("{what}: {n}, not in 1..={max}"))
            }
        };
        within("gateways", self.gateways, 8)?;
        within("accounts instances", self.accounts, 8)?;
        within("ledger instances", self.ledgers, 8)?;
        within("clients", self.clients, 26)
    }
}

/// Client `index`'s principal.
fn principal_of(index: usize) -> String {
    PRINCIPALS
        .get(index)
        .map_or_else(|| format!("user{}", index + 1), |p| p.to_string())
}

/// Client `index`'s bank account (`a`, `b`, ...).
fn account_of_client(index: usize) -> String {
    char::from(b'a' + (index % 26) as u8).to_string()
}

/// A gateway tries a request at most this many times more (the gateways' `retries_max`).
const GATEWAY_RETRIES_MAX: u32 = 2;
/// Most message events the scenario's network tap keeps (a run sends a few thousand).
const TAP_CAPACITY: usize = 200_000;
/// The port the adapters listen on (the address registered in discovery).
const BACKEND_PORT: u16 = 14;
const SIGNING_KEY: (&str, &[u8]) = ("k1", b"e2e signing secret");
/// Tokens live long enough that honest clients never refresh within a run.
const TOKEN_LIFE_S: u64 = 600;
/// A client waits this long for a gateway's answer.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(900);
/// A client sends a command at most this many times while its outcome is unknown.
const CLIENT_TRIES: usize = 4;
/// How long the accounts adapter waits for its command node: less than the node's own store
/// timeout (200 ms), so a stalled write side gets a 503 the gateway can retry elsewhere
/// (with the same key, so at most once).
const COMMAND_TIMEOUT: Duration = Duration::from_millis(150);
/// How long a ledger may wait for its model to reach the asked position (short: a client
/// that reads right after its write often hears that the read side is behind).
const QUERY_WAIT: Duration = Duration::from_millis(40);
/// Under a mutant only: how long the accounts (or ledger) adapter keeps an answer for a
/// gateway's retry of the same request (twice the gateways' route timeout).
const REPLAY_KEEP: Duration = Duration::from_millis(1_600);

static COMMAND_ONCE: Invariant = Invariant::always(
    "command-once",
    "the log holds at most one event batch per client command, whatever the retries on the way",
);
static ACKED_DURABLE: Invariant = Invariant::always(
    "acked-durable",
    "every command a client was told is done has its events in the final log",
);
static PRINCIPAL_RECORDED: Invariant = Invariant::always(
    "principal-recorded",
    "every event of a client's command carries, as its metadata, the principal of the client that sent it",
);
static READ_YOUR_WRITES: Invariant = Invariant::always(
    "read-your-writes",
    "an answer is to the query asked and equals the fold of the log up to its position; a fresh one is at or past the token passed and has folded every command acknowledged to its reader",
);
static REBUILD_EQUALS_LIVE: Invariant = Invariant::always(
    "rebuild-equals-live",
    "a ledger's read model rebuilt from the log answers exactly what its live model answered at the same position",
);
static CONSERVATION: Invariant = Invariant::always(
    "conservation",
    "every answer keeps the rule: no balance below zero; balances + in transit = deposited - withdrawn",
);
static VISIBLE_AFTER_HEAL: Invariant = Invariant::eventually(
    "visible-after-heal",
    "within 4 s of healing every gateway, and every ledger's view node asked directly, gives a fresh answer at the end of the log",
    Duration::from_secs(4),
);
static LISTED_AFTER_HEAL: Invariant = Invariant::eventually(
    "listed-after-heal",
    "within 4 s of healing (after the read side is visible) discovery lists every accounts and ledger instance as up",
    Duration::from_secs(4),
);
static RETRIES_BOUNDED: Invariant = Invariant::always(
    "retries-bounded",
    "no layer multiplies a command's tries beyond its own allowance: a gateway sends at most 1 + retries_max attempts per copy of a client request it received, an adapter at most one command call per copy of an attempt it received (counted on the network)",
);
static BREAKER_RESPECTED: Invariant = Invariant::always(
    "breaker-respected",
    "no attempt leaves a gateway for an instance while that gateway's breaker for it is open (states as the gateway reported them, attempts as the network carried them)",
);
static BREAKER_OPENED: Invariant = Invariant::sometimes(
    "breaker-opened",
    "a gateway's breaker for an instance opened (so breaker-respected had something to judge)",
);
static CLIENT_RETRIED: Invariant = Invariant::sometimes(
    "client-retried",
    "a command's outcome was unknown and the client sent it again",
);
static GATEWAY_RETRIED: Invariant = Invariant::sometimes(
    "gateway-retried",
    "a gateway sent a request's attempt again, to another instance or the same",
);
static ANSWERED_STALE: Invariant =
    Invariant::sometimes("answered-stale", "a ledger answered that it was behind");

/// The scenario's own mutants: bugs in the glue between the patterns, which no pattern's
/// own scenario can show.
const ADAPTER_KEYS_BY_REQUEST: &str = "adapter-keys-by-request";
const LEDGER_DROPS_TOKEN: &str = "ledger-drops-token";
const PRINCIPAL_FROM_BODY: &str = "principal-from-body";
const ADAPTER_ACKS_ON_TIMEOUT: &str = "adapter-acks-on-timeout";
const LEDGER_SERVES_STALE_ON_ERROR: &str = "ledger-serves-stale-on-error";
const LEDGER_SKIPS_REREGISTRATION: &str = "ledger-skips-reregistration";
const ADAPTER_RETRIES_COMMANDS: &str = "adapter-retries-commands";
/// The gateway's own mutant, which only this scenario judges (the gateway scenario does not
/// judge breakers).
const RETRIES_BYPASS_BREAKER: &str = "retries-bypass-breaker";
const LEDGER_VIEW_NOT_RESTARTED: &str = "ledger-view-not-restarted";
const ADAPTER_REPLAYS_BY_REQUEST_ID: &str = "adapter-replays-by-request-id";
const LEDGER_ANSWERS_WHILE_OPENING: &str = "ledger-answers-while-opening";
const LEDGER_REPLAYS_BY_REQUEST_ID: &str = "ledger-replays-by-request-id";

/// The adapters' deliberately broken variants switched on (none by default).
#[derive(Clone, Copy, Debug, Default)]
struct Glue {
    keys_by_request: bool,
    drops_token: bool,
    principal_from_body: bool,
    acks_on_timeout: bool,
    retries_commands: bool,
    retries_bypass_breaker: bool,
    serves_stale_on_error: bool,
    skips_reregistration: bool,
    view_not_restarted: bool,
    replays_by_request_id: bool,
    answers_while_opening: bool,
    ledger_replays_by_request_id: bool,
}

impl Glue {
    fn of(env: &Env) -> Glue {
        Glue {
            keys_by_request: env.is_mutant(ADAPTER_KEYS_BY_REQUEST),
            drops_token: env.is_mutant(LEDGER_DROPS_TOKEN),
            principal_from_body: env.is_mutant(PRINCIPAL_FROM_BODY),
            acks_on_timeout: env.is_mutant(ADAPTER_ACKS_ON_TIMEOUT),
            retries_commands: env.is_mutant(ADAPTER_RETRIES_COMMANDS),
            retries_bypass_breaker: env.is_mutant(RETRIES_BYPASS_BREAKER),
            serves_stale_on_error: env.is_mutant(LEDGER_SERVES_STALE_ON_ERROR),
            skips_reregistration: env.is_mutant(LEDGER_SKIPS_REREGISTRATION),
            view_not_restarted: env.is_mutant(LEDGER_VIEW_NOT_RESTARTED),
            replays_by_request_id: env.is_mutant(ADAPTER_REPLAYS_BY_REQUEST_ID),
            answers_while_opening: env.is_mutant(LEDGER_ANSWERS_WHILE_OPENING),
            ledger_replays_by_request_id: env.is_mutant(LEDGER_REPLAYS_BY_REQUEST_ID),
        }
    }
}

fn mutants() -> Vec<MutantSpec> {
    vec![
        MutantSpec::new(
            ADAPTER_KEYS_BY_REQUEST,
            "the accounts adapter makes the command id from the gateway's request id, not the client's Idempotency-Key (an adapter that drops the idempotency key, productdevbook/kasapay#165): events carry ids no client sent, and a client's retry of a command that was applied is applied again",
        )
        .breaks("command-once"),
        MutantSpec::new(
            PRINCIPAL_FROM_BODY,
            "the accounts adapter takes the principal from the body's on_behalf_of when there is one, not the gateway's authenticated principal (a backend trusting a client-supplied identity behind the gateway, the class of Envoy's x-forwarded-* trust issues)",
        )
        .breaks("principal-recorded"),
        MutantSpec::new(
            ADAPTER_ACKS_ON_TIMEOUT,
            "the accounts adapter answers 200 when its command node does not answer in time (\"accepted\"), though the command may never be applied; shows when the write side is slow or down",
        )
        .breaks("acked-durable"),
        MutantSpec::new(
            LEDGER_SERVES_STALE_ON_ERROR,
            "the ledger adapter keeps its last answer to each query and serves it, as fresh, when its view node fails (nginx proxy_cache_use_stale without saying so); shows when a view node is down or recovering",
        )
        .breaks("read-your-writes"),
        MutantSpec::new(
            LEDGER_SKIPS_REREGISTRATION,
            "a ledger instance registers in discovery when it first starts but not after a restart (the registration done once at deploy time); its lease runs out and, once every ledger has restarted, the read side is gone for good; shows when a ledger restarts",
        )
        .breaks("listed-after-heal"),
        MutantSpec::new(
            ADAPTER_RETRIES_COMMANDS,
            "the accounts adapter retries its command node, up to three times more, when it answers unavailable or not in time, under gateways that already retry (retries at every layer multiply: Google SRE book, \"Addressing Cascading Failures\"; AWS Builders' Library, \"Timeouts, retries, and backoff with jitter\"): a struggling write side gets up to twelve calls per client try; shows when the write side is slow or down",
        )
        .breaks("retries-bounded"),
        MutantSpec::new(
            RETRIES_BYPASS_BREAKER,
            "the gateways' retries do not ask the instance's breaker, as when the retry policy wraps the breaker the wrong way round (Polly's PolicyWrap order, App-vNext/Polly#1012): an instance whose breaker is open keeps getting retries; the gateway pattern's own mutant, which only the composed system judges; shows when instances fail",
        )
        .breaks("breaker-respected"),
        MutantSpec::new(
            LEDGER_DROPS_TOKEN,
            "the ledger adapter drops the consistency token (the query string) when it translates (agentgateway/agentgateway#1514, BackendStack21/fast-gateway#47): a read-model answer behind the client's own write says it is fresh",
        )
        .breaks("read-your-writes"),
        MutantSpec::new(
            LEDGER_VIEW_NOT_RESTARTED,
            "after a ledger node restarts, its adapter starts and registers again but its view node does not (a process the deploy script started once, outside the node's init: Rancher's start_once sidekicks, rancher/rancher#2156; EventStore projections stuck after a killed node came back, kurrent-io/KurrentDB#1349): its queries fail from then on, hidden behind a healthy ledger by the gateways' breakers and ejection; shows when a ledger restarts",
        )
        .breaks("visible-after-heal"),
        MutantSpec::new(
            ADAPTER_REPLAYS_BY_REQUEST_ID,
            "the accounts adapter keeps its answers for 1.6 s by the gateway's request id, to answer a gateway's retry without another command call; but a gateway numbers its requests with a counter that starts over when it restarts (per-process request ids taken as unique: wallarm/api-firewall#80, Cjen1/OCons#18), so a restarted gateway's new command is answered with an old one's 200 and never applied; shows when a gateway restarts early in a run",
        )
        .breaks("acked-durable")
        // Only a gateway that restarts within 1.6 s of its first requests, so that its new
        // request ids meet kept answers, shows it: first caught at seed 145 (`dst run e2e
        // --mutant adapter-replays-by-request-id --seeds 500`; plan: a crash of gateway-2 at
        // 815 ms), never by 1000 fault-free seeds.
        .hard(),
        MutantSpec::new(
            LEDGER_ANSWERS_WHILE_OPENING,
            "until its view node first answers after a start, the ledger adapter takes a model still opening (Recovering) for an empty one and answers it, position 0, as fresh (a read model served before it is ready: reimagined/resolve#833; the empty state of KurrentDB projections, kurrent-io/KurrentDB#1953): a client's read after its own write sees nothing; shows in the few milliseconds after a ledger restarts",
        )
        .breaks("read-your-writes")
        // Only a query in the milliseconds between a ledger's restart and its view node's
        // opening shows it: first caught at seed 419 (`dst run e2e --mutant
        // ledger-answers-while-opening --seeds 500`; plan: a 340 ms crash of ledger-2), never
        // by 1000 fault-free seeds.
        .hard(),
        MutantSpec::new(
            LEDGER_REPLAYS_BY_REQUEST_ID,
            "the ledger adapter keeps its answers for 1.6 s by the gateway's request id alone, to answer a gateway's retry of a query without asking its view node again; but the id is not bound to the query, and a gateway numbers its requests with a counter that starts over when it restarts (an X-Request-Id cache replaying another request's response: ArcadeData/arcadedb#5023; per-process request ids taken as unique: wallarm/api-firewall#80), so a restarted gateway's new query is answered with an old one's answer, to another query or behind the reader's token; shows when a gateway restarts early in a run",
        )
        .breaks("read-your-writes")
        // Only a gateway that restarts within 1.6 s of its first requests, so that its new
        // query ids meet kept answers of other queries, shows it: first caught at seed 145
        // (`dst run e2e --mutant ledger-replays-by-request-id --seeds 500`; plan: a crash of
        // gateway-1 at 798 ms), never by 1000 fault-free seeds.
        .hard(),
    ]
}

/// One operation of a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)] // Accounts are client indexes (the client's account); amounts in cents.
pub enum Op {
    /// Deposit into an account.
    Deposit { account: u8, amount: u64 },
    /// Withdraw from an account.
    Withdraw { account: u8, amount: u64 },
    /// Transfer between accounts.
    Transfer { from: u8, to: u8, amount: u64 },
    /// Read one account's balance.
    Balance { account: u8 },
    /// Read the totals.
    Totals,
}

/// One call of a client: think, then send `op` to a gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The pause before it.
    pub think_ms: u64,
    /// The gateway it goes to first (index).
    pub gateway: u8,
    /// What it does.
    pub op: Op,
    /// A command's body also names another client (by index) as the one it is on behalf of:
    /// a claim the system must ignore (the principal is the authenticated one).
    pub on_behalf_of: Option<u8>,
}

/// What the clients do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// Per client, in order (each first opens its account).
    pub clients: Vec<Vec<Call>>,
}

/// A command's content, as the oracle compares it with the log's events.
type Content = (String, String, u64, String);

/// What the clients saw.
#[derive(Default)]
struct Records {
    /// Every command sent (once per command, however many tries): its id, the principal of
    /// the client that sent it, its content(s).
    sent: Vec<(u64, String, Vec<Content>)>,
    /// Commands acknowledged as done: (command id, contents).
    acked: Vec<(u64, Vec<Content>)>,
    /// Answers read.
    answers: Vec<Seen>,
}

/// One read-model answer as its reader saw it.
#[derive(Clone, Debug)]
struct Seen {
    /// Who read it: a client's principal, `probe` or `operator`.
    reader: String,
    /// The query the reader asked (the answer echoes one; they must agree).
    asked_query: Query,
    /// The consistency token the reader passed.
    asked: u64,
    /// The commands acknowledged to the reader before it asked.
    acked_before: Vec<u64>,
    /// The answer.
    answer: Answered,
}

/// A read-model answer as a client read it from JSON.
#[derive(Clone, Debug, Deserialize)]
struct Answered {
    position: u64,
    fresh: bool,
    query: Query,
    body: QueryBody,
}

/// What `setup` built.
pub struct System {
    /// The registry replicas' addresses.
    registries: Vec<Addr>,
    gateways: Vec<NodeId>,
    /// The ledgers' view nodes (an operator's direct access, for rebuilds).
    views: Vec<Addr>,
    clients: Vec<NodeId>,
    store: Addr,
    records: Rc<RefCell<Records>>,
    /// Every message event from the start: `retries-bounded` and `breaker-respected` are
    /// judged from what the network carried.
    tap: NetTap,
    /// What the gateways reported of their breakers, and their starts, in order.
    breakers: Rc<RefCell<Vec<BreakerNote>>>,
}

/// A gateway's report that bears on its breakers.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BreakerNote {
    /// The gateway's node.
    gateway: NodeId,
    /// True time of the report, in nanoseconds (for messages).
    time_ns: u64,
    /// The id the network gives its next message: the report came before every message
    /// with an id at least this, after every one below (times tie within an instant).
    next_message_id: u64,
    /// What changed.
    change: BreakerChange,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum BreakerChange {
    /// The gateway (re)started: every breaker it had is gone.
    Started,
    /// The breaker for this instance (its address, as registered) is now open, or not.
    Breaker { instance: String, open: bool },
}

/// The scenario.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndToEnd {
    /// The node counts.
    pub topology: Topology,
}

fn contents_of(command: &BankCommand, owner: &str) -> Vec<Content> {
    match command {
        BankCommand::Open { account, .. } => {
            vec![("opened".into(), account.clone(), 0, owner.into())]
        }
        BankCommand::Deposit { account, amount } => {
            vec![("deposited".into(), account.clone(), *amount, String::new())]
        }
        BankCommand::Withdraw { account, amount } => {
            vec![("withdrew".into(), account.clone(), *amount, String::new())]
        }
        BankCommand::Transfer { from, to, amount } => vec![
            ("debited".into(), from.clone(), *amount, to.clone()),
            ("credited".into(), to.clone(), *amount, from.clone()),
        ],
    }
}

fn call_strategy(topology: Topology) -> BoxedStrategy<Call> {
    let account = 0u8..topology.clients as u8;
    let amount = 1u64..5_000;
    let op = prop_oneof![
        3 => (account.clone(), amount.clone()).prop_map(|(account, amount)| Op::Deposit { account, amount }),
        1 => (account.clone(), amount.clone()).prop_map(|(account, amount)| Op::Withdraw { account, amount }),
        3 => (account.clone(), account.clone(), amount).prop_map(|(from, to, amount)| Op::Transfer { from, to, amount }),
        3 => account.prop_map(|account| Op::Balance { account }),
        1 => Just(Op::Totals),
    ];
    let claim = prop_oneof![4 => Just(None), 1 => (0u8..topology.clients as u8).prop_map(Some)];
    (10u64..150, 0u8..topology.gateways as u8, op, claim)
        .prop_map(|(think_ms, gateway, op, on_behalf_of)| Call {
            think_ms,
            gateway,
            op,
            on_behalf_of,
        })
        .boxed()
}

fn routes() -> Vec<Route> {
    let route = |name: &str, prefix: &str, method: &str, service: &str| Route {
        name: name.into(),
        host: HostMatch::Any,
        path: PathMatch::Prefix(prefix.into()),
        methods: Some(BTreeSet::from([method.to_string()])),
        service: service.into(),
        access: Access::Authenticated,
    };
    vec![
        route("commands", "/api/accounts", "POST", "accounts"),
        route("queries", "/api/ledger", "GET", "ledger"),
    ]
}

fn gateway_config(registries: Vec<Addr>, glue: Glue) -> GatewayConfig {
    GatewayConfig {
        port: GATEWAY_PORT,
        registries,
        services: vec!["accounts".into(), "ledger".into()],
        table_version: 1,
        routes: routes(),
        keys: KeyRing {
            current: BTreeMap::from([(SIGNING_KEY.0.to_string(), SIGNING_KEY.1.to_vec())]),
            retired: BTreeMap::new(),
        },
        auth: AuthConfig {
            skew_s: 5,
            ..AuthConfig::default()
        },
        limit: LimitConfig {
            rate_per_s: 100,
            burst: 50,
            ..LimitConfig::default()
        },
        upstream: UpstreamConfig {
            retries_max: GATEWAY_RETRIES_MAX,
            per_try_timeout: Duration::from_millis(300),
            route_timeout: Duration::from_millis(800),
            // Sized for a few calls per instance per second (the defaults, a window of 100
            // calls and a minute open, never trip in a run): half of the last 6 calls failed,
            // at least 4 of them, opens for 400 ms; 2 probes decide.
            breaker: BreakerConfig {
                window: Window::Count { size: 6 },
                calls_min: 4,
                failure_rate_threshold_percent: 50,
                open_wait: OpenWait::Fixed(Duration::from_millis(400)),
                half_open_probes_max: 2,
                ..BreakerConfig::default()
            },
            mutants: if glue.retries_bypass_breaker {
                GatewayMutants::only(GatewayMutant::RetriesBypassBreaker)
            } else {
                GatewayMutants::none()
            },
            ..UpstreamConfig::default()
        },
        http: Limits::default(),
        refresh_every: Duration::from_millis(100),
        discovery_timeout: Duration::from_millis(100),
        mutants: Default::default(),
    }
}

fn sim_config() -> SimConfig {
    SimConfig {
        time_limit_ms: 120_000,
        disk: DiskConfig {
            faults: DiskFaults {
                latency: Some(Latency {
                    min_ms: 1,
                    max_ms: 6,
                }),
                ..DiskFaults::default()
            },
            ..DiskConfig::default()
        },
        ..SimConfig::default()
    }
}

impl Scenario for EndToEnd {
    type Workload = Workload;
    type System = System;

    fn spec(&self) -> ScenarioSpec {
        let topology = self.topology;
        let mut nodes: Vec<String> = REGISTRIES.iter().map(|n| n.to_string()).collect();
        nodes.extend(topology.gateways());
        nodes.push(STORE.to_string());
        nodes.extend(topology.accounts());
        nodes.extend(topology.ledgers());
        let crash_targets = nodes.clone();
        let mut disk_targets: Vec<String> = vec![STORE.to_string()];
        disk_targets.extend(topology.ledgers());
        disk_targets.extend(REGISTRIES.iter().map(|n| n.to_string()));
        nodes.extend(topology.clients());
        ScenarioSpec {
            name: "e2e".into(),
            description: "the five patterns as one system: clients, gateway replicas, discovery, breakers, the event-sourced write side, CQRS read models".into(),
            nodes: nodes.clone(),
            budget: FaultBudget {
                // The event store does not claim to survive corrupted sectors.
                kinds: FaultKind::all_except(&[FaultKind::Corrupt]),
                targets: nodes,
                crash_targets,
                disk_targets,
                down_max: 1,
                episodes_max: 6,
                plan_duration_ms: 4_000,
                episode_duration_max_ms: 1_500,
            },
            invariants: vec![
                COMMAND_ONCE,
                ACKED_DURABLE,
                PRINCIPAL_RECORDED,
                READ_YOUR_WRITES,
                CONSERVATION,
                RETRIES_BOUNDED,
                BREAKER_RESPECTED,
                REBUILD_EQUALS_LIVE,
                VISIBLE_AFTER_HEAL,
                LISTED_AFTER_HEAL,
                CLIENT_RETRIED,
                GATEWAY_RETRIED,
                ANSWERED_STALE,
                BREAKER_OPENED,
            ],
            mutants: mutants(),
            sometimes_batch_min: 200,
            sim_config: sim_config(),
        }
    }

    fn workload(&self) -> BoxedStrategy<Workload> {
        proptest::collection::vec(
            proptest::collection::vec(call_strategy(self.topology), 20..50),
            self.topology.clients,
        )
        .prop_map(|clients| Workload { clients })
        .boxed()
    }

    fn validate_workload(&self, workload: &Workload) -> Result<(), String> {
        self.topology.validate()?;
        if workload.clients.len() != self.topology.clients {
            return Err(format!(
                "the workload has {} clients; this scenario has {}",
                workload.clients.len(),
                self.topology.clients
            ));
        }
        for calls in &workload.clients {
            if calls.len() > 1_000 {
                return Err("a client has more than 1000 calls".into());
            }
            for call in calls {
                if call.think_ms > 10_000 {
                    return Err(format!("think time {} ms is over 10000", call.think_ms));
                }
                let amount = match call.op {
                    Op::Deposit { amount, .. }
                    | Op::Withdraw { amount, .. }
                    | Op::Transfer { amount, .. } => amount,
                    _ => 1,
                };
                if amount == 0 || amount > 1_000_000 {
                    return Err(format!("amount {amount} is not in 1..=1000000"));
                }
            }
        }
        Ok(())
    }

    fn setup(&self, env: &Env, _workload: &Workload) -> System {
        let glue = Glue::of(env);
        let tap = env.sim.net().tap(TAP_CAPACITY);
        let registries = build_registries(env, &REGISTRIES);
        let registry_addrs: Vec<Addr> = registries
            .iter()
            .map(|&id| Addr::new(id, patterns::discovery::driver::REGISTRY_PORT))
            .collect();
        let hook: NodeHook = Arc::new(|_: &NodeEvent| {});
        let store_id = env
            .sim
            .node(STORE)
            .init(move || run_node(NodeConfig::default(), hook.clone()))
            .build();
        let store = Addr::new(store_id, STORE_PORT);
        let incarnations: Rc<RefCell<BTreeMap<String, u64>>> = Rc::default();
        // The ledger nodes whose init program has run once (read by a mutant only): unlike
        // `incarnations`, a node counts as started even if it crashed before registering.
        let started: Rc<RefCell<BTreeSet<String>>> = Rc::default();
        let topology = self.topology;
        for name in topology.accounts() {
            let addrs = registry_addrs.clone();
            let incarnations = incarnations.clone();
            env.sim
                .node(name.clone())
                .init(move || {
                    let (addrs, incarnations) = (addrs.clone(), incarnations.clone());
                    let name = name.clone();
                    // Spawned from the node's own task (the closure runs at build, too).
                    async move {
                        sim_core::task::spawn(run_command_node(CommandNodeConfig::new(store)));
                        sim_core::task::spawn(accounts_adapter(glue));
                        register(name, "accounts", addrs, incarnations).await
                    }
                })
                .build();
        }
        let mut views = Vec::new();
        for name in topology.ledgers() {
            let addrs = registry_addrs.clone();
            let incarnations = incarnations.clone();
            let started = started.clone();
            let observer = env.observer();
            let id = env
                .sim
                .node(name.clone())
                .init(move || {
                    let (addrs, incarnations) = (addrs.clone(), incarnations.clone());
                    let started = started.clone();
                    let name = name.clone();
                    let hook: ViewHook = {
                        let observer = observer.clone();
                        Rc::new(move |event: &ViewEvent| {
                            if let ViewEvent::AnsweredStale = event {
                                observer.reached(&ANSWERED_STALE);
                            }
                        })
                    };
                    async move {
                        let first_start = started.borrow_mut().insert(name.clone());
                        // The bug: the view node is a first-start step only.
                        if first_start || !glue.view_not_restarted {
                            sim_core::task::spawn(run_view_node(ViewNodeConfig::new(store), hook));
                        }
                        sim_core::task::spawn(ledger_adapter(glue));
                        let restarted = incarnations.borrow().contains_key(&name);
                        if glue.skips_reregistration && restarted {
                            // The bug: registration is a first-start step only.
                            return std::future::pending().await;
                        }
                        register(name, "ledger", addrs, incarnations).await
                    }
                })
                .build();
            views.push(Addr::new(id, VIEW_PORT));
        }
        let mut gateways = Vec::new();
        let breakers: Rc<RefCell<Vec<BreakerNote>>> = Rc::default();
        let net = env.sim.net();
        for name in topology.gateways() {
            let config = gateway_config(registry_addrs.clone(), glue);
            let observer = env.observer();
            let notes = breakers.clone();
            let hook: GatewayHook = Rc::new(move |event| match event {
                GatewayEvent::Attempt { retry: true, .. } => observer.reached(&GATEWAY_RETRIED),
                GatewayEvent::Breaker { instance, state } => {
                    if *state == BreakerState::Open {
                        observer.reached(&BREAKER_OPENED);
                    }
                    note_breaker(
                        &notes,
                        net,
                        BreakerChange::Breaker {
                            instance: instance.clone(),
                            open: *state == BreakerState::Open,
                        },
                    );
                }
                _ => {}
            });
            let notes = breakers.clone();
            let id = env
                .sim
                .node(name)
                .init(move || {
                    let (config, hook, notes) = (config.clone(), hook.clone(), notes.clone());
                    async move {
                        note_breaker(&notes, net, BreakerChange::Started);
                        run_gateway(config, hook).await
                    }
                })
                .build();
            gateways.push(id);
        }
        let clients = topology
            .clients()
            .into_iter()
            .map(|name| env.sim.node(name).build())
            .collect();
        System {
            registries: registry_addrs,
            gateways,
            views,
            clients,
            store,
            records: Rc::default(),
            tap,
            breakers,
        }
    }

    async fn drive(&self, env: &Env, system: &System, workload: Workload) -> Checked {
        let mut running = Vec::new();
        for (index, calls) in workload.clients.into_iter().enumerate() {
            let client = Client {
                index,
                clients: self.topology.clients,
                gateways: system.gateways.clone(),
                records: system.records.clone(),
                observer: env.observer(),
                min_position: 0,
                acked_ids: Vec::new(),
                next_id: 0,
                token: RefCell::default(),
            };
            running.push(env.sim.spawn_on(system.clients[index], client.run(calls)));
        }
        for client in running {
            let _ = client.await;
        }
        Ok(())
    }

    async fn after_heal(&self, env: &Env, system: &System) -> Checked {
        let probe_node = system.clients[0];
        let store = system.store;
        let views = system.views.clone();
        let visible = env
            .eventually(&VISIBLE_AFTER_HEAL, || {
                let views = views.clone();
                let client = Client {
                    index: 0,
                    clients: self.topology.clients,
                    gateways: system.gateways.clone(),
                    records: system.records.clone(),
                    observer: env.observer(),
                    min_position: 0,
                    acked_ids: Vec::new(),
                    next_id: 0,
                    token: RefCell::default(),
                };
                let sim = env.sim.clone();
                async move {
                    sim.spawn_on(probe_node, client.probe(store, views.clone()))
                        .await
                        .unwrap_or_else(|_| Err("the probe's node stopped".into()))
                }
            })
            .await;
        let topology = self.topology;
        let registries = system.registries.clone();
        let listed = env
            .eventually(&LISTED_AFTER_HEAL, || {
                let sim = env.sim.clone();
                let registries = registries.clone();
                async move {
                    sim.spawn_on(probe_node, all_listed(registries, topology))
                        .await
                        .unwrap_or_else(|_| Err("the probe's node stopped".into()))
                }
            })
            .await;
        env.observer().report(listed);
        // Rebuild each ledger's model from the log (an operator's command, straight to the
        // view node), only once the system serves again.
        if visible.is_ok() {
            let task = env
                .sim
                .spawn_on(probe_node, rebuild_all(system.views.clone()));
            match task.await {
                Ok(Ok(pairs)) => {
                    let observer = env.observer();
                    for (index, live, rebuilt) in pairs {
                        if let Some(broken) = rebuild_differs(&live, &rebuilt) {
                            observer.violation(
                                &REBUILD_EQUALS_LIVE,
                                format!("ledger-{}: {broken}", index + 1),
                            );
                        }
                        let mut records = system.records.borrow_mut();
                        for answer in [live, rebuilt] {
                            records.answers.push(Seen {
                                reader: "operator".into(),
                                asked_query: Query::Dump,
                                asked: 0,
                                acked_before: Vec::new(),
                                answer,
                            });
                        }
                    }
                }
                Ok(Err(why)) => env.inconclusive(format!("the rebuild check could not run: {why}")),
                Err(_) => env.inconclusive("the rebuild probe's node stopped"),
            }
        }
        if system.tap.overflowed() {
            env.inconclusive("the network tap overflowed: retries and breakers are not judged");
        } else {
            let events = system.tap.drain();
            judge_retries(&env.observer(), system, &events);
            judge_breakers(&env.observer(), system, &events);
        }
        // Read last: the log covers every answer the clients and the probe got.
        match env.sim.spawn_on(probe_node, read_log(store)).await {
            Ok(Ok(log)) => judge(&env.observer(), &system.records.borrow(), &log),
            Ok(Err(why)) => env.inconclusive(format!("the final log could not be read: {why}")),
            Err(_) => env.inconclusive("the log reader's node stopped"),
        }
        visible
    }
}

/// Keeps an instance registered under `service` with its adapter's address.
async fn register(
    name: String,
    service: &'static str,
    registries: Vec<Addr>,
    incarnations: Rc<RefCell<BTreeMap<String, u64>>>,
) {
    let node = sim_core::task::current_node().expect("a node's task");
    let address = Addr::new(node, BACKEND_PORT).to_string();
    let next_incarnation = || {
        let mut incarnations = incarnations.borrow_mut();
        let incarnation = incarnations.entry(name.to_string()).or_insert(0);
        *incarnation += 1;
        *incarnation
    };
    stay_registered(
        Key::new(service, &name),
        address,
        &registries,
        next_incarnation,
        || false,
    )
    .await;
}

fn json_answer(status: u16, body: serde_json::Value) -> BackendResponse {
    BackendResponse { status, body }
}

/// The write side's adapter: a gateway's `POST /api/accounts/<verb>` with a JSON body and an
/// `Idempotency-Key` becomes a [`CommandRequest`] to the command node on the same node.
async fn accounts_adapter(glue: Glue) {
    let Ok(server) = Socket::bind(BACKEND_PORT) else {
        return;
    };
    let server = Rc::new(server);
    let node = sim_core::task::current_node().expect("a node's task");
    let command_node = Addr::new(node, COMMAND_PORT);
    // Under a mutant only: the answers kept by the gateway's request id.
    let replays = Replays::default();
    loop {
        let Ok((request, message)) = server.recv_request::<BackendRequest>().await else {
            return;
        };
        let server = server.clone();
        let replays = replays.clone();
        sim_core::task::spawn(async move {
            if glue.replays_by_request_id {
                if let Some(answer) = replays.kept(message.request_id) {
                    // The bug: the request id stands for the request, but a gateway numbers
                    // its requests afresh when it restarts.
                    let _ = server.reply(request, &answer);
                    return;
                }
            }
            let answer = match translate_command(&message, glue) {
                Err(why) => json_answer(400, serde_json::json!({ "error": why })),
                Ok(command) => {
                    let Ok(calls) = Socket::bind(0) else { return };
                    // The bug's layer of retries: three more calls after a failure.
                    let tries = if glue.retries_commands { 4 } else { 1 };
                    let mut answer = calls
                        .call::<_, CommandResponse>(command_node, &command, COMMAND_TIMEOUT)
                        .await;
                    for _ in 1..tries {
                        if !matches!(answer, Ok(CommandResponse::Unavailable(_)) | Err(_)) {
                            break;
                        }
                        answer = calls
                            .call::<_, CommandResponse>(command_node, &command, COMMAND_TIMEOUT)
                            .await;
                    }
                    match answer {
                        // The consistency token a client passes back as `at`: the position just
                        // past the command's last event (a model at it has folded that event).
                        Ok(CommandResponse::Done { token }) => {
                            json_answer(200, serde_json::json!({ "token": token + 1 }))
                        }
                        Ok(CommandResponse::Refused(error)) => {
                            json_answer(409, serde_json::json!({ "error": format!("{error:?}") }))
                        }
                        Ok(CommandResponse::Unavailable(why)) => {
                            json_answer(503, serde_json::json!({ "error": why }))
                        }
                        Err(RpcError::Timeout { .. }) if glue.acks_on_timeout => {
                            // The bug: no answer in time is taken as "accepted".
                            json_answer(200, serde_json::json!({ "token": 0 }))
                        }
                        Err(error) => {
                            json_answer(503, serde_json::json!({ "error": error.to_string() }))
                        }
                    }
                }
            };
            if glue.replays_by_request_id {
                replays.keep(message.request_id, &answer);
            }
            let _ = server.reply(request, &answer);
        });
    }
}

/// Under a mutant only: an adapter's answers kept by the gateway's request id, each for
/// [`REPLAY_KEEP`], to answer a gateway's retry without asking again.
#[derive(Clone, Default)]
struct Replays(Rc<RefCell<BTreeMap<u64, (time::Instant, BackendResponse)>>>);

impl Replays {
    /// The answer kept for `request_id`, after forgetting those kept too long.
    fn kept(&self, request_id: u64) -> Option<BackendResponse> {
        let now = time::now();
        let mut kept = self.0.borrow_mut();
        kept.retain(|_, (at, _)| now.saturating_duration_since(*at) < REPLAY_KEEP);
        kept.get(&request_id).map(|(_, answer)| answer.clone())
    }

    /// Keeps `answer` for `request_id`, unless it is a server error (a retry must ask again).
    fn keep(&self, request_id: u64, answer: &BackendResponse) {
        if answer.status < 500 {
            self.0
                .borrow_mut()
                .insert(request_id, (time::now(), answer.clone()));
        }
    }
}

fn field<'a>(body: &'a serde_json::Value, name: &str) -> Result<&'a serde_json::Value, String> {
    body.get(name)
        .ok_or_else(|| format!("the body has no {name:?}"))
}

fn text(body: &serde_json::Value, name: &str) -> Result<String, String> {
    field(body, name)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{name:?} is not a string"))
}

fn whole(body: &serde_json::Value, name: &str) -> Result<u64, String> {
    field(body, name)?
        .as_u64()
        .ok_or_else(|| format!("{name:?} is not a whole number"))
}

/// The command a gateway's request asks for.
fn translate_command(message: &BackendRequest, glue: Glue) -> Result<CommandRequest, String> {
    let key = message
        .idempotency_key
        .as_deref()
        .ok_or("a command needs an Idempotency-Key")?;
    let command_id = if glue.keys_by_request {
        // The bug: the gateway's request id stands for the command (it is new for each of the
        // client's tries).
        message.request_id | (1 << 63)
    } else {
        key.parse::<u64>()
            .map_err(|_| format!("Idempotency-Key {key:?} is not a number"))?
    };
    let verb = message
        .path
        .strip_prefix("/api/accounts/")
        .ok_or("not a command path")?;
    let body = &message.body;
    let mut principal = message.principal.clone();
    if glue.principal_from_body {
        // The bug: an identity the client wrote in the body wins over the authenticated one.
        if let Some(claimed) = body.get("on_behalf_of").and_then(|v| v.as_str()) {
            principal = Some(claimed.to_string());
        }
    }
    let command = match verb {
        "open" => BankCommand::Open {
            account: text(body, "account")?,
            owner: principal.clone().ok_or("no principal")?,
        },
        "deposit" => BankCommand::Deposit {
            account: text(body, "account")?,
            amount: whole(body, "amount")?,
        },
        "withdraw" => BankCommand::Withdraw {
            account: text(body, "account")?,
            amount: whole(body, "amount")?,
        },
        "transfer" => BankCommand::Transfer {
            from: text(body, "from")?,
            to: text(body, "to")?,
            amount: whole(body, "amount")?,
        },
        other => return Err(format!("no command {other:?}")),
    };
    Ok(CommandRequest {
        command_id,
        command,
        principal,
    })
}

/// The read side's adapter: a gateway's `GET /api/ledger/balance/<account>?at=<position>` or
/// `GET /api/ledger/totals?at=<position>` becomes a query to the view node on the same node.
async fn ledger_adapter(glue: Glue) {
    let Ok(server) = Socket::bind(BACKEND_PORT) else {
        return;
    };
    let server = Rc::new(server);
    let node = sim_core::task::current_node().expect("a node's task");
    let view_node = Addr::new(node, VIEW_PORT);
    // Under a mutant only: the last answer to each query.
    let kept: Rc<RefCell<BTreeMap<String, serde_json::Value>>> = Rc::default();
    // Under a mutant only: whether the view node has answered a query since this start.
    let opened = Rc::new(std::cell::Cell::new(false));
    // Under a mutant only: the answers kept by the gateway's request id.
    let replays = Replays::default();
    loop {
        let Ok((request, message)) = server.recv_request::<BackendRequest>().await else {
            return;
        };
        let server = server.clone();
        let (kept, opened) = (kept.clone(), opened.clone());
        let replays = replays.clone();
        sim_core::task::spawn(async move {
            if glue.ledger_replays_by_request_id {
                if let Some(answer) = replays.kept(message.request_id) {
                    // The bug: the request id stands for the query, but a gateway numbers
                    // its requests afresh when it restarts.
                    let _ = server.reply(request, &answer);
                    return;
                }
            }
            let answer = match translate_query(&message, glue.drops_token) {
                Err(why) => json_answer(400, serde_json::json!({ "error": why })),
                Ok((query, min_position)) => {
                    let Ok(calls) = Socket::bind(0) else { return };
                    let ask = ViewRequest::Query {
                        query: query.clone(),
                        min_position,
                        wait_max: QUERY_WAIT,
                    };
                    match calls
                        .call::<_, ViewResponse>(view_node, &ask, QUERY_WAIT * 2)
                        .await
                    {
                        Ok(ViewResponse::Answer(answer)) => {
                            opened.set(true);
                            let body = serde_json::json!({
                                "position": answer.position,
                                "fresh": answer.fresh,
                                "query": query,
                                "body": answer.body,
                            });
                            if glue.serves_stale_on_error && answer.fresh {
                                kept.borrow_mut().insert(message.path.clone(), body.clone());
                            }
                            json_answer(200, body)
                        }
                        Ok(ViewResponse::Recovering)
                            if glue.answers_while_opening && !opened.get() =>
                        {
                            // The bug: until its view node first answers, the adapter takes
                            // the model for an empty one, which has nothing to wait for.
                            let body = serde_json::json!({
                                "position": 0,
                                "fresh": true,
                                "query": query,
                                "body": BankView::default().answer(&query),
                            });
                            json_answer(200, body)
                        }
                        failed => match kept.borrow().get(&message.path) {
                            // The bug: a kept answer stands in, still saying it is fresh.
                            Some(body) if glue.serves_stale_on_error => {
                                json_answer(200, body.clone())
                            }
                            _ => json_answer(
                                503,
                                serde_json::json!({ "error": format!("{failed:?}") }),
                            ),
                        },
                    }
                }
            };
            if glue.ledger_replays_by_request_id {
                replays.keep(message.request_id, &answer);
            }
            let _ = server.reply(request, &answer);
        });
    }
}

/// The query and consistency token a gateway's request asks for.
fn translate_query(message: &BackendRequest, drops_token: bool) -> Result<(Query, u64), String> {
    let what = message
        .path
        .strip_prefix("/api/ledger/")
        .ok_or("not a query path")?;
    let query = match what.split_once('/') {
        Some(("balance", account)) if !account.is_empty() => Query::Balance(account.to_string()),
        None if what == "totals" => Query::Totals,
        _ => return Err(format!("no query {what:?}")),
    };
    let mut at = 0;
    for pair in message.query.as_deref().unwrap_or("").split('&') {
        if let Some(value) = pair.strip_prefix("at=") {
            at = value
                .parse::<u64>()
                .map_err(|_| format!("at={value:?} is not a position"))?;
        }
    }
    if drops_token {
        // The bug: the query string is lost in translation.
        at = 0;
    }
    Ok((query, at))
}

/// A client's task: opens its account, then runs its calls.
struct Client {
    index: usize,
    /// How many clients (and accounts) there are.
    clients: usize,
    gateways: Vec<NodeId>,
    records: Rc<RefCell<Records>>,
    observer: Observer,
    /// The consistency token: the position just past its last acknowledged command's events.
    min_position: u64,
    /// The commands acknowledged to it so far.
    acked_ids: Vec<u64>,
    next_id: u64,
    /// The last token signed and the second it was signed for: the same second gives the
    /// same token, and signing (HMAC-SHA256) was a tenth of the clients' work (measured).
    token: RefCell<Option<(u64, String)>>,
}

/// How one HTTP exchange ended.
enum Exchange {
    /// The gateway answered with this status and JSON body.
    Answered(u16, serde_json::Value),
    /// No answer (lost, timed out, unreadable).
    Lost,
}

impl Client {
    fn principal(&self) -> String {
        principal_of(self.index)
    }

    fn account(&self, index: u8) -> String {
        account_of_client(usize::from(index) % self.clients)
    }

    async fn run(mut self, calls: Vec<Call>) {
        let Ok(socket) = Socket::bind(0) else { return };
        let own = account_of_client(self.index);
        self.command(
            &socket,
            0,
            BankCommand::Open {
                account: own,
                owner: self.principal(),
            },
            None,
        )
        .await;
        for call in calls {
            time::sleep(Duration::from_millis(call.think_ms)).await;
            let gateway = usize::from(call.gateway);
            match call.op {
                Op::Deposit { account: a, amount } => {
                    let command = BankCommand::Deposit {
                        account: self.account(a),
                        amount,
                    };
                    self.command(&socket, gateway, command, call.on_behalf_of)
                        .await
                }
                Op::Withdraw { account: a, amount } => {
                    let command = BankCommand::Withdraw {
                        account: self.account(a),
                        amount,
                    };
                    self.command(&socket, gateway, command, call.on_behalf_of)
                        .await
                }
                Op::Transfer { from, to, amount } => {
                    let command = BankCommand::Transfer {
                        from: self.account(from),
                        to: self.account(to),
                        amount,
                    };
                    self.command(&socket, gateway, command, call.on_behalf_of)
                        .await
                }
                Op::Balance { account: a } => {
                    let query = Query::Balance(self.account(a));
                    let reader = self.principal();
                    let _ = self.query(&socket, gateway, query, &reader).await;
                }
                Op::Totals => {
                    let reader = self.principal();
                    let _ = self.query(&socket, gateway, Query::Totals, &reader).await;
                }
            }
        }
    }

    fn token(&self) -> String {
        let now = WALL_EPOCH_UNIX_S + time::true_now().as_secs();
        if let Some((signed_s, token)) = self.token.borrow().as_ref() {
            if *signed_s == now {
                return token.clone();
            }
        }
        let claims = Claims {
            principal: self.principal(),
            key_id: SIGNING_KEY.0.into(),
            not_before_s: now.saturating_sub(60),
            expires_s: now + TOKEN_LIFE_S,
        };
        let token = sign(&claims, SIGNING_KEY.1);
        *self.token.borrow_mut() = Some((now, token.clone()));
        token
    }

    /// One HTTP exchange with a gateway: `request_line` is the method and target;
    /// `headers` are extra header lines, each ending in CRLF.
    async fn exchange(
        &self,
        socket: &Socket,
        gateway: usize,
        request_line: &str,
        headers: &str,
        body: &str,
    ) -> Exchange {
        let mut bytes = format!(
            "{request_line} HTTP/1.1\r\nHost: bank.example\r\nAuthorization: Bearer {}\r\n{headers}",
            self.token()
        );
        if !body.is_empty() {
            bytes.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        bytes.push_str("\r\n");
        bytes.push_str(body);
        let to = Addr::new(self.gateways[gateway % self.gateways.len()], GATEWAY_PORT);
        let call = ExternalCall {
            bytes: bytes.into_bytes(),
        };
        match socket
            .call::<_, ExternalAnswer>(to, &call, CLIENT_TIMEOUT)
            .await
        {
            Ok(answer) => match parse_response(&answer.bytes) {
                Ok(response) => Exchange::Answered(response.status, response.body),
                Err(_) => Exchange::Lost,
            },
            Err(_) => Exchange::Lost,
        }
    }

    /// Sends a command until its outcome is known (or the tries run out), same key each time.
    async fn command(
        &mut self,
        socket: &Socket,
        gateway: usize,
        command: BankCommand,
        on_behalf_of: Option<u8>,
    ) {
        self.next_id += 1;
        let command_id = (self.index as u64 + 1) * 1_000_000 + self.next_id;
        let contents = contents_of(&command, &self.principal());
        self.records
            .borrow_mut()
            .sent
            .push((command_id, self.principal(), contents.clone()));
        let (verb, mut body) = match &command {
            BankCommand::Open { account, .. } => {
                ("open", serde_json::json!({ "account": account }))
            }
            BankCommand::Deposit { account, amount } => (
                "deposit",
                serde_json::json!({ "account": account, "amount": amount }),
            ),
            BankCommand::Withdraw { account, amount } => (
                "withdraw",
                serde_json::json!({ "account": account, "amount": amount }),
            ),
            BankCommand::Transfer { from, to, amount } => (
                "transfer",
                serde_json::json!({ "from": from, "to": to, "amount": amount }),
            ),
        };
        if let Some(other) = on_behalf_of {
            body["on_behalf_of"] = principal_of(usize::from(other) % self.clients).into();
        }
        let request_line = format!("POST /api/accounts/{verb}");
        let key = format!("Idempotency-Key: {command_id}\r\n");
        let body = body.to_string();
        for attempt in 0..CLIENT_TRIES {
            if attempt > 0 {
                self.observer.reached(&CLIENT_RETRIED);
                time::sleep(Duration::from_millis(100)).await;
            }
            match self
                .exchange(socket, gateway + attempt, &request_line, &key, &body)
                .await
            {
                Exchange::Answered(200, answer) => {
                    if let Some(token) = answer["token"].as_u64() {
                        self.min_position = self.min_position.max(token);
                    }
                    self.acked_ids.push(command_id);
                    self.records.borrow_mut().acked.push((command_id, contents));
                    return;
                }
                // Refused by the domain, or a request the gateway refused before any backend
                // saw it: the outcome is known.
                Exchange::Answered(status, _) if (400..500).contains(&status) && status != 429 => {
                    return
                }
                // Unknown: 429, 5xx or no answer. Try again with the same key.
                _ => {}
            }
        }
    }

    /// Reads a query through a gateway with the client's consistency token; records it as
    /// read by `reader`.
    async fn query(
        &mut self,
        socket: &Socket,
        gateway: usize,
        query: Query,
        reader: &str,
    ) -> Option<Answered> {
        let path = match &query {
            Query::Balance(account) => format!("/api/ledger/balance/{account}"),
            _ => "/api/ledger/totals".to_string(),
        };
        let head = format!("GET {path}?at={}", self.min_position);
        match self.exchange(socket, gateway, &head, "", "").await {
            Exchange::Answered(200, body) => {
                let answered: Answered = match serde_json::from_value(body.clone()) {
                    Ok(answered) => answered,
                    Err(error) => {
                        self.observer.violation(
                            &READ_YOUR_WRITES,
                            format!("an answer that does not read: {error}: {body}"),
                        );
                        return None;
                    }
                };
                self.records.borrow_mut().answers.push(Seen {
                    reader: reader.to_string(),
                    asked_query: query,
                    asked: self.min_position,
                    acked_before: self.acked_ids.clone(),
                    answer: answered.clone(),
                });
                Some(answered)
            }
            _ => None,
        }
    }

    /// One probe of `visible-after-heal`: the end of the log, then a fresh totals answer at it
    /// through every gateway, and a fresh dump at it from every ledger's view node (asked
    /// directly: through a gateway a stuck ledger would hide behind a healthy one).
    async fn probe(mut self, store: Addr, views: Vec<Addr>) -> Result<(), String> {
        let socket = Socket::bind(0).map_err(|e| e.to_string())?;
        let end = read_log(store).await?.len() as u64;
        self.min_position = end;
        for gateway in 0..self.gateways.len() {
            let name = format!("gateway-{}", gateway + 1);
            match self.query(&socket, gateway, Query::Totals, "probe").await {
                Some(answer) if answer.fresh => {}
                other => {
                    return Err(format!(
                        "{name} gave no fresh answer at position {end}: {other:?}"
                    ))
                }
            }
        }
        for (index, &view) in views.iter().enumerate() {
            let answer = ask_dump(&socket, view, end).await?;
            let fresh = answer.fresh;
            let position = answer.position;
            self.records.borrow_mut().answers.push(Seen {
                reader: "probe".into(),
                asked_query: Query::Dump,
                asked: end,
                acked_before: Vec::new(),
                answer: Answered {
                    position: answer.position,
                    fresh: answer.fresh,
                    query: Query::Dump,
                    body: answer.body,
                },
            });
            if !fresh {
                return Err(format!(
                    "ledger-{}'s read model is at position {position}, the log at {end}",
                    index + 1
                ));
            }
        }
        Ok(())
    }
}

/// One probe of `listed-after-heal`: a registry replica lists every instance up.
async fn all_listed(registries: Vec<Addr>, topology: Topology) -> Result<(), String> {
    let socket = Socket::bind(0).map_err(|e| e.to_string())?;
    let wanted = [
        ("accounts", topology.accounts()),
        ("ledger", topology.ledgers()),
    ];
    let mut last = String::from("no replica answered");
    'replicas: for registry in registries {
        for (service, instances) in &wanted {
            let request = RegistryRequest::Discover {
                service: service.to_string(),
            };
            let answer = match socket
                .call::<_, RegistryResponse>(registry, &request, Duration::from_millis(200))
                .await
            {
                Ok(RegistryResponse::Discovered(answer)) => answer,
                other => {
                    last = format!("{registry}: {other:?}");
                    continue 'replicas;
                }
            };
            let up: BTreeSet<&str> = answer
                .records
                .iter()
                .filter(|(_, record)| record.status == Status::Up)
                .map(|(key, _)| key.instance.as_str())
                .collect();
            let missing: Vec<&String> = instances
                .iter()
                .filter(|i| !up.contains(i.as_str()))
                .collect();
            if !missing.is_empty() {
                last = format!("{registry} does not list {missing:?} as up");
                continue 'replicas;
            }
        }
        return Ok(());
    }
    Err(last)
}

/// Asks a view node directly for a dump at `min_position` or later.
async fn ask_dump(socket: &Socket, view: Addr, min_position: u64) -> Result<Answer, String> {
    let request = ViewRequest::Query {
        query: Query::Dump,
        min_position,
        wait_max: Duration::from_millis(500),
    };
    match socket
        .call::<_, ViewResponse>(view, &request, Duration::from_secs(1))
        .await
    {
        Ok(ViewResponse::Answer(answer)) => Ok(answer),
        other => Err(format!("a dump from {view}: {other:?}")),
    }
}

/// Each ledger's live dump and, at the same position, its dump rebuilt from the log:
/// (ledger index, live, rebuilt).
async fn rebuild_all(views: Vec<Addr>) -> Result<Vec<(usize, Answered, Answered)>, String> {
    let socket = Socket::bind(0).map_err(|e| e.to_string())?;
    let mut pairs = Vec::new();
    for (index, &view) in views.iter().enumerate() {
        // A transfer's credit may still land during the rebuild: then compare again.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let live = ask_dump(&socket, view, 0).await?;
            let rebuilt = socket
                .call::<_, ViewResponse>(view, &ViewRequest::Rebuild, Duration::from_secs(3))
                .await
                .map_err(|e| e.to_string())?;
            let ViewResponse::Rebuilt {
                generation,
                position,
            } = rebuilt
            else {
                return Err(format!("ledger-{}: {rebuilt:?}", index + 1));
            };
            let after = ask_dump(&socket, view, position).await?;
            let as_answered = |answer: Answer| Answered {
                position: answer.position,
                fresh: answer.fresh,
                query: Query::Dump,
                body: answer.body,
            };
            if after.generation >= generation && after.position == live.position {
                pairs.push((index, as_answered(live), as_answered(after)));
                break;
            }
            if attempts == 3 {
                return Err(format!(
                    "ledger-{} kept moving during the rebuild: live at {}, rebuilt at {position}, then at {}",
                    index + 1,
                    live.position,
                    after.position
                ));
            }
        }
    }
    Ok(pairs)
}

/// How a rebuilt model's answer differs from the live one's at the same position, if it does.
fn rebuild_differs(live: &Answered, rebuilt: &Answered) -> Option<String> {
    if live.position != rebuilt.position {
        return Some(format!(
            "live at position {}, rebuilt at {}: not comparable",
            live.position, rebuilt.position
        ));
    }
    (live.body != rebuilt.body).then(|| {
        format!(
            "at position {} the live model answers {:?}, the rebuilt one {:?}",
            live.position, live.body, rebuilt.body
        )
    })
}

/// The checks over the clients' records and the final log.
/// How a client command's tries fanned out on the network, layer by layer, by the command's
/// id (the client's `Idempotency-Key`): each count is of messages, duplicates included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Fanout {
    /// Requests carrying the key that clients sent.
    from_clients: u64,
    /// Requests carrying the key delivered to gateways.
    at_gateways: u64,
    /// Attempts carrying the key that gateways sent to adapters.
    from_gateways: u64,
    /// Attempts carrying the key delivered to adapters.
    at_adapters: u64,
    /// Command calls with the id that adapters sent to command nodes.
    from_adapters: u64,
}

/// Whether a layer tried command `id` more often than its allowance: a client at most
/// [`CLIENT_TRIES`] times, a gateway at most 1 + [`GATEWAY_RETRIES_MAX`] attempts per request
/// it received, an adapter one command call per attempt it received.
fn amplified(id: u64, fanout: &Fanout) -> Option<String> {
    let per_request = 1 + u64::from(GATEWAY_RETRIES_MAX);
    if fanout.from_clients > CLIENT_TRIES as u64 {
        return Some(format!(
            "command {id}: a client sent it {} times (at most {CLIENT_TRIES})",
            fanout.from_clients
        ));
    }
    if fanout.from_gateways > fanout.at_gateways * per_request {
        return Some(format!(
            "command {id}: the gateways sent {} attempts for the {} requests they received (at most {per_request} each)",
            fanout.from_gateways, fanout.at_gateways
        ));
    }
    if fanout.from_adapters > fanout.at_adapters {
        return Some(format!(
            "command {id}: the adapters called a command node {} times for the {} attempts they received",
            fanout.from_adapters, fanout.at_adapters
        ));
    }
    None
}

/// The `Idempotency-Key` of an HTTP request's bytes, read with code of our own (not the
/// gateway's parser): the header lines before the blank line, the name in any case.
fn idempotency_key(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let head = text.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("idempotency-key")
            .then(|| value.trim().parse().ok())?
    })
}

/// The head of a gateway's attempt as the wire carries it: the fields of a
/// [`BackendRequest`] up to its idempotency key, in their order (the body, JSON text, is left
/// undecoded: parsing it for every attempt was most of this check's cost, measured).
#[derive(Deserialize)]
struct AttemptHead {
    _request_id: u64,
    _route: String,
    _method: String,
    _path: String,
    _query: Option<String>,
    _principal: Option<String>,
    idempotency_key: Option<String>,
}

/// `retries-bounded`, from every message the network carried: counts each command's tries
/// at each layer ([`Fanout`]) and judges them ([`amplified`]). Calls with an id no client
/// key names are `command-once`'s to judge.
fn judge_retries(observer: &Observer, system: &System, events: &[TapEvent]) {
    let mut fanouts: BTreeMap<u64, Fanout> = BTreeMap::new();
    let mut command_calls: BTreeMap<u64, u64> = BTreeMap::new();
    // A message's send and its delivery carry one payload: decode it once.
    let mut keys: BTreeMap<u64, Option<u64>> = BTreeMap::new();
    for event in events {
        if !matches!(event.kind, MessageKind::Request { .. }) {
            continue;
        }
        let sent = match event.what {
            Tapped::Send => true,
            Tapped::Deliver => false,
            _ => continue,
        };
        let port = event.to.port;
        if port == GATEWAY_PORT && system.clients.contains(&event.from.node) {
            let key = keys.entry(event.id).or_insert_with(|| {
                event
                    .decode::<ExternalCall>()
                    .and_then(|call| idempotency_key(&call.bytes))
            });
            let Some(id) = *key else { continue };
            let fanout = fanouts.entry(id).or_default();
            *(if sent {
                &mut fanout.from_clients
            } else {
                &mut fanout.at_gateways
            }) += 1;
        } else if port == BACKEND_PORT && system.gateways.contains(&event.from.node) {
            let key = keys.entry(event.id).or_insert_with(|| {
                event
                    .decode::<AttemptHead>()
                    .and_then(|head| head.idempotency_key?.parse().ok())
            });
            let Some(id) = *key else { continue };
            let fanout = fanouts.entry(id).or_default();
            *(if sent {
                &mut fanout.from_gateways
            } else {
                &mut fanout.at_adapters
            }) += 1;
        } else if port == COMMAND_PORT && sent {
            if let Some(call) = event.decode::<CommandRequest>() {
                *command_calls.entry(call.command_id).or_default() += 1;
            }
        }
    }
    for (id, calls) in command_calls {
        if let Some(fanout) = fanouts.get_mut(&id) {
            fanout.from_adapters = calls;
        }
    }
    for (id, fanout) in &fanouts {
        if let Some(broken) = amplified(*id, fanout) {
            observer.violation(&RETRIES_BOUNDED, broken);
        }
    }
}

/// Notes a gateway's report, from the gateway's own task, with where it falls among the
/// network's messages.
fn note_breaker(notes: &RefCell<Vec<BreakerNote>>, net: NetControl, change: BreakerChange) {
    let Some(gateway) = sim_core::task::current_node() else {
        return;
    };
    let time_ns = u64::try_from(time::true_now().as_nanos()).unwrap_or(u64::MAX);
    notes.borrow_mut().push(BreakerNote {
        gateway,
        time_ns,
        next_message_id: net.stats().next_message_id,
        change,
    });
}

/// A time a breaker was open: the ids of the messages sent meanwhile, `[first, end)`, and the
/// true time it opened (ns).
type OpenSpell = (u64, u64, u64);

/// An attempt a gateway put on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SentAttempt {
    gateway: NodeId,
    /// The instance's address, as discovery lists it.
    instance: String,
    time_ns: u64,
    /// The message's id.
    id: u64,
}

/// The attempts sent while the sending gateway's breaker for their instance was open: after
/// the report that it opened, before the next report for it (a breaker turns half-open, and
/// says so, before the probe it lets through) or the gateway's restart, in the order of the
/// network's message ids. `names` name the gateways.
fn breaker_breaches(
    notes: &[BreakerNote],
    sent: &[SentAttempt],
    names: &dyn Fn(NodeId) -> String,
) -> Vec<String> {
    // Per (gateway, instance): the message ids sent while it was open, [first, end), and the
    // time it opened.
    let mut open_since: BTreeMap<(NodeId, &str), (u64, u64)> = BTreeMap::new();
    let mut open: BTreeMap<(NodeId, &str), Vec<OpenSpell>> = BTreeMap::new();
    for note in notes {
        match &note.change {
            BreakerChange::Started => {
                let ended: Vec<(NodeId, &str)> = open_since
                    .keys()
                    .filter(|(gateway, _)| *gateway == note.gateway)
                    .copied()
                    .collect();
                for key in ended {
                    let (since, at) = open_since.remove(&key).expect("listed above");
                    open.entry(key)
                        .or_default()
                        .push((since, note.next_message_id, at));
                }
            }
            BreakerChange::Breaker {
                instance,
                open: true,
            } => {
                open_since
                    .entry((note.gateway, instance.as_str()))
                    .or_insert((note.next_message_id, note.time_ns));
            }
            BreakerChange::Breaker {
                instance,
                open: false,
            } => {
                let key = (note.gateway, instance.as_str());
                if let Some((since, at)) = open_since.remove(&key) {
                    open.entry(key)
                        .or_default()
                        .push((since, note.next_message_id, at));
                }
            }
        }
    }
    for (key, (since, at)) in open_since {
        open.entry(key).or_default().push((since, u64::MAX, at));
    }
    let mut breaches = Vec::new();
    for attempt in sent {
        let key = (attempt.gateway, attempt.instance.as_str());
        let during = open
            .get(&key)
            .into_iter()
            .flatten()
            .find(|(since, until, _)| (*since..*until).contains(&attempt.id));
        if let Some((_, _, opened_ns)) = during {
            breaches.push(format!(
                "{} sent an attempt to {} at {} ms, while its breaker for it was open (since {} ms)",
                names(attempt.gateway),
                attempt.instance,
                attempt.time_ns / 1_000_000,
                opened_ns / 1_000_000
            ));
        }
    }
    breaches
}

/// `breaker-respected`, from the gateways' reports and the attempts on the network.
fn judge_breakers(observer: &Observer, system: &System, events: &[TapEvent]) {
    let sent: Vec<SentAttempt> = events
        .iter()
        .filter(|event| {
            event.what == Tapped::Send
                && matches!(event.kind, MessageKind::Request { .. })
                && event.to.port == BACKEND_PORT
                && system.gateways.contains(&event.from.node)
        })
        .map(|event| SentAttempt {
            gateway: event.from.node,
            instance: event.to.to_string(),
            time_ns: event.time_ns,
            id: event.id,
        })
        .collect();
    let names = |gateway: NodeId| {
        system
            .gateways
            .iter()
            .position(|&g| g == gateway)
            .map_or_else(|| gateway.to_string(), |i| format!("gateway-{}", i + 1))
    };
    for breach in breaker_breaches(&system.breakers.borrow(), &sent, &names) {
        observer.violation(&BREAKER_RESPECTED, breach);
    }
}

fn judge(observer: &Observer, records: &Records, log: &[RecordedEvent]) {
    // The log's events, as the oracle reads them.
    let senders: BTreeMap<u64, &str> = records
        .sent
        .iter()
        .map(|(id, principal, _)| (*id, principal.as_str()))
        .collect();
    let mut in_log: BTreeMap<Content, u64> = BTreeMap::new();
    // Per command id, the position of its last event.
    let mut last_position: BTreeMap<u64, u64> = BTreeMap::new();
    let mut kinds_by_command: BTreeSet<(u64, String)> = BTreeSet::new();
    for event in log {
        let bank_oracle::Read::Bank(decoded) = bank_oracle::read(event) else {
            continue;
        };
        let other = match decoded.kind.as_str() {
            "opened" => decoded.owner.clone(),
            "debited" | "credited" => decoded.counterpart.clone(),
            _ => String::new(),
        };
        let amount = if decoded.kind == "opened" {
            0
        } else {
            decoded.amount
        };
        *in_log
            .entry((decoded.kind.clone(), decoded.account.clone(), amount, other))
            .or_default() += 1;
        if let Some(&sender) = senders.get(&decoded.command_id) {
            if decoded.principal.as_deref() != Some(sender) {
                observer.violation(
                    &PRINCIPAL_RECORDED,
                    format!(
                        "the {} event at position {} of {sender}'s command {} records principal {:?}",
                        decoded.kind, event.position, decoded.command_id, decoded.principal
                    ),
                );
            }
        }
        last_position.insert(decoded.command_id, event.position);
        if !senders.contains_key(&decoded.command_id) {
            observer.violation(
                &COMMAND_ONCE,
                format!(
                    "the {} event at position {} carries command id {}, which no client sent",
                    decoded.kind, event.position, decoded.command_id
                ),
            );
        }
        if !kinds_by_command.insert((decoded.command_id, decoded.kind.clone())) {
            observer.violation(
                &COMMAND_ONCE,
                format!(
                    "command {} left two {} events (the second at position {})",
                    decoded.command_id, decoded.kind, event.position
                ),
            );
        }
    }
    let mut sent: BTreeMap<Content, u64> = BTreeMap::new();
    for (_, _, contents) in &records.sent {
        for content in contents {
            *sent.entry(content.clone()).or_default() += 1;
        }
    }
    for (content, &count) in &in_log {
        let asked = sent.get(content).copied().unwrap_or(0);
        if count > asked {
            observer.violation(
                &COMMAND_ONCE,
                format!("events {content:?} in the log: {count}; such commands sent: {asked}"),
            );
        }
    }
    let mut acked: BTreeMap<Content, u64> = BTreeMap::new();
    for (_, contents) in &records.acked {
        for content in contents {
            *acked.entry(content.clone()).or_default() += 1;
        }
    }
    for (content, &count) in &acked {
        let held = in_log.get(content).copied().unwrap_or(0);
        if held < count {
            observer.violation(
                &ACKED_DURABLE,
                format!("commands {content:?} told done: {count}; events {content:?} in the log: {held}"),
            );
        }
    }
    // By command id: every acknowledged command has its events in the log.
    for (id, contents) in &records.acked {
        let kinds: BTreeSet<&str> = contents.iter().map(|c| c.0.as_str()).collect();
        for kind in kinds {
            if !kinds_by_command.contains(&(*id, kind.to_string())) {
                observer.violation(
                    &ACKED_DURABLE,
                    format!("command {id} was told done; the log holds no {kind} event of it"),
                );
            }
        }
    }
    // Answers, in the order of their positions, against the fold of the log.
    let mut answers: Vec<&Seen> = records.answers.iter().collect();
    answers.sort_by_key(|seen| seen.answer.position);
    let mut fold = Fold::default();
    let mut next = 0usize;
    for seen in answers {
        let (reader, answer) = (&seen.reader, &seen.answer);
        if let Some(broken) = bank_oracle::conservation_broken(&answer.body) {
            observer.violation(
                &CONSERVATION,
                format!(
                    "{reader} read {:?} at position {}: {broken}",
                    answer.query, answer.position
                ),
            );
        }
        if answer.query != seen.asked_query {
            observer.violation(
                &READ_YOUR_WRITES,
                format!(
                    "{reader} asked {:?} and was answered {:?}",
                    seen.asked_query, answer.query
                ),
            );
        }
        if answer.fresh {
            if answer.position < seen.asked {
                observer.violation(
                    &READ_YOUR_WRITES,
                    format!(
                        "{reader} passed token {} and got an answer at position {} that says it is fresh",
                        seen.asked, answer.position
                    ),
                );
            }
            // Where the reader's acknowledged commands are, read from the final log: a fresh
            // answer has folded every one of their events.
            for id in &seen.acked_before {
                if let Some(&last) = last_position.get(id) {
                    if last >= answer.position {
                        observer.violation(
                            &READ_YOUR_WRITES,
                            format!(
                                "{reader} read {:?} fresh at position {}, before its own acknowledged command {id} (its last event at {last})",
                                answer.query, answer.position
                            ),
                        );
                    }
                }
            }
        }
        if answer.position > log.len() as u64 {
            observer.violation(
                &READ_YOUR_WRITES,
                format!(
                    "{reader} got an answer at position {}, past the log's end {}",
                    answer.position,
                    log.len()
                ),
            );
            continue;
        }
        while (next as u64) < answer.position {
            fold.push(&log[next]);
            next += 1;
        }
        let expected = fold.expected(&answer.query);
        if expected != answer.body {
            observer.violation(
                &READ_YOUR_WRITES,
                format!(
                    "{reader} read {:?} at position {}: {:?}; the log folds to {expected:?}",
                    answer.query, answer.position, answer.body
                ),
            );
        }
    }
}

/// The checks no mutant reaches first, on hand-made inputs.
#[cfg(test)]
mod tests {
    use super::*;
    use patterns::cqrs::bank::{event_id, BankEvent, BankEventBody};
    use patterns::cqrs::view::Totals;

    fn observer() -> Observer {
        Observer::detached(&[
            COMMAND_ONCE,
            ACKED_DURABLE,
            PRINCIPAL_RECORDED,
            READ_YOUR_WRITES,
            CONSERVATION,
            REBUILD_EQUALS_LIVE,
        ])
    }

    fn event(position: u64, account: &str, command_id: u64, body: BankEventBody) -> RecordedEvent {
        RecordedEvent {
            stream: format!("account-{account}"),
            version: 0,
            position,
            data: BankEvent {
                command_id,
                principal: Some("ann".into()),
                body,
            }
            .to_data(event_id(command_id, 0)),
        }
    }

    fn totals(deposited: i64, balances: i64) -> Answered {
        Answered {
            position: 2,
            fresh: true,
            query: Query::Totals,
            body: QueryBody::Totals(Totals {
                accounts: 1,
                balances,
                deposited,
                withdrawn: 0,
                in_transit: 0,
            }),
        }
    }

    /// Ann's read of `answer` after commands `acked` were acknowledged to her.
    fn seen(answer: Answered, acked: Vec<u64>) -> Seen {
        Seen {
            reader: "ann".into(),
            asked_query: answer.query.clone(),
            asked: answer.position,
            acked_before: acked,
            answer,
        }
    }

    #[test]
    fn a_fresh_answer_before_the_readers_own_write_breaks_read_your_writes() {
        let (mut records, log) = ann();
        // At position 1 the deposit (command 2, at position 1) is not folded in yet.
        let mut before = totals(0, 0);
        before.position = 1;
        records.answers.push(seen(before, vec![1, 2]));
        let observer = observer();
        judge(&observer, &records, &log);
        let found = observer.violations();
        assert!(
            found
                .iter()
                .any(|(i, m)| i == "read-your-writes" && m.contains("command 2")),
            "{found:?}"
        );
    }

    #[test]
    fn an_answer_to_another_query_breaks_read_your_writes() {
        let (mut records, log) = ann();
        let mut other = seen(totals(5, 5), vec![]);
        other.asked_query = Query::Balance("a".into());
        records.answers.push(other);
        let observer = observer();
        judge(&observer, &records, &log);
        let found = observer.violations();
        assert!(
            found
                .iter()
                .any(|(i, m)| i == "read-your-writes" && m.contains("asked")),
            "{found:?}"
        );
    }

    #[test]
    fn an_acknowledged_command_missing_from_the_log_breaks_acked_durable() {
        let (mut records, mut log) = ann();
        records.acked.push((2, records.sent[1].2.clone()));
        log.pop();
        let observer = observer();
        judge(&observer, &records, &log);
        let found = observer.violations();
        assert!(
            found
                .iter()
                .any(|(i, m)| i == "acked-durable" && m.contains("command 2")),
            "{found:?}"
        );
    }

    /// Ann opened `a` (command 1) and deposited 5 (command 2); the log holds both.
    fn ann() -> (Records, Vec<RecordedEvent>) {
        let records = Records {
            sent: vec![
                (
                    1,
                    "ann".into(),
                    vec![("opened".into(), "a".into(), 0, "ann".into())],
                ),
                (
                    2,
                    "ann".into(),
                    vec![("deposited".into(), "a".into(), 5, String::new())],
                ),
            ],
            acked: Vec::new(),
            answers: Vec::new(),
        };
        let log = vec![
            event(
                0,
                "a",
                1,
                BankEventBody::Opened {
                    owner: "ann".into(),
                },
            ),
            event(1, "a", 2, BankEventBody::Deposited { amount: 5 }),
        ];
        (records, log)
    }

    #[test]
    fn a_faithful_answer_passes() {
        let (mut records, log) = ann();
        records.answers.push(seen(totals(5, 5), vec![1, 2]));
        let observer = observer();
        judge(&observer, &records, &log);
        assert!(
            observer.violations().is_empty(),
            "{:?}",
            observer.violations()
        );
    }

    #[test]
    fn an_answer_that_makes_money_breaks_conservation() {
        let (mut records, log) = ann();
        records.answers.push(seen(totals(5, 7), vec![1, 2]));
        let observer = observer();
        judge(&observer, &records, &log);
        let found = observer.violations();
        assert!(found.iter().any(|(i, _)| i == "conservation"), "{found:?}");
    }

    #[test]
    fn a_deposit_applied_twice_breaks_command_once() {
        let (records, mut log) = ann();
        // A second deposit event of another command id: no client sent two.
        log.push(event(2, "a", 9, BankEventBody::Deposited { amount: 5 }));
        let observer = observer();
        judge(&observer, &records, &log);
        let found = observer.violations();
        assert!(found.iter().any(|(i, _)| i == "command-once"), "{found:?}");
    }

    #[test]
    fn retries_within_every_layers_allowance_pass() {
        // One client request, retried twice by its gateway; one copy of the client's request
        // duplicated by the network (two arrivals, so six attempts allowed).
        let faithful = Fanout {
            from_clients: 1,
            at_gateways: 2,
            from_gateways: 6,
            at_adapters: 6,
            from_adapters: 6,
        };
        assert_eq!(amplified(7, &faithful), None);
    }

    #[test]
    fn each_layer_that_multiplies_tries_is_named() {
        let base = Fanout {
            from_clients: 1,
            at_gateways: 1,
            from_gateways: 3,
            at_adapters: 3,
            from_adapters: 3,
        };
        let clients = Fanout {
            from_clients: CLIENT_TRIES as u64 + 1,
            ..base
        };
        assert!(amplified(7, &clients).unwrap().contains("a client sent it"));
        let gateways = Fanout {
            from_gateways: 4,
            at_adapters: 4,
            from_adapters: 4,
            ..base
        };
        assert!(amplified(7, &gateways)
            .unwrap()
            .contains("the gateways sent 4 attempts"));
        let adapters = Fanout {
            from_adapters: 4,
            ..base
        };
        assert!(amplified(7, &adapters)
            .unwrap()
            .contains("the adapters called"));
    }

    #[test]
    fn the_idempotency_key_is_read_from_the_headers_only() {
        let request = b"POST /api/accounts/deposit HTTP/1.1\r\nHost: bank\r\nidempotency-KEY:  42 \r\n\r\n{\"Idempotency-Key\": 9}";
        assert_eq!(idempotency_key(request), Some(42));
        let in_body = b"POST /x HTTP/1.1\r\nHost: bank\r\n\r\nIdempotency-Key: 9";
        assert_eq!(idempotency_key(in_body), None);
        assert_eq!(
            idempotency_key(b"POST /x HTTP/1.1\r\nIdempotency-Key: nine\r\n\r\n"),
            None
        );
    }

    #[test]
    fn an_attempts_head_reads_the_key_of_a_backend_request() {
        let request = BackendRequest {
            request_id: 3,
            route: "accounts".into(),
            method: "POST".into(),
            path: "/api/accounts/deposit".into(),
            query: Some("cid=x".into()),
            principal: Some("ann".into()),
            idempotency_key: Some("42".into()),
            body: serde_json::json!({ "account": "a", "amount": 5 }),
        };
        let bytes = postcard::to_allocvec(&request).expect("encodes");
        let head: AttemptHead = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(head.idempotency_key.as_deref(), Some("42"));
    }

    /// A report at `time_ms`, before message `time_ms` (ids follow time in these inputs).
    fn note(time_ms: u64, change: BreakerChange) -> BreakerNote {
        BreakerNote {
            gateway: NodeId(2),
            time_ns: time_ms * 1_000_000,
            next_message_id: time_ms,
            change,
        }
    }

    fn breaker(instance: &str, open: bool) -> BreakerChange {
        BreakerChange::Breaker {
            instance: instance.into(),
            open,
        }
    }

    /// Message `id`, sent at `id` ms.
    fn sent(gateway: u32, instance: &str, id: u64) -> SentAttempt {
        SentAttempt {
            gateway: NodeId(gateway),
            instance: instance.into(),
            time_ns: id * 1_000_000,
            id,
        }
    }

    fn breaches(notes: &[BreakerNote], attempts: &[SentAttempt]) -> Vec<String> {
        breaker_breaches(notes, attempts, &|gateway: NodeId| {
            format!("g{}", gateway.0)
        })
    }

    #[test]
    fn an_attempt_while_the_breaker_is_open_breaks_breaker_respected() {
        let notes = [
            note(10, breaker("n5:14", true)),
            note(50, breaker("n5:14", false)),
        ];
        let found = breaches(&notes, &[sent(2, "n5:14", 20)]);
        assert_eq!(found.len(), 1);
        // The first message after the report that it opened, at the same instant, counts.
        assert_eq!(breaches(&notes, &[sent(2, "n5:14", 10)]).len(), 1);
        assert!(
            found[0].contains("g2 sent an attempt to n5:14 at 20 ms"),
            "{found:?}"
        );
        // Still open at the end of the run: open for ever.
        let found = breaches(
            &[note(10, breaker("n5:14", true))],
            &[sent(2, "n5:14", 900)],
        );
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn attempts_the_breaker_allowed_pass() {
        let notes = [
            note(10, breaker("n5:14", true)),
            note(50, breaker("n5:14", false)),
            note(70, breaker("n6:14", true)),
            note(80, BreakerChange::Started),
        ];
        let attempts = [
            sent(2, "n5:14", 9),  // before it opened
            sent(2, "n5:14", 50), // half-open's probe, reported first
            sent(2, "n6:14", 20), // another instance
            sent(3, "n5:14", 20), // another gateway's breaker
            sent(2, "n6:14", 90), // after the gateway restarted
        ];
        assert_eq!(breaches(&notes, &attempts), Vec::<String>::new());
    }

    #[test]
    fn a_rebuild_that_differs_is_named() {
        assert_eq!(rebuild_differs(&totals(5, 5), &totals(5, 5)), None);
        assert!(rebuild_differs(&totals(5, 5), &totals(6, 6)).is_some());
        let mut later = totals(5, 5);
        later.position = 3;
        assert!(rebuild_differs(&totals(5, 5), &later).is_some());
    }
}
