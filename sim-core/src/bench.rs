//! Workloads that measure sim-core against raw madsim in the same process, shared by
//! `cargo bench -p sim-core --bench net` and the harness's `dst bench`.
//!
//! Performance is judged as ratios against madsim measured in the same run, never as absolute
//! numbers: a shared or slower machine slows both contenders alike. Everything here reads real
//! time and starts real threads, outside any simulation; nothing here may run inside one.

use crate::net::{Addr, Socket};
use crate::{run, SimConfig};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Wall-clock time, for measuring a benchmark itself (outside any simulation).
#[allow(clippy::disallowed_methods)] // A benchmark measures real time; no simulated code runs here.
pub fn wall_clock() -> Instant {
    Instant::now()
}

/// Runs `f` on a fresh `std::thread`, as a madsim user would (madsim's own determinism check
/// does): sim-core's runs need a fresh thread too, and start a cheaper one (a bare thread on a
/// kept stack, on Linux; see the runner's `run_thread` module).
#[allow(clippy::disallowed_methods)] // Fairness: raw madsim gets the fresh thread sim-core needs.
pub fn on_fresh_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f)
        .join()
        .expect("the run's thread panicked")
}

/// One measured workload: messages carried, wall time taken, simulated time covered.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// Messages sent (both directions).
    pub messages: u64,
    /// Wall time of the whole run, world set-up and teardown included.
    pub wall: Duration,
    /// Simulated time at the end of the run.
    pub simulated: Duration,
}

impl Measured {
    /// Messages per wall second.
    pub fn messages_per_second(&self) -> f64 {
        self.messages as f64 / self.wall.as_secs_f64()
    }

    /// Simulated seconds per wall second.
    pub fn simulated_per_wall(&self) -> f64 {
        self.simulated.as_secs_f64() / self.wall.as_secs_f64()
    }
}

/// Two contenders measured in `rounds` short rounds, in turn (which one goes first alternates
/// from round to round), and how they compare.
///
/// Rounds in turn, judged by the median of their paired ratios: on a shared machine the load
/// moves from second to second, and a ratio of two rounds measured back to back sees both
/// under the same load. The best of a few long tries of each, measured before, moved between
/// 1.2 and 2.5 from one minute to the next on the same binary.
pub fn paired_rounds(
    rounds: usize,
    ours: impl Fn() -> Measured,
    theirs: impl Fn() -> Measured,
) -> Paired {
    let rounds = rounds.max(1);
    let mut pairs: Vec<(Measured, Measured)> = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let pair = if round % 2 == 0 {
            let ours = ours();
            (ours, theirs())
        } else {
            let theirs = theirs();
            (ours(), theirs)
        };
        pairs.push(pair);
    }
    let median = |mut values: Vec<Measured>| {
        values.sort_by_key(|measured| measured.wall);
        values[values.len() / 2]
    };
    let mut ratios: Vec<f64> = pairs
        .iter()
        .map(|(ours, theirs)| ours.messages_per_second() / theirs.messages_per_second())
        .collect();
    ratios.sort_by(f64::total_cmp);
    Paired {
        ours: median(pairs.iter().map(|pair| pair.0).collect()),
        theirs: median(pairs.iter().map(|pair| pair.1).collect()),
        ratio: ratios[ratios.len() / 2],
    }
}

/// What [`paired_rounds`] measured.
#[derive(Clone, Copy, Debug)]
pub struct Paired {
    /// Our median round.
    pub ours: Measured,
    /// Their median round.
    pub theirs: Measured,
    /// The median over rounds of our messages per second divided by theirs in the same round.
    pub ratio: f64,
}

/// `clients` clients each make `round_trips` round trips to one server, through sim-core's
/// [`Socket`]s, in one [`run`] (so on a fresh thread, with a fresh world). With no round trips
/// this is sim-core's fixed cost of a run with two nodes.
///
/// # Panics
/// If the run does not pass (a sim-core bug).
pub fn sim_core_ping_pong(seed: u64, clients: u32, round_trips: u32) -> Measured {
    let start = wall_clock();
    let report = run(seed, SimConfig::default(), move |sim| async move {
        let total = clients * round_trips;
        let server = sim
            .node("server")
            .init(move || async move {
                let socket = Socket::bind(1).expect("free port");
                for _ in 0..total {
                    let (from, n): (Addr, u64) = socket.recv().await.expect("open socket");
                    socket.send(from, &n).expect("open socket");
                }
            })
            .build();
        let (done, mut finished) = futures::channel::mpsc::unbounded::<()>();
        for client in 0..clients {
            let done = done.clone();
            sim.node(format!("client-{client}"))
                .init(move || {
                    let done = done.clone();
                    async move {
                        let socket = Socket::bind(1).expect("free port");
                        let to = Addr::new(server, 1);
                        for n in 0..u64::from(round_trips) {
                            socket.send(to, &n).expect("open socket");
                            let _: (Addr, u64) = socket.recv().await.expect("open socket");
                        }
                        let _ = done.unbounded_send(());
                    }
                })
                .build();
        }
        for _ in 0..clients {
            futures::StreamExt::next(&mut finished).await;
        }
        Ok(())
    });
    let wall = start.elapsed();
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    Measured {
        messages: 2 * u64::from(clients) * u64::from(round_trips),
        wall,
        simulated: Duration::from_nanos(report.sim_time_ns),
    }
}

