//! The CQRS nodes in a real build (no `--cfg madsim`): an event store node, a command node
//! and a view node run as tasks of a loopback cluster, on real UDP, real files and real
//! fsyncs, and a client node checks what the `cqrs` scenario checks a client sees: commands
//! applied once whatever the retries, queries with the client's consistency token reading
//! their writes, conservation in a dump, a view node that comes back from its durable file and
//! catches up, and a command node killed in the middle of a transfer whose client's retry
//! completes it.
//!
//! Real time: every wait for something that must happen is a polling loop (or a retry) with a
//! generous deadline, and the whole test has a bound; nothing relies on a fixed sleep.
#![cfg(not(madsim))]

use futures::channel::oneshot;
use patterns::cqrs::bank::{BankCommand, BankError, BankEvent};
use patterns::cqrs::client::{BankClient, CommandOutcome, QueryOutcome};
use patterns::cqrs::command::{run_command_node, CommandNodeConfig};
use patterns::cqrs::view::{BankView, Query, QueryBody, Row, Totals};
use patterns::cqrs::view_node::{
    run_view_node, Answer, ViewEvent, ViewHook, ViewNodeConfig, ViewResponse, VIEW_PATH,
};
use patterns::event_sourcing::driver::{run_node, NodeConfig, NodeEvent, NodeHook, StoreClient};
use patterns::event_sourcing::event::RecordedEvent;
use sim_core::net::Addr;
use sim_core::node::{block_on, run_as, Cluster, NodeHandle};
use sim_core::{task, time};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The nodes' ports: the drivers' defaults (7, 11, 12) are privileged.
const STORE_PORT: u16 = 7007;
const COMMAND_PORT: u16 = 7011;
const VIEW_PORT: u16 = 7012;
/// Each call's timeout: short enough that a call lost to a kill is retried soon.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a query may wait at the view node for the client's position (the node's cap).
const QUERY_WAIT: Duration = Duration::from_secs(2);
/// How long anything that must happen may take (a loaded machine's fsyncs are slow).
const MUST_HAPPEN_WITHIN: Duration = Duration::from_secs(10);
/// The bound on a whole test.
const TEST_BOUND: Duration = Duration::from_secs(30);
/// The pause between two polls of a condition, or two attempts at a query that failed.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// A data root of its own for one test, removed when dropped.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(test: &str) -> TempRoot {
        let path =
            std::env::temp_dir().join(format!("patterns-real-cqrs-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempRoot(path)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `test` on a runtime of its own, failing it past the bound.
fn bounded<F: Future<Output = ()>>(test: F) {
    block_on(async {
        time::timeout(TEST_BOUND, test)
            .await
            .expect("the test finished within its bound");
    });
}

/// Counts the store's openings and the events its commits made durable, and tells a waiter
/// when a count of events is reached. The store's hook runs inside its loop right after a
/// commit's answers were sent, so the waiter usually runs before the command node reads its
/// answer: that is how a test kills the command node between a transfer's debit and its
/// credit (were it later, the test would check a whole transfer instead).
#[derive(Default)]
struct StoreWatch {
    /// Times the store opened its files: it serves from then on (or after its recovery
    /// commit, answering "recovering" meanwhile, which clients retry).
    opens: AtomicU64,
    events: AtomicU64,
    waiter: Mutex<Option<(u64, oneshot::Sender<()>)>>,
}

impl StoreWatch {
    fn on_event(&self, event: &NodeEvent) {
        let events = match event {
            NodeEvent::Committed { events, .. } => events,
            NodeEvent::Opened { .. } => {
                self.opens.fetch_add(1, Ordering::SeqCst);
                return;
            }
            _ => return,
        };
        let durable = self.events.fetch_add(*events, Ordering::SeqCst) + events;
        let mut waiter = self.waiter.lock().unwrap_or_else(PoisonError::into_inner);
        if waiter.as_ref().is_some_and(|(count, _)| durable >= *count) {
            if let Some((_, sender)) = waiter.take() {
                let _ = sender.send(());
            }
        }
    }

    /// Resolves once `count` events are durable.
    fn when_durable(&self, count: u64) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        if self.events.load(Ordering::SeqCst) >= count {
            let _ = sender.send(());
        } else {
            *self.waiter.lock().unwrap_or_else(PoisonError::into_inner) = Some((count, sender));
        }
        receiver
    }
}

/// The system: a store, a command node and a view node, all started; a client node to run
/// the workload as.
struct System {
    cluster: Cluster,
    command: NodeHandle,
    view: NodeHandle,
    store_addr: Addr,
    command_addr: Addr,
    view_addr: Addr,
    store_watch: Arc<StoreWatch>,
    view_events: Rc<RefCell<Vec<ViewEvent>>>,
}

fn start(root: &TempRoot) -> System {
    let cluster = Cluster::loopback(&["store", "command", "view", "client"], &root.0)
        .expect("a valid cluster");
    let id = |name: &str| cluster.id(name).expect("a node of the cluster");
    let store_addr = Addr::new(id("store"), STORE_PORT);
    let store_watch = Arc::new(StoreWatch::default());
    let watch = store_watch.clone();
    let store_hook: NodeHook = Arc::new(move |event: &NodeEvent| watch.on_event(event));
    // Never killed by these tests (the event store's own test does that).
    let _store = cluster.start(id("store"), move || {
        let config = NodeConfig {
            port: STORE_PORT,
            ..NodeConfig::default()
        };
        run_node(config, store_hook.clone())
    });
    let command = cluster.start(id("command"), move || {
        let mut config = CommandNodeConfig::new(store_addr);
        config.port = COMMAND_PORT;
        run_command_node(config)
    });
    let view_events: Rc<RefCell<Vec<ViewEvent>>> = Rc::default();
    let seen = view_events.clone();
    let view_hook: ViewHook =
        Rc::new(move |event: &ViewEvent| seen.borrow_mut().push(event.clone()));
    let view = cluster.start(id("view"), move || {
        let mut config = ViewNodeConfig::new(store_addr);
        config.port = VIEW_PORT;
        run_view_node(config, view_hook.clone())
    });
    System {
        command_addr: Addr::new(id("command"), COMMAND_PORT),
        view_addr: Addr::new(id("view"), VIEW_PORT),
        cluster,
        command,
        view,
        store_addr,
        store_watch,
        view_events,
    }
}

impl System {
    fn client_node(&self) -> sim_core::NodeId {
        self.cluster.id("client").expect("the client node")
    }

    /// The positions the view node reported opening its stored model at, in order.
    fn view_opened_at(&self) -> Vec<u64> {
        self.view_events
            .borrow()
            .iter()
            .filter_map(|event| match event {
                ViewEvent::Opened { position } => Some(*position),
                _ => None,
            })
            .collect()
    }

    /// Waits until the store serves and the view node has opened its model `opens` times in
    /// all, so that its socket is bound: a datagram to a port not bound yet is lost, and its
    /// call waits out its whole timeout (2.5 s for a query). The command node binds its
    /// socket in the first poll of its task, which the runtime ran before the view's (were it
    /// not so, the first command's attempt would only be retried later).
    async fn wait_until_ready(&self, opens: usize) {
        let deadline = time::now() + MUST_HAPPEN_WITHIN;
        while self.store_watch.opens.load(Ordering::SeqCst) == 0
            || self.view_opened_at().len() < opens
        {
            assert!(time::now() < deadline, "the nodes did not start");
            time::sleep(POLL_EVERY).await;
        }
    }
}

fn open(account: &str) -> BankCommand {
    BankCommand::Open {
        account: account.into(),
        owner: format!("owner-{account}"),
    }
}

fn deposit(account: &str, amount: u64) -> BankCommand {
    BankCommand::Deposit {
        account: account.into(),
        amount,
    }
}

fn transfer(from: &str, to: &str, amount: u64) -> BankCommand {
    BankCommand::Transfer {
        from: from.into(),
        to: to.into(),
        amount,
    }
}

/// Executes a command until a definite answer: the client retries with the same command id
/// (the command node and the store apply it once), and gives up only at the deadline: an
/// attempt may meet a command node that is starting, or lose its answer.
async fn execute(bank: &BankClient, command_id: u64, command: &BankCommand) -> CommandOutcome {
    let deadline = time::now() + MUST_HAPPEN_WITHIN;
    loop {
        match bank.execute(command_id, command).await {
            CommandOutcome::Unknown(why) => {
                assert!(
                    time::now() < deadline,
                    "command {command_id} has no definite answer: {why}"
                );
            }
            definite => return definite,
        }
    }
}

/// Executes a command that must be done; returns its token.
async fn done(bank: &BankClient, command_id: u64, command: &BankCommand) -> u64 {
    match execute(bank, command_id, command).await {
        CommandOutcome::Done(token) => token,
        other => panic!("command {command_id} ({command:?}) answered {other:?}"),
    }
}

/// Asks `query` at the client's position until a fresh answer. A stale answer must say so
/// (its position below the one asked); a fresh one must reach it.
async fn fresh(bank: &BankClient, view: Addr, query: &Query) -> Answer {
    let deadline = time::now() + MUST_HAPPEN_WITHIN;
    loop {
        let (asked, outcome) = bank.query(view, query, QUERY_WAIT).await;
        match outcome {
            QueryOutcome::Answered(answer) if answer.fresh => {
                assert!(answer.position >= asked, "fresh below {asked}: {answer:?}");
                return answer;
            }
            QueryOutcome::Answered(answer) => {
                assert!(answer.position < asked, "stale at {asked}: {answer:?}");
            }
            // No answer (the node is opening its model, or the answer was lost): ask again.
            QueryOutcome::Failed(_) => time::sleep(POLL_EVERY).await,
        }
        assert!(time::now() < deadline, "no fresh answer to {query:?}");
    }
}

fn balance(answer: &Answer) -> Option<i64> {
    match answer.body {
        QueryBody::Balance(balance) => balance,
        ref other => panic!("not a balance: {other:?}"),
    }
}

fn dump(answer: &Answer) -> (&BTreeMap<String, Row>, Totals) {
    match &answer.body {
        QueryBody::Dump { rows, totals } => (rows, *totals),
        other => panic!("not a dump: {other:?}"),
    }
}

/// Checks conservation in a dump, from its rows and with arithmetic of its own: every balance
/// is the sum of its statement, no balance is below zero, and balances + in transit =
/// deposited - withdrawn = `deposited_by_client` (the client withdrew nothing).
fn assert_conserved(answer: &Answer, deposited_by_client: i64) {
    let (rows, totals) = dump(answer);
    let mut balances = 0;
    let mut deposited = 0;
    for (account, row) in rows {
        let statement: i64 = row.entries.iter().map(|entry| entry.amount).sum();
        assert_eq!(row.balance, statement, "account {account}'s statement");
        assert!(row.balance >= 0, "account {account}: {}", row.balance);
        balances += row.balance;
        deposited += row
            .entries
            .iter()
            .filter(|entry| entry.kind == "deposit")
            .map(|entry| entry.amount)
            .sum::<i64>();
    }
    assert_eq!(deposited, deposited_by_client, "deposits in the statements");
    assert_eq!(totals.balances, balances);
    assert_eq!(totals.deposited, deposited_by_client);
    assert_eq!(
        totals.balances + totals.in_transit,
        totals.deposited - totals.withdrawn,
        "{totals:?}"
    );
}

/// Every event of the log, read from the store directly.
async fn read_log(store: Addr) -> Vec<RecordedEvent> {
    let reader = StoreClient::bind(store, CALL_TIMEOUT).expect("a store client");
    let deadline = time::now() + MUST_HAPPEN_WITHIN;
    loop {
        match reader.read_all(0, 256).await {
            Ok(Ok(events)) => return events,
            other => assert!(time::now() < deadline, "reading the log: {other:?}"),
        }
    }
}

/// The log's bank events of command `command_id`, by kind.
fn events_of(log: &[RecordedEvent], command_id: u64) -> Vec<&'static str> {
    log.iter()
        .filter_map(|event| BankEvent::decode(event).ok().flatten())
        .filter(|event| event.command_id == command_id)
        .map(|event| event.body.event_type())
        .collect()
}

