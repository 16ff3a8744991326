//! TCP in a real build: tokio's own listener, streams and halves, at the paths the simulated
//! build names them (`sim_core::net::tcp::TcpStream`...).
//!
//! The simulated TCP's model constants (retransmission timeouts, buffer sizes, backlog) have
//! no counterpart here: the operating system's TCP decides them.

pub use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, WriteHalf};
pub use tokio::net::{TcpListener, TcpStream};
