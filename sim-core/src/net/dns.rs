//! Socket addresses for the tokio-style sockets: every node has an IPv4 address, and its name
//! resolves to it (a simulated DNS of node names).
//!
//! Node `n<i>` has the address `10.0.0.1 + i` (`n0` is `10.0.0.1`, `n255` is `10.0.1.0`). A
//! host is resolved, without any delay, from:
//! - a node's name (`"primary"`, `"primary:8080"`, `("primary", 8080)`);
//! - `localhost` or any loopback address: the current node;
//! - `0.0.0.0` (the unspecified address, for `bind`): the current node;
//! - a node's IPv4 address, as text or as an `IpAddr`.
//!
//! An unknown name fails like a DNS miss (`io::ErrorKind::NotFound`), and an address that is
//! not a node's with `io::ErrorKind::AddrNotAvailable`.

use super::Addr;
use crate::node::NodeId;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

/// The first node's address: `10.0.0.1`.
const FIRST_NODE_IP: u32 = u32::from_be_bytes([10, 0, 0, 1]);

/// The IPv4 address of `node`.
pub fn node_ip(node: NodeId) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(FIRST_NODE_IP.wrapping_add(node.0)))
}

/// The node whose address is `ip`, if it is one of this run's nodes; loopback and the
/// unspecified address name the current node (`None` on the supervisor).
pub fn ip_node(ip: IpAddr) -> Option<NodeId> {
    if ip.is_loopback() || ip.is_unspecified() {
        return crate::task::current_node();
    }
    let IpAddr::V4(v4) = ip else {
        return None;
    };
    let index = u32::from(v4).checked_sub(FIRST_NODE_IP)?;
    let known = crate::world::with(|world| (index as usize) < world.nodes.len());
    known.then_some(NodeId(index))
}

/// The socket address of `addr`.
pub fn socket_addr(addr: Addr) -> SocketAddr {
    SocketAddr::new(node_ip(addr.node), addr.port)
}

/// The sim-core address of `addr`: its node and port.
///
/// Fails with `io::ErrorKind::AddrNotAvailable` for an address that is not a node's.
pub fn sim_addr(addr: SocketAddr) -> io::Result<Addr> {
    match ip_node(addr.ip()) {
        Some(node) => Ok(Addr::new(node, addr.port())),
        None => Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{} is not the address of a node in this run", addr.ip()),
        )),
    }
}

/// The node named `name` (its name, `localhost`, or an IP address in text).
fn resolve_host(name: &str) -> io::Result<IpAddr> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ip);
    }
    let current = crate::task::current_node();
    let node = crate::world::with(|world| {
        if name.eq_ignore_ascii_case("localhost") {
            return current;
        }
        world
            .nodes
            .iter()
            .position(|node| node.name == name)
            .map(|index| NodeId(index as u32))
    });
    match node {
        Some(node) => Ok(node_ip(node)),
        None => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("failed to lookup address information: no node named {name:?}"),
        )),
    }
}

/// Something that names socket addresses, as tokio's `ToSocketAddrs` does: a `SocketAddr`, an
/// `(ip, port)` pair, a `"host:port"` string or a `(host, port)` pair, where the host is a
/// node's name or address (see the module docs).
pub trait ToSocketAddrs {
    /// The addresses this names (resolved now, in simulated DNS).
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>>;
}

impl ToSocketAddrs for SocketAddr {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![*self])
    }
}

impl ToSocketAddrs for SocketAddrV4 {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::V4(*self)])
    }
}

impl ToSocketAddrs for (IpAddr, u16) {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::new(self.0, self.1)])
    }
}

impl ToSocketAddrs for (Ipv4Addr, u16) {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::new(IpAddr::V4(self.0), self.1)])
    }
}

impl ToSocketAddrs for (&str, u16) {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::new(resolve_host(self.0)?, self.1)])
    }
}

impl ToSocketAddrs for (String, u16) {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        (self.0.as_str(), self.1).to_socket_addrs()
    }
}

impl ToSocketAddrs for str {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return Ok(vec![addr]);
        }
        let Some((host, port)) = self.rsplit_once(':') else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid socket address {self:?}: expected host:port"),
            ));
        };
        let port: u16 = port.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid port in socket address {self:?}"),
            )
        })?;
        (host, port).to_socket_addrs()
    }
}

impl ToSocketAddrs for String {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.as_str().to_socket_addrs()
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        (**self).to_socket_addrs()
    }
}

/// Resolves `host` in the simulated DNS, as `tokio::net::lookup_host` does.
pub async fn lookup_host<T: ToSocketAddrs>(
    host: T,
) -> io::Result<impl Iterator<Item = SocketAddr>> {
    Ok(host.to_socket_addrs()?.into_iter())
}

/// The first sim-core address `target` names (errors as [`sim_addr`], or the resolver's).
pub(crate) fn first_addr<T: ToSocketAddrs + ?Sized>(target: &T) -> io::Result<Addr> {
    let addrs = target.to_socket_addrs()?;
    let mut last_error = None;
    for addr in addrs {
        match sim_addr(addr) {
            Ok(addr) => return Ok(addr),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to resolve")))
}