#[test]
fn commands_apply_once_and_queries_with_the_token_read_them_with_money_conserved() {
    // Goal: on real nodes, commands are done or refused definitely; a query with the
    // client's token is fresh and includes its commands; a dump conserves money; and a
    // command retried with its id (as after a lost answer) is answered with its first token
    // and leaves one set of events in the log.
    let root = TempRoot::new("commands");
    bounded(async {
        let system = start(&root);
        run_as(system.client_node(), async {
            let bank =
                BankClient::bind(vec![system.command_addr], CALL_TIMEOUT).expect("a client socket");
            let view = system.view_addr;
            system.wait_until_ready(1).await;
            done(&bank, 1, &open("a")).await;
            done(&bank, 2, &open("b")).await;
            let deposited = done(&bank, 3, &deposit("a", 100)).await;
            done(&bank, 4, &deposit("b", 40)).await;
            let moved = done(&bank, 5, &transfer("a", "b", 30)).await;
            assert_eq!(
                execute(&bank, 6, &transfer("a", "b", 1_000)).await,
                CommandOutcome::Refused(BankError::InsufficientFunds {
                    balance: 70,
                    amount: 1_000
                })
            );
            assert_eq!(
                execute(&bank, 7, &open("a")).await,
                CommandOutcome::Refused(BankError::AlreadyOpen)
            );

            // Read-your-writes: the token of the transfer is in the client's position.
            assert_eq!(bank.min_position(), moved + 1);
            let b = fresh(&bank, view, &Query::Balance("b".into())).await;
            assert_eq!(balance(&b), Some(70));
            let a = fresh(&bank, view, &Query::Balance("a".into())).await;
            assert_eq!(balance(&a), Some(70));
            let statement = fresh(&bank, view, &Query::Statement("b".into())).await;
            let QueryBody::Statement(Some(entries)) = &statement.body else {
                panic!("{statement:?}");
            };
            let lines: Vec<(&str, i64, u64)> = entries
                .iter()
                .map(|entry| (entry.kind.as_str(), entry.amount, entry.command_id))
                .collect();
            assert_eq!(lines, [("deposit", 40, 4), ("transfer-in", 30, 5)]);
            let before = fresh(&bank, view, &Query::Dump).await;
            assert_conserved(&before, 140);
            assert_eq!(dump(&before).1.in_transit, 0);

            // Retries with the same ids, as a client that lost the answers sends them.
            assert_eq!(done(&bank, 5, &transfer("a", "b", 30)).await, moved);
            assert_eq!(done(&bank, 3, &deposit("a", 100)).await, deposited);
            let after = fresh(&bank, view, &Query::Dump).await;
            assert_eq!(after.body, before.body, "the retries changed nothing");
            let log = read_log(system.store_addr).await;
            assert_eq!(events_of(&log, 5), ["bank.debited", "bank.credited"]);
            assert_eq!(events_of(&log, 3), ["bank.deposited"]);
            assert_eq!(
                events_of(&log, 6),
                Vec::<&str>::new(),
                "a refusal writes nothing"
            );
            assert_eq!(
                log.len(),
                6,
                "two opens, two deposits, a debit and a credit"
            );
        })
        .await;
    });
}

