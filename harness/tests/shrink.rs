//! Causal shrinking: a fault on one link does not shift the random choices of another, so a
//! shrunk plan keeps only the episodes that matter, and the shrinker checks it is 1-minimal.

use harness::case::DynScenario;
use harness::plan::{Fault, FaultKind};
use harness::{Checked, Env, Episode, FaultBudget, Invariant, RunOptions, Scenario, ScenarioSpec};
use proptest::prelude::*;
use sim_core::net::{Addr, Socket};
use sim_core::SimConfig;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

const PORT: u16 = 7;
const MESSAGES: u64 = 30;
/// The message whose loss is the failure.
const WATCHED: u64 = 3;

static WATCHED_ARRIVES: Invariant =
    Invariant::always("watched-arrives", "message 3 from a reaches b");

/// Two independent pairs: a sends to b, c sends to d, one message every 10 ms each.
#[derive(Clone)]
struct Relay;

impl Scenario for Relay {
    type Workload = ();
    /// What b received.
    type System = Rc<RefCell<BTreeSet<u64>>>;

    fn spec(&self) -> ScenarioSpec {
        ScenarioSpec {
            name: "relay".into(),
            description: "two independent sender-receiver pairs".into(),
            nodes: ["a", "b", "c", "d"].map(String::from).to_vec(),
            budget: FaultBudget {
                kinds: [FaultKind::Loss].into_iter().collect(),
                ..FaultBudget::default()
            },
            invariants: vec![WATCHED_ARRIVES],
            mutants: vec![],
            sometimes_batch_min: 10,
            sim_config: SimConfig {
                time_limit_ms: 30_000,
                ..SimConfig::default()
            },
        }
    }

    fn workload(&self) -> BoxedStrategy<()> {
        Just(()).boxed()
    }

    fn setup(&self, env: &Env, _: &()) -> Self::System {
        let received = Rc::new(RefCell::new(BTreeSet::new()));
        let receiver = |name: &str, received: Option<Rc<RefCell<BTreeSet<u64>>>>| {
            env.sim
                .node(name)
                .init(move || {
                    let received = received.clone();
                    async move {
                        let socket = Socket::bind(PORT).expect("bind");
                        while let Ok((_, number)) = socket.recv::<u64>().await {
                            if let Some(received) = &received {
                                received.borrow_mut().insert(number);
                            }
                        }
                    }
                })
                .build()
        };
        let b = receiver("b", Some(received.clone()));
        let d = receiver("d", None);
        for (name, to) in [("a", b), ("c", d)] {
            env.sim
                .node(name)
                .init(move || async move {
                    let socket = Socket::bind(PORT).expect("bind");
                    for number in 0..MESSAGES {
                        let _ = socket.send(Addr::new(to, PORT), &number);
                        sim_core::time::sleep(Duration::from_millis(10)).await;
                    }
                })
                .build();
        }
        received
    }

    async fn drive(&self, env: &Env, received: &Self::System, _: ()) -> Checked {
        env.sim
            .sleep(Duration::from_millis(MESSAGES * 10 + 100))
            .await;
        if received.borrow().contains(&WATCHED) {
            Ok(())
        } else {
            Err(WATCHED_ARRIVES.violated("message 3 from a never reached b"))
        }
    }
}

#[test]
fn an_unrelated_link_fault_is_shrunk_away_and_the_result_is_1_minimal() {
    // Goal: message 3 on a -> b is lost by that link's own draw; a loss on c -> d draws from
    // c -> d's stream only, so removing it leaves a -> b's draws, and the failure, as they
    // were. The shrinker keeps only the a -> b episode and checks that it is needed.
    let loss = |from: &str, to: &str| Episode {
        at_ms: 0,
        duration_ms: Some(1_000),
        fault: Fault::LinkLoss {
            from: from.into(),
            to: to.into(),
            probability: 0.5,
        },
    };
    let options = RunOptions::default();
    let mut failing = 0;
    for seed in 0..24 {
        let mut case = Relay.generate(seed, None, [FaultKind::Loss].into_iter().collect());
        case.plan.episodes = vec![loss("a", "b"), loss("c", "d")];
        let verdict = Relay.run_case(&case, &options).unwrap().verdict;
        if verdict.is_pass() {
            continue;
        }
        failing += 1;
        let shrunk = harness::shrink::shrink(&Relay, &case, &verdict, &options);
        assert!(
            shrunk.reproduced && shrunk.minimal,
            "seed {seed}: {shrunk:?}"
        );
        let faults: Vec<&Fault> = shrunk.case.plan.episodes.iter().map(|e| &e.fault).collect();
        assert_eq!(
            faults,
            vec![&loss("a", "b").fault],
            "seed {seed}: {}",
            shrunk.case.plan
        );
    }
    // At probability 0.5, about half the seeds lose message 3.
    assert!(failing >= 6, "{failing} of 24 seeds failed");
}
