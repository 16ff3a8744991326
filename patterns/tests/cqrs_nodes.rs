//! The CQRS nodes on the simulator, without faults: a command's token gives read-your-writes
//! through a view node, a rebuild keeps the answers, and the transfer completer finishes a
//! transfer whose handler stopped after the debit.
#![cfg(madsim)]

use patterns::cqrs::bank::{event_id, stream_of, BankCommand, BankEvent, BankEventBody};
use patterns::cqrs::client::{BankClient, CommandOutcome, QueryOutcome};
use patterns::cqrs::command::{run_command_node, CommandNodeConfig, COMMAND_PORT};
use patterns::cqrs::view::{Query, QueryBody};
use patterns::cqrs::view_node::{run_view_node, ViewHook, ViewNodeConfig, ViewResponse, VIEW_PORT};
use patterns::event_sourcing::driver::{run_node, NodeConfig, NodeHook, StoreClient, STORE_PORT};
use patterns::event_sourcing::event::{AppendRequest, ExpectedVersion};
use sim_core::net::Addr;
use sim_core::{run, SimConfig};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

fn open(account: &str) -> BankCommand {
    BankCommand::Open {
        account: account.into(),
        owner: format!("owner-{account}"),
    }
}

#[test]
fn a_token_reads_its_write_and_a_rebuild_keeps_the_answers() {
    // Goal: through real nodes, a command's token makes the next query fresh and include the
    // command; a rebuild from the log answers the same; a transfer moves the money.
    let report = run(3, SimConfig::default(), |sim| async move {
        let hook: NodeHook = Arc::new(|_| {});
        let store = sim
            .node("store")
            .init(move || run_node(NodeConfig::default(), hook.clone()))
            .build();
        let store = Addr::new(store, STORE_PORT);
        let command = sim
            .node("command")
            .init(move || run_command_node(CommandNodeConfig::new(store)))
            .build();
        let view_hook: ViewHook = Rc::new(|_| {});
        let view = sim
            .node("view")
            .init(move || run_view_node(ViewNodeConfig::new(store), view_hook.clone()))
            .build();
        let client = sim.node("client").build();
        let (command, view) = (Addr::new(command, COMMAND_PORT), Addr::new(view, VIEW_PORT));
        sim.sleep(Duration::from_millis(50)).await;
        let answers = sim.spawn_on(client, async move {
            let bank = BankClient::bind(vec![command], Duration::from_millis(300)).unwrap();
            for (id, step) in [
                open("a"),
                open("b"),
                BankCommand::Deposit {
                    account: "a".into(),
                    amount: 30,
                },
                BankCommand::Transfer {
                    from: "a".into(),
                    to: "b".into(),
                    amount: 12,
                },
            ]
            .into_iter()
            .enumerate()
            {
                let outcome = bank.execute(id as u64 + 1, &step).await;
                assert!(
                    matches!(outcome, CommandOutcome::Done(_)),
                    "{step:?}: {outcome:?}"
                );
            }
            let wait = Duration::from_millis(500);
            let (_, balance) = bank.query(view, &Query::Balance("b".into()), wait).await;
            let (_, before) = bank.query(view, &Query::Dump, wait).await;
            let rebuilt = bank.rebuild(view, Duration::from_secs(3)).await.unwrap();
            let (_, after) = bank.query(view, &Query::Dump, wait).await;
            (balance, before, rebuilt, after)
        });
        let (balance, before, rebuilt, after) = answers.await.unwrap();
        let QueryOutcome::Answered(balance) = balance else {
            panic!("{balance:?}")
        };
        assert!(balance.fresh);
        assert_eq!(balance.body, QueryBody::Balance(Some(12)));
        assert!(
            matches!(rebuilt, ViewResponse::Rebuilt { generation: 1, .. }),
            "{rebuilt:?}"
        );
        let (QueryOutcome::Answered(before), QueryOutcome::Answered(after)) = (before, after)
        else {
            panic!("no dumps");
        };
        assert_eq!((after.generation, after.position), (1, before.position));
        assert_eq!(after.body, before.body);
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}

#[test]
fn the_completer_credits_a_debit_left_without_its_credit() {
    // Goal: a debit appended without its credit (as by a handler that crashed between the
    // two) is credited by the command node's transfer completer, once.
    let report = run(5, SimConfig::default(), |sim| async move {
        let hook: NodeHook = Arc::new(|_| {});
        let store = sim
            .node("store")
            .init(move || run_node(NodeConfig::default(), hook.clone()))
            .build();
        let store = Addr::new(store, STORE_PORT);
        sim.node("command")
            .init(move || run_command_node(CommandNodeConfig::new(store)))
            .build();
        let client = sim.node("client").build();
        sim.sleep(Duration::from_millis(50)).await;
        let events = sim.spawn_on(client, async move {
            let writer = StoreClient::bind(store, Duration::from_millis(300)).unwrap();
            let debit = BankEvent {
                command_id: 7,
                principal: None,
                body: BankEventBody::Debited {
                    amount: 5,
                    to: "b".into(),
                },
            };
            let append = AppendRequest {
                stream: stream_of("a"),
                expected: ExpectedVersion::Any,
                events: vec![debit.to_data(event_id(7, 0))],
            };
            writer.append(&append).await.unwrap().unwrap();
            sim_core::time::sleep(Duration::from_secs(2)).await;
            writer
                .read_stream(&stream_of("b"), 0, 10)
                .await
                .unwrap()
                .unwrap()
        });
        let credits = events.await.unwrap();
        assert_eq!(credits.len(), 1, "{credits:?}");
        let credit = BankEvent::decode(&credits[0]).unwrap().unwrap();
        assert_eq!(credit.command_id, 7);
        assert_eq!(
            credit.body,
            BankEventBody::Credited {
                amount: 5,
                from: "a".into()
            }
        );
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}
