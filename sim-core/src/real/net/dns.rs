//! Node addresses as real socket addresses, through the installed
//! [`Cluster`](crate::node::Cluster), and tokio's resolver.
//!
//! A node's address is the IP address the cluster gives it, so [`socket_addr`] turns an
//! [`Addr`] into the `SocketAddr` that tokio's sockets take, and [`sim_addr`] turns a peer's
//! `SocketAddr` back into the node that has it. [`lookup_host`] and [`ToSocketAddrs`] are
//! tokio's: host names go to the operating system's resolver (node names are not host names
//! unless DNS or `/etc/hosts` says so).
//!
//! Differences from the simulated `dns`:
//! - [`node_ip`] and [`socket_addr`] return an `io::Result`: a simulated node's address is
//!   arithmetic and always exists, while a real cluster may not know the node
//!   (`io::ErrorKind::AddrNotAvailable`).
//! - Only a node's own address names it. The unspecified address (`0.0.0.0`, `::`) names the
//!   current node, as a socket bound to it is reachable there; a loopback address names no
//!   node (on a loopback cluster the nodes have loopback addresses of their own, and
//!   `127.0.0.1` is none of them).

use super::Addr;
use crate::node::NodeId;
use std::io;
use std::net::{IpAddr, SocketAddr};

pub use tokio::net::{lookup_host, ToSocketAddrs};

/// The IP address of `node` in the installed cluster.
///
/// Fails with `io::ErrorKind::AddrNotAvailable` when no cluster is installed on this thread or
/// the node is not in it.
pub fn node_ip(node: NodeId) -> io::Result<IpAddr> {
    let Some(cluster) = crate::node::cluster() else {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("no cluster is installed on this thread to find node {node}'s address"),
        ));
    };
    match cluster.spec(node) {
        Some(spec) => Ok(spec.ip),
        None => Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("node {node} is not in the installed cluster"),
        )),
    }
}

/// The node whose address is `ip` in the installed cluster; the unspecified address names the
/// current node (`None` outside node code). An IPv4 address mapped into IPv6 (what a
/// dual-stack socket reports) names the same node as the IPv4 address.
pub fn ip_node(ip: IpAddr) -> Option<NodeId> {
    let ip = ip.to_canonical();
    if ip.is_unspecified() {
        return crate::node::current_node();
    }
    crate::node::node_of_ip(ip)
}

/// The socket address of `addr`: its node's address in the installed cluster and its port.
///
/// Fails as [`node_ip`] does.
pub fn socket_addr(addr: Addr) -> io::Result<SocketAddr> {
    Ok(SocketAddr::new(node_ip(addr.node)?, addr.port))
}

/// The sim-core address of `addr`: the node that has its IP address, and its port.
///
/// Fails with `io::ErrorKind::AddrNotAvailable` for an address that is no node's.
pub fn sim_addr(addr: SocketAddr) -> io::Result<Addr> {
    match ip_node(addr.ip()) {
        Some(node) => Ok(Addr::new(node, addr.port())),
        None => Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{} is not the address of a node in the cluster", addr.ip()),
        )),
    }
}
