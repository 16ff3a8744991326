//! UDP in a real build: tokio's own [`UdpSocket`], at the path the simulated build names it.

pub use tokio::net::UdpSocket;

/// The largest payload of one datagram, in bytes: what fits in an IPv4 UDP packet (65,535
/// bytes less 20 of IP header and 8 of UDP header). The same limit as the simulated build's;
/// a real [`Socket`](super::Socket) sends a longer envelope over TCP instead.
pub const DATAGRAM_MAX_BYTES: usize = 65_507;