#[test]
fn a_killed_view_node_comes_back_from_its_file_and_catches_up() {
    // Goal: the view node's model is durable: killed and started again, it opens its file at
    // the position it had answered from, catches up with what was written while it was down,
    // answers fresh with the client's token, and matches a model rebuilt from the log.
    let root = TempRoot::new("view-restart");
    bounded(async {
        let system = start(&root);
        run_as(system.client_node(), async {
            let bank =
                BankClient::bind(vec![system.command_addr], CALL_TIMEOUT).expect("a client socket");
            let view = system.view_addr;
            system.wait_until_ready(1).await;
            done(&bank, 1, &open("a")).await;
            done(&bank, 2, &open("b")).await;
            done(&bank, 3, &deposit("a", 50)).await;
            done(&bank, 4, &transfer("a", "b", 20)).await;
            let before = fresh(&bank, view, &Query::Dump).await;
            assert_conserved(&before, 50);

            system.view.kill().await;
            // What the node left on its disk: a whole model, at least where it answered from
            // (it serves only what it stored).
            let file = std::fs::read(root.0.join("view").join(VIEW_PATH)).expect("the view file");
            let stored = BankView::decode(&file).expect("an intact view file");
            assert!(
                stored.position >= before.position,
                "{} < {}",
                stored.position,
                before.position
            );
            assert_eq!(stored.answer(&Query::Dump), before.body);

            // The write side does not need the read side.
            done(&bank, 5, &deposit("b", 5)).await;
            system.view.restart().await;
            system.wait_until_ready(2).await;
            let after = fresh(&bank, view, &Query::Dump).await;
            assert_conserved(&after, 55);
            let (rows, totals) = dump(&after);
            assert_eq!((rows["a"].balance, rows["b"].balance), (30, 25));
            assert_eq!(totals.accounts, 2);
            assert_eq!(
                system.view_opened_at(),
                [0, stored.position],
                "the restarted node opened the model it had stored"
            );

            // A model rebuilt from scratch from the log answers the same.
            let rebuilt = bank.rebuild(view, Duration::from_secs(5)).await;
            assert!(
                matches!(rebuilt, Ok(ViewResponse::Rebuilt { generation: 1, .. })),
                "{rebuilt:?}"
            );
            let rebuilt = fresh(&bank, view, &Query::Dump).await;
            assert_eq!(rebuilt.generation, 1);
            assert_eq!(rebuilt.body, after.body);
        })
        .await;
    });
}

