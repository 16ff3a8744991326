//! The real build's nodes, tasks, clocks, random streams and `buggify!` (no `--cfg madsim`).
#![cfg(not(madsim))]

use rand::Rng;
use sim_core::node::{block_on, run_as, Cluster, ClusterError};
use sim_core::{task, time};
use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::Duration;

fn data_root(test: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("sim-core-real-node-{}-{test}", std::process::id()))
}

#[test]
fn loopback_nodes_get_addresses_of_their_own_and_names_resolve() {
    let cluster = Cluster::loopback(&["a", "b", "c"], &data_root("loopback")).unwrap();
    let ids = cluster.nodes();
    assert_eq!(ids.len(), 3);
    let ips: Vec<IpAddr> = ids.iter().map(|id| cluster.spec(*id).unwrap().ip).collect();
    assert!(ips.iter().all(|ip| ip.is_loopback()));
    assert_ne!(ips[0], ips[1]);
    assert_eq!(cluster.id("b"), Some(ids[1]));
    assert_eq!(cluster.id_of_ip(ips[2]), Some(ids[2]));
    assert_eq!(cluster.id("nobody"), None);
    let other = Cluster::loopback(&["a"], &data_root("loopback")).unwrap();
    assert_ne!(other.spec(other.nodes()[0]).unwrap().ip, ips[0]);
}

#[test]
fn a_bad_cluster_is_a_clear_error() {
    let cluster = Cluster::new();
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    cluster.add("a", ip, "/tmp/a").unwrap();
    assert_eq!(
        cluster.add("a", IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), "/tmp/b"),
        Err(ClusterError::DuplicateName("a".into()))
    );
    assert_eq!(
        cluster.add("b", ip, "/tmp/b"),
        Err(ClusterError::DuplicateIp(ip))
    );
    assert_eq!(cluster.add("", ip, "/tmp/b"), Err(ClusterError::EmptyName));
    let names: Vec<String> = (0..300).map(|i| format!("n{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert!(matches!(
        Cluster::loopback(&names, &data_root("bad")),
        Err(ClusterError::TooManyNodes(300))
    ));
}

#[test]
fn tasks_know_their_node_and_a_kill_aborts_them_all_then_restart_runs_init_again() {
    block_on(async {
        let cluster = Cluster::loopback(&["worker", "other"], &data_root("kill")).unwrap();
        let worker = cluster.id("worker").unwrap();
        let boots = Rc::new(Cell::new(0u32));
        let ticks = Rc::new(Cell::new(0u32));
        let seen_node = Rc::new(RefCell::new(Vec::new()));
        let handle = cluster.start(worker, {
            let (boots, ticks, seen_node) = (boots.clone(), ticks.clone(), seen_node.clone());
            move || {
                let (boots, ticks, seen_node) = (boots.clone(), ticks.clone(), seen_node.clone());
                async move {
                    boots.set(boots.get() + 1);
                    seen_node.borrow_mut().push(task::current_node());
                    // A child task: it belongs to the node too.
                    let (ticks, seen_node) = (ticks.clone(), seen_node.clone());
                    task::spawn(async move {
                        seen_node.borrow_mut().push(task::current_node());
                        loop {
                            ticks.set(ticks.get() + 1);
                            time::sleep(Duration::from_millis(1)).await;
                        }
                    });
                    std::future::pending::<()>().await;
                }
            }
        });
        assert_eq!(task::current_node(), None, "the test itself is on no node");
        time::sleep(Duration::from_millis(30)).await;
        assert_eq!(boots.get(), 1);
        assert!(ticks.get() > 0);
        assert_eq!(*seen_node.borrow(), vec![Some(worker), Some(worker)]);
        handle.kill().await;
        assert!(!handle.is_running());
        let after_kill = ticks.get();
        time::sleep(Duration::from_millis(20)).await;
        assert_eq!(ticks.get(), after_kill, "the child task died with its node");
        handle.restart().await;
        time::sleep(Duration::from_millis(20)).await;
        assert_eq!(boots.get(), 2);
        assert_eq!(handle.incarnation(), 1);
        assert!(ticks.get() > after_kill);
    });
}

#[test]
fn run_as_makes_code_a_node_s_for_a_one_node_process() {
    block_on(async {
        let cluster = Cluster::loopback(&["solo"], &data_root("run-as")).unwrap();
        cluster.install();
        let solo = cluster.id("solo").unwrap();
        let inner = run_as(solo, async {
            let child = task::spawn(async { task::current_node() });
            (task::current_node(), child.await.unwrap())
        })
        .await;
        assert_eq!(inner, (Some(solo), Some(solo)));
        assert_eq!(sim_core::node::cluster().unwrap().id("solo"), Some(solo));
    });
}

#[test]
fn clocks_sleeps_timeouts_and_intervals_are_real() {
    block_on(async {
        let start = time::now();
        assert!(
            start.since_origin() >= Duration::from_secs(24 * 60 * 60),
            "a fresh reading minus a day does not saturate"
        );
        assert!(start - Duration::from_secs(60) < start);
        time::sleep(Duration::from_millis(20)).await;
        let slept = time::now() - start;
        assert!(slept >= Duration::from_millis(20), "{slept:?}");
        assert!(time::Instant::now() >= start);
        let timed_out =
            time::timeout(Duration::from_millis(10), std::future::pending::<()>()).await;
        assert_eq!(timed_out, Err(time::error::Elapsed));
        let done = time::timeout(Duration::from_secs(5), async { 7 }).await;
        assert_eq!(done, Ok(7));
        let mut interval = time::interval(Duration::from_millis(5));
        interval.set_missed_tick_behavior(time::MissedTickBehavior::Delay);
        assert_eq!(
            interval.missed_tick_behavior(),
            time::MissedTickBehavior::Delay
        );
        let first = interval.tick().await;
        let second = interval.tick().await;
        assert_eq!(second - first, Duration::from_millis(5));
        let mut sleep = Box::pin(time::sleep(Duration::from_secs(3600)));
        let deadline = time::now() + Duration::from_millis(5);
        sleep.as_mut().reset(deadline);
        assert_eq!(sleep.deadline(), deadline);
        sleep.as_mut().await;
        assert!(sleep.is_elapsed());
        let wall = time::wall();
        assert!(wall > std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    });
}

#[test]
fn random_streams_are_seeded_from_the_os_and_buggify_is_off() {
    let a: u64 = sim_core::rng::stream("workload").gen();
    let b: u64 = sim_core::rng::stream("workload").gen();
    assert_ne!(a, b, "one stream moves on");
    // Seeded streams for tests are still deterministic in a real build.
    use rand::RngCore;
    assert_eq!(
        sim_core::rng::new_stream(1, "x").next_u64(),
        sim_core::rng::new_stream(1, "x").next_u64()
    );
    let evaluated = Cell::new(false);
    let fired = sim_core::buggify!({
        evaluated.set(true);
        1.0
    });
    assert!(!fired && !sim_core::buggify!());
    assert!(!evaluated.get(), "buggify!'s argument is compiled out");
    sim_core::trace::note("key", "a note is a tracing event in a real build");
}
