//! The command side's decisions as a sans-IO state machine: what to load, what to append,
//! and the answer, for one attempt at one command. The command node ([`crate::cqrs::command`])
//! only performs the loads and appends it asks for.
//!
//! A single-event command: load the account; if the command's event is already there (a
//! retry), answer with its position; else decide and append it with the stream's version as
//! the expected version. A transfer: load the source; unless the debit is already there,
//! load the target (is it open?), decide, append the debit; then load the target and, unless
//! the credit is already there, append it (expected version: any; the credit is never
//! refused and its event id makes it idempotent). A version conflict on a decided append
//! ends the attempt ([`Step::StartOver`]): the node loads and decides again.

use crate::cqrs::bank::{AccountId, AccountState, BankCommand, BankError, BankEventBody};
use crate::cqrs::mutant::{Mutant, Mutants};
use crate::event_sourcing::event::ExpectedVersion;

/// What the execution needs done next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Load this account's state (its whole stream); answer with [`Execution::on_loaded`].
    Load(AccountId),
    /// Append event `index` of the command to this account; answer with
    /// [`Execution::on_appended`].
    Append {
        /// The account.
        account: AccountId,
        /// The event's index in the command (0: the debit or the single event; 1: a credit).
        index: u8,
        /// The event.
        body: BankEventBody,
        /// The optimistic-concurrency condition.
        expected: ExpectedVersion,
    },
}

/// What comes of an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// More to do.
    Need(Need),
    /// Done: the consistency token (the position of the command's last event).
    Done(u64),
    /// Refused: nothing was written by this attempt.
    Refused(BankError),
    /// A version conflict: start a new attempt from the loads.
    StartOver,
}

/// The outcome of an append, as the execution needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Appended (or recognised as a retry) at this global position.
    At(u64),
    /// The expected version did not match.
    Conflict,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the account (the source, for a transfer).
    LoadFirst,
    /// Waiting for the target, to validate a transfer.
    LoadTargetToValidate,
    /// Waiting for the single event's or the debit's append.
    AppendFirst,
    /// Waiting for the target, to credit it.
    LoadTargetToCredit,
    /// Waiting for the credit's append.
    AppendCredit,
}

/// One attempt at one command.
#[derive(Clone, Debug)]
pub struct Execution {
    command_id: u64,
    command: BankCommand,
    mutants: Mutants,
    phase: Phase,
    source: Option<AccountState>,
}

impl Execution {
    /// Starts an attempt at `command`; returns it and its first need.
    pub fn start(command_id: u64, command: BankCommand, mutants: Mutants) -> (Execution, Need) {
        let first = Need::Load(command.account().to_owned());
        let execution = Execution {
            command_id,
            command,
            mutants,
            phase: Phase::LoadFirst,
            source: None,
        };
        (execution, first)
    }

    /// Deduplication by command id is on (it is off only under a mutant).
    fn deduplicates(&self) -> bool {
        !self.mutants.contains(Mutant::RetriedCommandNotDeduplicated)
    }

    /// An account was loaded.
    pub fn on_loaded(&mut self, state: AccountState) -> Step {
        match (&self.phase, &self.command) {
            (Phase::LoadFirst, BankCommand::Transfer { from, to, .. }) => {
                let debited =
                    self.deduplicates() && state.position_of(self.command_id, 0).is_some();
                let (from, to) = (from.clone(), to.clone());
                self.source = Some(state);
                if debited {
                    self.phase = Phase::LoadTargetToCredit;
                    return Step::Need(Need::Load(to));
                }
                if to == from {
                    return self.decide_first(true);
                }
                self.phase = Phase::LoadTargetToValidate;
                Step::Need(Need::Load(to))
            }
            (Phase::LoadFirst, _) => {
                if let Some(position) = state.position_of(self.command_id, 0) {
                    if self.deduplicates() {
                        return Step::Done(position);
                    }
                }
                self.source = Some(state);
                self.decide_first(false)
            }
            (Phase::LoadTargetToValidate, _) => self.decide_first(state.is_open()),
            (Phase::LoadTargetToCredit, BankCommand::Transfer { from, to, amount }) => {
                if let Some(position) = state.position_of(self.command_id, 1) {
                    if self.deduplicates() {
                        return Step::Done(position);
                    }
                }
                let credit = BankEventBody::Credited {
                    amount: *amount,
                    from: from.clone(),
                };
                self.phase = Phase::AppendCredit;
                Step::Need(Need::Append {
                    account: to.clone(),
                    index: 1,
                    body: credit,
                    expected: ExpectedVersion::Any,
                })
            }
            (phase, _) => unreachable!("a load answered in phase {phase:?}"),
        }
    }

    /// Decides the single event or the debit against the loaded account.
    fn decide_first(&mut self, target_open: bool) -> Step {
        let account = self.command.account().to_owned();
        let source = self.source.as_ref().expect("the account was loaded");
        let body = match source.decide(&account, &self.command, target_open) {
            Ok(body) => body,
            Err(error) => return Step::Refused(error),
        };
        let unchecked = matches!(self.command, BankCommand::Withdraw { .. })
            && self.mutants.contains(Mutant::WithdrawSkipsVersionCheck);
        let expected = if unchecked {
            ExpectedVersion::Any
        } else {
            ExpectedVersion::exactly_current(source.version)
        };
        self.phase = Phase::AppendFirst;
        Step::Need(Need::Append {
            account,
            index: 0,
            body,
            expected,
        })
    }

    /// An append ended.
    pub fn on_appended(&mut self, appended: Appended) -> Step {
        match (&self.phase, appended) {
            (Phase::AppendFirst, Appended::Conflict) => Step::StartOver,
            (Phase::AppendFirst, Appended::At(position)) => match &self.command {
                BankCommand::Transfer { to, .. } => {
                    self.phase = Phase::LoadTargetToCredit;
                    Step::Need(Need::Load(to.clone()))
                }
                _ => Step::Done(position),
            },
            (Phase::AppendCredit, Appended::At(position)) => Step::Done(position),
            (Phase::AppendCredit, Appended::Conflict) => {
                // The credit expects any version: a conflict cannot happen; ask again.
                let BankCommand::Transfer { from, to, amount } = &self.command else {
                    unreachable!("only transfers credit");
                };
                Step::Need(Need::Append {
                    account: to.clone(),
                    index: 1,
                    body: BankEventBody::Credited {
                        amount: *amount,
                        from: from.clone(),
                    },
                    expected: ExpectedVersion::Any,
                })
            }
            (phase, _) => unreachable!("an append answered in phase {phase:?}"),
        }
    }
}