#[test]
fn a_command_node_killed_mid_transfer_completes_it_on_the_client_s_retry() {
    // Goal: the command node is killed right after the store made a transfer's debit durable
    // (before its credit, as a crash between the two appends) and started again; the client's
    // call is lost, it retries with the same command id, and the transfer completes exactly
    // once: one debit, one credit, money conserved.
    let root = TempRoot::new("command-restart");
    bounded(async {
        let system = start(&root);
        run_as(system.client_node(), async {
            let bank = Rc::new(
                BankClient::bind(vec![system.command_addr], CALL_TIMEOUT).expect("a client socket"),
            );
            system.wait_until_ready(1).await;
            done(&bank, 1, &open("a")).await;
            done(&bank, 2, &open("b")).await;
            done(&bank, 3, &deposit("a", 100)).await;
            // Three events so far; the transfer's debit is the fourth.
            let debit_durable = system.store_watch.when_durable(4);
            let client = bank.clone();
            let transfer_task =
                task::spawn(async move { execute(&client, 4, &transfer("a", "b", 25)).await });
            time::timeout(MUST_HAPPEN_WITHIN, debit_durable)
                .await
                .expect("the debit became durable")
                .expect("the store's hook is alive");
            system.command.kill().await;
            let at_kill = read_log(system.store_addr).await;
            eprintln!(
                "the command node was killed with the transfer's events {:?} in the log",
                events_of(&at_kill, 4)
            );
            system.command.restart().await;

            let outcome = transfer_task.await.expect("the client's task ran");
            let CommandOutcome::Done(token) = outcome else {
                panic!("the transfer answered {outcome:?}");
            };
            let log = read_log(system.store_addr).await;
            assert_eq!(events_of(&log, 4), ["bank.debited", "bank.credited"]);
            assert_eq!(
                log[token as usize].data.event_type, "bank.credited",
                "the token is the credit's"
            );
            let answer = fresh(&bank, system.view_addr, &Query::Dump).await;
            assert_conserved(&answer, 100);
            let (rows, totals) = dump(&answer);
            assert_eq!((rows["a"].balance, rows["b"].balance), (75, 25));
            assert_eq!(totals.in_transit, 0);
        })
        .await;
        assert_eq!(system.command.incarnation(), 1);
    });
}
