//! A client of the CQRS system: commands to the command nodes, queries to the view nodes,
//! with read-your-writes and monotonic reads kept on the client's side.
//!
//! The client remembers the consistency token of its last command and the highest position
//! of a fresh answer it got; every query asks for the higher of the two, so a view node that
//! is behind waits or says it is stale, and the client never sees its own writes undone or a
//! view older than one it already saw.

use crate::cqrs::bank::BankCommand;
use crate::cqrs::command::{CommandRequest, CommandResponse};
use crate::cqrs::view::Query;
use crate::cqrs::view_node::{Answer, ViewRequest, ViewResponse};
use sim_core::net::{Addr, NetError, RpcError, Socket};
use sim_core::time;
use std::cell::Cell;
use std::time::Duration;

/// A command's outcome, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandOutcome {
    /// Done, with its consistency token.
    Done(u64),
    /// Refused: nothing was written.
    Refused(crate::cqrs::bank::BankError),
    /// No definite answer within the attempts: it may or may not have happened.
    Unknown(String),
}

/// A query's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryOutcome {
    /// The view node answered (fresh or explicitly stale).
    Answered(Answer),
    /// No answer.
    Failed(String),
}

/// A client.
pub struct BankClient {
    socket: Socket,
    commands: Vec<Addr>,
    call_timeout: Duration,
    /// Attempts per command, across the command nodes in turn.
    attempts_max: u32,
    /// The wait between attempts.
    retry_backoff: Duration,
    /// The token of the last command done.
    token: Cell<u64>,
    /// The highest position of a fresh answer.
    seen: Cell<u64>,
    /// The next command node to try.
    next: Cell<usize>,
}

impl BankClient {
    /// Binds an ephemeral port on the current node; sends commands to `commands`.
    pub fn bind(commands: Vec<Addr>, call_timeout: Duration) -> Result<Self, NetError> {
        Ok(BankClient {
            socket: Socket::bind(0)?,
            commands,
            call_timeout,
            attempts_max: 6,
            retry_backoff: Duration::from_millis(50),
            token: Cell::new(0),
            seen: Cell::new(0),
            next: Cell::new(0),
        })
    }

    /// The position a query must reach to keep read-your-writes and monotonic reads.
    pub fn min_position(&self) -> u64 {
        self.token.get().max(self.seen.get())
    }

    /// Executes a command, retrying it with the same id until a definite answer or the
    /// attempts run out.
    pub async fn execute(&self, command_id: u64, command: &BankCommand) -> CommandOutcome {
        let request = CommandRequest {
            command_id,
            command: command.clone(),
            principal: None,
        };
        let mut last = String::from("no attempt");
        for attempt in 0..self.attempts_max {
            if attempt > 0 {
                time::sleep(self.retry_backoff).await;
            }
            let index = self.next.get() % self.commands.len();
            let node = self.commands[index];
            let answer: Result<CommandResponse, RpcError> =
                self.socket.call(node, &request, self.call_timeout).await;
            match answer {
                Ok(CommandResponse::Done { token }) => {
                    self.token.set(self.token.get().max(token + 1));
                    return CommandOutcome::Done(token);
                }
                Ok(CommandResponse::Refused(error)) => return CommandOutcome::Refused(error),
                Ok(CommandResponse::Unavailable(why)) => last = why,
                Err(error) => {
                    last = error.to_string();
                    // Another node next time.
                    self.next.set(index + 1);
                }
            }
        }
        CommandOutcome::Unknown(last)
    }

    /// Asks `view` for `query` at this client's minimum position, waiting at most `wait_max`
    /// there.
    pub async fn query(
        &self,
        view: Addr,
        query: &Query,
        wait_max: Duration,
    ) -> (u64, QueryOutcome) {
        self.query_at(view, query, self.min_position(), wait_max)
            .await
    }

    /// Asks `view` for `query` at `min_position` (0: whatever the node has, at once, as a
    /// dashboard reads), waiting at most `wait_max` there. A fresh answer raises the client's
    /// minimum position like any other.
    pub async fn query_at(
        &self,
        view: Addr,
        query: &Query,
        min_position: u64,
        wait_max: Duration,
    ) -> (u64, QueryOutcome) {
        let request = ViewRequest::Query {
            query: query.clone(),
            min_position,
            wait_max,
        };
        let timeout = self.call_timeout + wait_max;
        let outcome = match self.socket.call(view, &request, timeout).await {
            Ok(ViewResponse::Answer(answer)) => {
                if answer.fresh {
                    self.seen.set(self.seen.get().max(answer.position));
                }
                QueryOutcome::Answered(answer)
            }
            Ok(other) => QueryOutcome::Failed(format!("{other:?}")),
            Err(error) => QueryOutcome::Failed(error.to_string()),
        };
        (min_position, outcome)
    }

    /// Asks `view` to rebuild its model from the log (an operator's action); waits at most
    /// `timeout` for it to finish.
    pub async fn rebuild(&self, view: Addr, timeout: Duration) -> Result<ViewResponse, RpcError> {
        self.socket.call(view, &ViewRequest::Rebuild, timeout).await
    }
}