/// The same workload as [`sim_core_ping_pong`] on raw madsim `Endpoint`s (madsim's default
/// latency is 1-10 ms), in a madsim runtime on the calling thread: wrap the call in
/// [`on_fresh_thread`] to give madsim the fresh thread sim-core always pays for.
pub fn madsim_ping_pong(seed: u64, clients: u32, round_trips: u32) -> Measured {
    let start = wall_clock();
    let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let simulated = runtime.block_on(madsim_workload(clients, round_trips));
    drop(runtime);
    Measured {
        messages: 2 * u64::from(clients) * u64::from(round_trips),
        wall: start.elapsed(),
        simulated,
    }
}

async fn madsim_workload(clients: u32, round_trips: u32) -> Duration {
    use madsim::net::Endpoint;
    let handle = madsim::runtime::Handle::current();
    let server_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let server_addr = SocketAddr::new(server_ip, 1);
    let total = clients * round_trips;
    let server = handle.create_node().name("server").ip(server_ip).build();
    let server_task = server.spawn(async move {
        let endpoint = Endpoint::bind(server_addr).await.expect("free port");
        let mut buffer = [0u8; 16];
        for _ in 0..total {
            let (len, from) = endpoint.recv_from(0, &mut buffer).await.expect("recv");
            endpoint
                .send_to(from, 0, &buffer[..len])
                .await
                .expect("send");
        }
    });
    let mut client_tasks = Vec::new();
    for client in 0..clients {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 1, client as u8 + 1));
        let node = handle
            .create_node()
            .name(format!("client-{client}"))
            .ip(ip)
            .build();
        client_tasks.push(node.spawn(async move {
            let endpoint = Endpoint::bind(SocketAddr::new(ip, 1)).await.expect("port");
            let mut buffer = [0u8; 16];
            for n in 0..u64::from(round_trips) {
                let bytes = n.to_le_bytes();
                endpoint
                    .send_to(server_addr, 0, &bytes)
                    .await
                    .expect("send");
                endpoint.recv_from(0, &mut buffer).await.expect("recv");
            }
        }));
    }
    for task in client_tasks {
        task.await.expect("client");
    }
    server_task.await.expect("server");
    madsim::time::TimeHandle::current().elapsed()
}

/// Run rates of one contender of [`runs_per_second`].
#[derive(Clone, Copy, Debug)]
pub struct RunRates {
    /// Runs per second over the total wall time.
    pub total: f64,
    /// Runs per second of the median run (robust to a run preempted by another process).
    pub median: f64,
}

/// Runs seeds `0..runs` of each contender, run by run in turn (A, B, C, A, B, C, ...) so that
/// changes in the load of a shared machine hit every contender alike; the rates in the order
/// of `contenders`.
pub fn runs_per_second(runs: u64, contenders: &[&dyn Fn(u64) -> Measured]) -> Vec<RunRates> {
    let mut walls: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    for seed in 0..runs.max(1) {
        for (index, one_run) in contenders.iter().enumerate() {
            let start = wall_clock();
            one_run(seed);
            walls[index].push(start.elapsed());
        }
    }
    walls
        .into_iter()
        .map(|mut walls| {
            let total: Duration = walls.iter().sum();
            walls.sort_unstable();
            RunRates {
                total: walls.len() as f64 / total.as_secs_f64(),
                median: 1.0 / walls[walls.len() / 2].as_secs_f64(),
            }
        })
        .collect()
}

/// Resident memory of this process in MiB (2^20 bytes), from `VmRSS` in `/proc/self/status`;
/// `None` where that file does not exist (not Linux). Where the C library is glibc, its free
/// memory goes back to the system first (`malloc_trim`): what glibc keeps for later, in as
/// many arenas as threads have come and gone, moved the reading by megabytes from one chunk
/// of runs to the next (measured), and it is not what a run keeps alive.
pub fn resident_mib() -> Option<f64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib as f64 / 1024.0)
}
