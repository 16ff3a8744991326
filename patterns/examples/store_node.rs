//! One event-store node as a production process: the same driver the simulation tests, on
//! real UDP and real files (the real build: no `--cfg madsim`).
//!
//! ```text
//! store_node --node store=10.0.0.5 --node api-1=10.0.0.6 --node api-2=10.0.0.7 \
//!            --me store --data-root /var/lib/dst --port 7007
//! ```
//!
//! Every node of the deployment is listed (`name=ip`, the same list and order on every
//! machine, since a node's id is its index): the address book that `sim_core::node::Cluster`
//! keeps. This process runs the node named by `--me`; its files live in
//! `<data-root>/<name>`. Clients are the other nodes (the store answers only nodes it knows).
//! The store listens on UDP port 7 (`STORE_PORT`) unless `--port` says otherwise.

#[cfg(madsim)]
fn main() {
    eprintln!("store_node: this is the simulated build; build it without `--cfg madsim`");
    std::process::exit(2);
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    use patterns::event_sourcing::driver::{run_node, NodeConfig, NodeEvent, NodeHook};
    use sim_core::node::{block_on, run_as, Cluster};
    use std::process::ExitCode;
    use std::sync::Arc;

    let usage = "usage: store_node --node NAME=IP... --me NAME --data-root DIR [--port N]";
    let mut nodes = Vec::new();
    let (mut me, mut data_root) = (None, None);
    let mut config = NodeConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            eprintln!("store_node: {flag} needs a value; {usage}");
            return ExitCode::from(2);
        };
        match flag.as_str() {
            "--node" => nodes.push(value),
            "--me" => me = Some(value),
            "--data-root" => data_root = Some(std::path::PathBuf::from(value)),
            "--port" => match value.parse() {
                Ok(port) => config.port = port,
                Err(_) => {
                    eprintln!("store_node: --port {value} is not a port; {usage}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("store_node: unknown flag {flag}; {usage}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(me), Some(data_root)) = (me, data_root) else {
        eprintln!("store_node: --me and --data-root are required; {usage}");
        return ExitCode::from(2);
    };
    let cluster = Cluster::new();
    for node in &nodes {
        let parsed = node
            .split_once('=')
            .and_then(|(name, ip)| Some((name, ip.parse().ok()?)));
        let Some((name, ip)) = parsed else {
            eprintln!("store_node: --node {node} is not NAME=IP; {usage}");
            return ExitCode::from(2);
        };
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !plain {
            eprintln!("store_node: node name {name:?} must be letters, digits, - and _ (it names a folder)");
            return ExitCode::from(2);
        }
        if let Err(error) = cluster.add(name, ip, data_root.join(name)) {
            eprintln!("store_node: {error}");
            return ExitCode::from(2);
        }
    }
    let Some(id) = cluster.id(&me) else {
        eprintln!("store_node: --me {me} is not one of the --node names");
        return ExitCode::from(2);
    };
    cluster.install();
    let hook: NodeHook = Arc::new(|event: &NodeEvent| eprintln!("store_node: {event:?}"));
    block_on(run_as(id, run_node(config, hook)));
    // The node serves until its socket closes: coming back means it could not start (a port
    // it may not bind) or stopped serving. A supervisor (systemd) should see a failure.
    eprintln!("store_node: the store stopped");
    ExitCode::FAILURE
}
