//! Scripted tests and properties of the discovery cores: registration rules and bad input,
//! leases on the monotonic clock (also learned by anti-entropy, across a pause, across a
//! wall-clock jump), no resurrection, convergence of replicas, the client cache, watches and
//! the stored state; and each mutant shown breaking the rule it targets.
//!
//! Mutants exist in simulation builds only (`--cfg madsim`): the tests of a mutant, and the
//! mutant cases of the others, are compiled there only; the rest runs in every build.

use patterns::discovery::cache::WatchGap;
#[cfg(madsim)]
use patterns::discovery::mutant::Mutant;
use patterns::discovery::mutant::Mutants;
use patterns::discovery::registry::{Answer, RestoreError, WatchAnswer};
use patterns::discovery::{
    ClientCache, DownReason, HeartbeatReply, Key, Now, Record, RegisterError, Registration,
    Replica, ReplicaConfig, Status,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use std::time::Duration;

const TTL: Duration = Duration::from_secs(2);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at(n: u64) -> Now {
    Now::from_monotonic(ms(n))
}

fn config(replica: u64, mutants: Mutants) -> ReplicaConfig {
    ReplicaConfig {
        replica,
        mutants,
        ..ReplicaConfig::default()
    }
}

fn replica(mutants: Mutants) -> Replica {
    Replica::new(config(0, mutants), at(0)).unwrap()
}

fn key(instance: &str) -> Key {
    Key::new("orders", instance)
}

fn registration(instance: &str, incarnation: u64, address: &str) -> Registration {
    Registration {
        key: key(instance),
        address: address.to_owned(),
        incarnation,
        ttl: TTL,
    }
}

fn healthy(replica: &Replica) -> Vec<String> {
    replica
        .discover("orders")
        .healthy()
        .map(|(key, _)| key.instance.clone())
        .collect()
}

/// Ticks every 100 ms from `from` to `to` (inclusive), as a driver would.
fn tick_through(replica: &mut Replica, from: u64, to: u64) {
    let mut t = from;
    while t <= to {
        replica.tick(at(t));
        t += 100;
    }
}

#[test]
fn bad_registrations_get_clear_errors() {
    let mut r = replica(Mutants::none());
    let now = at(0);
    let empty = Registration {
        key: Key::new("", "a"),
        ..registration("a", 1, "x:1")
    };
    assert!(matches!(
        r.register(now, empty),
        Err(RegisterError::InvalidName { .. })
    ));
    let long = Registration {
        key: Key::new("orders", &"i".repeat(200)),
        ..registration("a", 1, "x:1")
    };
    assert!(matches!(
        r.register(now, long),
        Err(RegisterError::InvalidName { .. })
    ));
    assert!(matches!(
        r.register(now, registration("a", 1, "")),
        Err(RegisterError::InvalidAddress { .. })
    ));
    let absurd = Registration {
        ttl: Duration::from_secs(86_400),
        ..registration("a", 1, "x:1")
    };
    let error = r.register(now, absurd).unwrap_err();
    assert_eq!(
        error.to_string(),
        "TTL 86400000 ms is outside 500..=60000 ms"
    );
    r.register(now, registration("a", 2, "x:1")).unwrap();
    // The same incarnation again, same address: idempotent; another address: refused.
    r.register(now, registration("a", 2, "x:1")).unwrap();
    assert_eq!(
        r.register(now, registration("a", 2, "y:1")),
        Err(RegisterError::AddressConflict {
            incarnation: 2,
            address: "x:1".into()
        })
    );
    assert_eq!(
        r.register(now, registration("a", 1, "x:1")),
        Err(RegisterError::Stale {
            incarnation: 1,
            current: 2
        })
    );
    // A moved instance registers a higher incarnation at its new address.
    r.register(now, registration("a", 3, "y:1")).unwrap();
    assert_eq!(r.record(&key("a")).unwrap().address, "y:1");
}

#[test]
fn heartbeats_keep_a_lease_and_silence_expires_it() {
    let mut r = replica(Mutants::none());
    r.register(at(0), registration("a", 1, "x:1")).unwrap();
    for t in (500..=4_000).step_by(500) {
        assert_eq!(r.heartbeat(at(t), &key("a"), 1), HeartbeatReply::Renewed);
        tick_through(&mut r, t - 400, t);
    }
    assert_eq!(healthy(&r), ["a"]);
    // Last heartbeat at 4 s: still up at 6 s (2 s TTL), down by the first tick after.
    tick_through(&mut r, 4_100, 6_000);
    assert_eq!(healthy(&r), ["a"]);
    tick_through(&mut r, 6_100, 6_100);
    assert!(healthy(&r).is_empty());
    assert_eq!(
        r.record(&key("a")).unwrap().status,
        Status::Down(DownReason::Expired)
    );
    assert_eq!(
        r.heartbeat(at(6_200), &key("a"), 1),
        HeartbeatReply::Gone(DownReason::Expired)
    );
    assert_eq!(
        r.heartbeat(at(6_200), &key("a"), 0),
        HeartbeatReply::Superseded
    );
    assert_eq!(
        r.heartbeat(at(6_200), &key("a"), 2),
        HeartbeatReply::Unknown
    );
    // It comes back only as a new incarnation.
    assert!(r.register(at(6_200), registration("a", 1, "x:1")).is_err());
    r.register(at(6_200), registration("a", 2, "x:1")).unwrap();
    assert_eq!(healthy(&r), ["a"]);
}

#[test]
fn a_deregistered_instance_is_not_revived_by_a_late_heartbeat() {
    let cases = [
        (Mutants::none(), false),
        #[cfg(madsim)]
        (Mutants::only(Mutant::StaleHeartbeatRevives), true),
    ];
    for (mutants, revived) in cases {
        let mut r = replica(mutants);
        r.register(at(0), registration("a", 1, "x:1")).unwrap();
        assert!(r.deregister(&key("a"), 1));
        let reply = r.heartbeat(at(10), &key("a"), 1);
        assert_eq!(healthy(&r).len() == 1, revived, "{reply:?}");
    }
}

#[test]
fn a_lease_learned_by_anti_entropy_keeps_its_age() {
    // Replica B hears of the instance only from A, every 300 ms, while the instance is dead
    // (its last heartbeat reached A at 0). B must expire it when A does, not keep restarting
    // the lease; under lease-reset-on-sync it never expires at B.
    let cases = [
        (Mutants::none(), true),
        #[cfg(madsim)]
        (Mutants::only(Mutant::LeaseResetOnSync), false),
    ];
    for (mutants, expires_at_b) in cases {
        let mut a = Replica::new(config(1, Mutants::none()), at(0)).unwrap();
        let mut b = Replica::new(config(2, mutants), at(0)).unwrap();
        a.register(at(0), registration("a", 1, "x:1")).unwrap();
        let mut t = 0;
        while t <= 1_800 {
            if t % 300 == 0 {
                b.merge(at(t), a.gossip(at(t)));
                // A also hears of B, but B's age never beats A's own.
                a.merge(at(t), b.gossip(at(t)));
            }
            // B ticks on time (a late tick would not count against the lease).
            tick_through(&mut b, t, t);
            t += 100;
        }
        tick_through(&mut b, 1_900, 2_200);
        assert_eq!(healthy(&b).is_empty(), expires_at_b);
    }
}

#[test]
fn a_relayed_heartbeat_renews_the_lease_at_every_replica() {
    let mut a = Replica::new(config(1, Mutants::none()), at(0)).unwrap();
    let mut b = Replica::new(config(2, Mutants::none()), at(0)).unwrap();
    a.register(at(0), registration("a", 1, "x:1")).unwrap();
    b.merge(at(0), a.gossip(at(0)));
    // Heartbeats reach only A; B learns each by anti-entropy.
    for t in (500..=5_000).step_by(500) {
        a.heartbeat(at(t), &key("a"), 1);
        b.merge(at(t + 50), a.gossip(at(t + 50)));
        tick_through(&mut b, t, t + 400);
    }
    assert_eq!(healthy(&b), ["a"]);
}

#[test]
fn the_replicas_own_pause_evicts_nobody() {
    let cases = [
        (Mutants::none(), false),
        #[cfg(madsim)]
        (Mutants::only(Mutant::EvictAfterPause), true),
    ];
    for (mutants, evicted) in cases {
        let mut r = replica(mutants);
        r.register(at(0), registration("a", 1, "x:1")).unwrap();
        tick_through(&mut r, 0, 1_000);
        r.heartbeat(at(1_000), &key("a"), 1);
        // The replica freezes for 5 s (its next tick comes late); the instance kept
        // heartbeating, but its heartbeats queue up behind the pause.
        r.tick(at(6_000));
        assert_eq!(healthy(&r).is_empty(), evicted);
        r.heartbeat(at(6_001), &key("a"), 1);
    }
}

#[test]
fn a_wall_clock_jump_expires_nobody() {
    let cases = [
        (Mutants::none(), false),
        #[cfg(madsim)]
        (Mutants::only(Mutant::ExpiryOnWallClock), true),
    ];
    for (mutants, expired) in cases {
        let mut r = replica(mutants);
        r.register(at(0), registration("a", 1, "x:1")).unwrap();
        r.tick(at(100));
        let jumped = Now::new(ms(200), at(200).wall + Duration::from_secs(3_600));
        r.tick(jumped);
        assert_eq!(healthy(&r).is_empty(), expired);
    }
}

#[test]
fn stored_state_round_trips_and_damage_is_refused() {
    let mut r = replica(Mutants::none());
    r.register(at(0), registration("a", 1, "x:1")).unwrap();
    r.register(at(0), registration("b", 4, "y:1")).unwrap();
    r.deregister(&key("b"), 4);
    assert!(r.take_dirty());
    assert!(!r.take_dirty());
    let bytes = r.state_bytes();
    let back = Replica::restore(config(0, Mutants::none()), at(50), &bytes).unwrap();
    assert_eq!(back.discover("orders"), r.discover("orders"));
    let mut damaged = bytes.clone();
    damaged[3] ^= 0x10;
    assert!(matches!(
        Replica::restore(config(0, Mutants::none()), at(50), &damaged),
        Err(RestoreError::Corrupt(_))
    ));
    assert!(Replica::restore(config(0, Mutants::none()), at(50), &[1, 2]).is_err());
}

fn answer(records: &[(&str, u64, Status)]) -> Answer {
    Answer {
        replica: 0,
        records: records
            .iter()
            .map(|(instance, incarnation, status)| {
                let record = Record {
                    address: format!("{instance}:1"),
                    incarnation: *incarnation,
                    status: *status,
                };
                (key(instance), record)
            })
            .collect(),
    }
}

#[test]
fn the_client_cache_never_goes_backwards_and_survives_an_empty_answer() {
    let cases = [
        (Mutants::none(), false),
        #[cfg(madsim)]
        (Mutants::only(Mutant::EmptyAnswerWipesCache), true),
    ];
    for (mutants, wiped) in cases {
        let mut cache = ClientCache::new(mutants);
        cache.apply_answer(
            "orders",
            &answer(&[("a", 2, Status::Up), ("b", 1, Status::Up)]),
        );
        // A stale replica still shows an older incarnation, and a deregistered one up.
        let down = Status::Down(DownReason::Deregistered);
        cache.apply_answer("orders", &answer(&[("a", 1, Status::Up), ("b", 1, down)]));
        cache.apply_answer("orders", &answer(&[("b", 1, Status::Up)]));
        let names = |cache: &ClientCache| -> Vec<String> {
            cache
                .healthy("orders")
                .into_iter()
                .map(|(key, _)| key.instance)
                .collect()
        };
        assert_eq!(names(&cache), ["a"]);
        assert_eq!(cache.record(&key("a")).unwrap().incarnation, 2);
        // A replica that knows nothing (partitioned, or restarted empty).
        cache.apply_answer("orders", &answer(&[]));
        assert_eq!(names(&cache).is_empty(), wiped);
    }
}

#[test]
fn watches_are_ordered_gapless_and_resume_or_resync() {
    let mut r = Replica::new(
        ReplicaConfig {
            watch_log_max: 3,
            ..config(7, Mutants::none())
        },
        at(0),
    )
    .unwrap();
    let log = r.log_id();
    let mut cache = ClientCache::new(Mutants::none());
    // Nothing yet: no events, and the watch has nothing to resume from.
    cache
        .apply_watch("orders", &r.watch("orders", log, 0))
        .unwrap();
    assert_eq!(cache.cursor("orders"), None);
    r.register(at(0), registration("a", 1, "x:1")).unwrap();
    r.register(at(0), registration("b", 1, "y:1")).unwrap();
    let answer = r.watch("orders", log, 0);
    let WatchAnswer::Events(events) = &answer else {
        panic!("{answer:?}")
    };
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    // Out of order: refused, nothing applied.
    let skipped = WatchAnswer::Events(vec![events[1].clone()]);
    assert_eq!(
        cache.apply_watch("orders", &skipped),
        Err(WatchGap {
            service: "orders".into(),
            replica: log,
            expected: 1,
            got: 2
        })
    );
    cache.apply_watch("orders", &answer).unwrap();
    // Duplicates are ignored.
    cache.apply_watch("orders", &answer).unwrap();
    assert_eq!(cache.cursor("orders"), Some((log, 2)));
    assert_eq!(cache.healthy("orders").len(), 2);
    // Too far behind (the log keeps 3 events): a resync with every record.
    for incarnation in 2..6 {
        r.register(at(0), registration("a", incarnation, "x:1"))
            .unwrap();
    }
    assert!(matches!(
        r.watch("orders", log, 2),
        WatchAnswer::Resync { seq: 6, .. }
    ));
    // Another replica's numbers mean nothing here: a resync too.
    assert!(matches!(
        r.watch("orders", log + 1, 6),
        WatchAnswer::Resync { .. }
    ));
    assert!(matches!(r.watch("orders", log, 5), WatchAnswer::Events(ref e) if e.len() == 1));
    // After a restart the numbering starts again: a cursor of the last boot gets a resync,
    // never the new boot's events as if they followed it.
    let restarted = Replica::restore(config(7, Mutants::none()), at(10), &r.state_bytes()).unwrap();
    assert_ne!(restarted.log_id(), log);
    assert!(matches!(
        restarted.watch("orders", log, 6),
        WatchAnswer::Resync { .. }
    ));
}

/// One operation on one of three replicas, or an exchange between two.
#[derive(Clone, Debug)]
enum Op {
    Register(usize, u8, u64),
    Heartbeat(usize, u8, u64),
    Deregister(usize, u8, u64),
    Tick(usize),
    Exchange(usize, usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let replica = 0..3usize;
    let instance = 0..3u8;
    let incarnation = 1..4u64;
    prop_oneof![
        (replica.clone(), instance.clone(), incarnation.clone())
            .prop_map(|(r, i, n)| Op::Register(r, i, n)),
        (replica.clone(), instance.clone(), incarnation.clone())
            .prop_map(|(r, i, n)| Op::Heartbeat(r, i, n)),
        (replica.clone(), instance, incarnation).prop_map(|(r, i, n)| Op::Deregister(r, i, n)),
        replica.clone().prop_map(Op::Tick),
        (replica.clone(), replica).prop_map(|(a, b)| Op::Exchange(a, b)),
        (50..1_500u64).prop_map(Op::Advance),
    ]
}

#[test]
fn replicas_converge_whatever_the_order_and_never_lower_a_record() {
    // Goal: records are a join-semilattice: after every replica has exchanged state with every
    // other, all hold the same records; and no replica ever replaces a record by a lower one.
    let mut runner = TestRunner::new(Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(0xD15C),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(op(), 1..60), |ops| {
            let mut replicas: Vec<Replica> = (0..3)
                .map(|id| Replica::new(config(id, Mutants::none()), at(0)).unwrap())
                .collect();
            let mut t = 0;
            for op in ops {
                let before: Vec<Vec<(Key, Record)>> = replicas
                    .iter()
                    .map(|r| r.discover("orders").records)
                    .collect();
                match op {
                    Op::Register(r, i, n) => {
                        let _ = replicas[r].register(at(t), registration(&i.to_string(), n, "x:1"));
                    }
                    Op::Heartbeat(r, i, n) => {
                        replicas[r].heartbeat(at(t), &key(&i.to_string()), n);
                    }
                    Op::Deregister(r, i, n) => {
                        replicas[r].deregister(&key(&i.to_string()), n);
                    }
                    Op::Tick(r) => {
                        replicas[r].tick(at(t));
                    }
                    Op::Exchange(a, b) => {
                        let gossip = replicas[a].gossip(at(t));
                        replicas[b].merge(at(t), gossip);
                    }
                    Op::Advance(step) => t += step,
                }
                for (replica, before) in replicas.iter().zip(before) {
                    for (key, old) in before {
                        let new = replica.record(&key).expect("records are never dropped");
                        prop_assert!(new.rank() >= old.rank(), "{key}: {old:?} -> {new:?}");
                    }
                }
            }
            for _ in 0..2 {
                for a in 0..3 {
                    for b in 0..3 {
                        let gossip = replicas[a].gossip(at(t));
                        replicas[b].merge(at(t), gossip);
                    }
                }
            }
            let first = replicas[0].discover("orders").records;
            for replica in &replicas[1..] {
                prop_assert_eq!(&replica.discover("orders").records, &first);
            }
            Ok(())
        })
        .unwrap();
}

#[cfg(madsim)]
#[test]
fn mutant_names_parse_back() {
    for mutant in Mutant::all() {
        assert_eq!(mutant.as_str().parse::<Mutant>(), Ok(*mutant));
    }
    assert!("no-such".parse::<Mutant>().is_err());
}
