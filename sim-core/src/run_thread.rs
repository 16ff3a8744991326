//! A run's own OS thread: started, waited for with the watchdog's deadline, and cheap.
//!
//! Every run needs a fresh thread (see the runner's module docs), so a thread's start and end
//! are part of every run's fixed cost. On Linux the runner starts a bare `pthread` on a stack
//! that the calling thread keeps and lends to each of its runs in turn, instead of
//! `std::thread::spawn`. std's thread takes a stack from glibc's cache whose pages glibc gave
//! back to the kernel when its last thread ended (`madvise`), so every page a run touches
//! faults in again, and it maps, guards and unmaps a signal stack for each thread. A kept stack
//! stays resident (its top 1 MiB, see below). On this 2-core machine a scratch loop of 5,000
//! threads (not kept) started and joined a thread that touches no stack in 68 µs with std and
//! 40 µs this way, one that touches 256 KiB of stack in 310 µs and 60 µs; on whole runs,
//! `cargo bench -p sim-core --bench net -- empty` shows the effect against madsim.
//!
//! What std's threads give and a bare thread must do itself:
//! - a guard below the stack, and a name for debuggers (`sim-seed-N`, cut to the 15 bytes
//!   Linux keeps);
//! - the message that names the thread when a run overflows its stack: a bare thread has no
//!   alternate signal stack and no guard std knows of, so an overflow would kill the process
//!   with a bare `SIGSEGV`. [`fault::install`] adds a `SIGSEGV`/`SIGBUS` handler, once per
//!   process, that prints `thread 'sim-seed-N' has overflowed its stack` and aborts for a fault
//!   in a run's guard, and hands every other fault to the handler it replaced (std's).
//!
//! A thread the watchdog gives up on (hung outside any poll) keeps its stack until it ends: a
//! later run's start joins it then and unmaps the stack. The pages a run touched more than
//! 1 MiB deep (and at least a page beyond) go back to the kernel within 32 runs of the same
//! caller.
//!
//! Elsewhere, runs get `std::thread`s with the same stack size.

use std::sync::mpsc;
use std::time::Duration;

#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
pub(crate) use bare::{spawn, RunThread};
#[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
pub(crate) use portable::{spawn, wait, RunThread};

/// What a run's thread sends: its report, or the message of a panic that escaped the run.
pub(crate) type Sent = Result<crate::runner::Report, String>;

/// Stack of a run's thread: deep recursion in user code (a recursive decoder, a big future
/// polled inline) must not overflow where a service's main thread would not.
const STACK_BYTES: usize = 16 << 20;

const ENDED_WITHOUT_REPORT: &str = "the run's thread ended without a report";

/// The stack the fault handler runs on (the run's own is exhausted when it runs).
#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
const SIGNAL_STACK_BYTES: usize = 64 << 10;

/// Waits until `thread` has ended, at most `wall_limit` (zero: no limit) and then, after
/// `on_timeout` (which says how much longer), that much longer. Returns what the thread sent
/// (a thread that ended without sending counts as a panic), or `None` when it did not end in
/// time: it is left running, detached.
#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
pub(crate) fn wait(
    thread: RunThread,
    receiver: mpsc::Receiver<Sent>,
    wall_limit: Duration,
    on_timeout: impl FnOnce() -> Duration,
) -> Option<Sent> {
    // Joining with a deadline puts the caller to sleep once, until the thread has exited.
    // Waiting for the report and then joining would put it to sleep twice (the thread still
    // has to exit after sending), about a tenth of an empty run's wall time (measured:
    // `cargo bench -p sim-core --bench net -- empty`).
    if !thread.join(wall_limit, on_timeout) {
        return None;
    }
    Some(
        receiver
            .try_recv()
            .unwrap_or_else(|_| Err(ENDED_WITHOUT_REPORT.into())),
    )
}

#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
mod bare {
    use super::{fault, SIGNAL_STACK_BYTES, STACK_BYTES};
    use std::cell::RefCell;
    use std::ffi::c_void;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::Mutex;
    use std::time::Duration;

    /// Below the stack, never mapped readable: a run that overflows faults here. Rust code
    /// touches every page of a big frame in order (stack probes), so it always lands here; a C
    /// frame of more than this without probes could jump it.
    const GUARD_BYTES: usize = 64 << 10;
    /// How much of a lent stack stays resident between runs: a run that went deeper gives the
    /// pages below back to the kernel, so that one deep run does not pin up to 16 MiB on its
    /// caller for good (measured: 12 MiB for one run 12 MiB deep, before this). The runs of this
    /// workspace's scenarios stay above it (`dst run --all --seeds 300` trims no stack).
    const RESIDENT_BYTES: usize = 1 << 20;

    /// A lent stack is checked for trimming every this many runs: the check is a system call,
    /// 4 % of an empty run (measured), and a deep run's pages may wait a few runs.
    const TRIM_EVERY_RUNS: u32 = 32;

    /// One mapping: signal stack's guard, signal stack, the run stack's guard, the run stack.
    struct Stack {
        mapping: *mut c_void,
        /// Runs it was lent to since it was last checked for trimming.
        runs_unchecked: u32,
    }

    // SAFETY: a `Stack` is only an owned mapping; whichever thread holds it may unmap it.
    unsafe impl Send for Stack {}

    const MAPPING_BYTES: usize = GUARD_BYTES + SIGNAL_STACK_BYTES + GUARD_BYTES + STACK_BYTES;

    impl Stack {
        fn new() -> std::io::Result<Stack> {
            // SAFETY: a fresh private anonymous mapping, ours alone; the two guards are made
            // inaccessible before any thread uses it.
            unsafe {
                let mapping = libc::mmap(
                    std::ptr::null_mut(),
                    MAPPING_BYTES,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                    -1,
                    0,
                );
                if mapping == libc::MAP_FAILED {
                    return Err(std::io::Error::last_os_error());
                }
                let stack = Stack {
                    mapping,
                    runs_unchecked: 0,
                };
                // Small pages: a huge page would make the first touch of the stack zero 2 MiB,
                // and trimming split it (where transparent huge pages are always on).
                libc::madvise(mapping, MAPPING_BYTES, libc::MADV_NOHUGEPAGE);
                for guard in [stack.signal_guard(), stack.guard()] {
                    if libc::mprotect(guard.0 as *mut c_void, GUARD_BYTES, libc::PROT_NONE) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(stack)
            }
        }

        fn start(&self) -> usize {
            self.mapping as usize
        }

        fn signal_guard(&self) -> (usize, usize) {
            (self.start(), self.start() + GUARD_BYTES)
        }

        fn signal_stack(&self) -> *mut c_void {
            (self.start() + GUARD_BYTES) as *mut c_void
        }

        /// The run stack's guard, as addresses `start..end`.
        fn guard(&self) -> (usize, usize) {
            let start = self.start() + GUARD_BYTES + SIGNAL_STACK_BYTES;
            (start, start + GUARD_BYTES)
        }

        fn stack_bottom(&self) -> *mut c_void {
            self.guard().1 as *mut c_void
        }

        /// Every [`TRIM_EVERY_RUNS`] runs, gives back to the kernel the pages of the stack below
        /// its top `RESIDENT_BYTES` if a run touched the page just below them (a run that went
        /// deeper touched every page on its way: stack probes).
        fn trim(&mut self) {
            self.runs_unchecked += 1;
            if self.runs_unchecked < TRIM_EVERY_RUNS {
                return;
            }
            self.runs_unchecked = 0;
            let bottom = self.guard().1;
            let kept_from = self.start() + MAPPING_BYTES - RESIDENT_BYTES;
            // SAFETY: `sysconf` only reads a constant of the system.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
                .unwrap_or(4096)
                .clamp(4096, GUARD_BYTES);
            let probe = kept_from - page;
            let mut resident = 0u8;
            // SAFETY: `probe` is a page-aligned address inside our mapping, which no thread
            // runs on; `madvise` only empties pages of it, which read back as zeros.
            unsafe {
                let checked = libc::mincore(probe as *mut c_void, 1, &mut resident);
                if checked == 0 && resident & 1 != 0 {
                    libc::madvise(
                        bottom as *mut c_void,
                        kept_from - bottom,
                        libc::MADV_DONTNEED,
                    );
                }
            }
        }
    }

    impl Drop for Stack {
        fn drop(&mut self) {
            // SAFETY: only a stack no thread runs on is dropped (see `RunThread`).
            unsafe { libc::munmap(self.mapping, MAPPING_BYTES) };
        }
    }

    thread_local! {
        /// The stack this thread lends to its runs, between runs.
        static SPARE: RefCell<Option<Stack>> = const { RefCell::new(None) };
    }

    /// Threads the watchdog gave up on, each with the stack it runs on: joined (and their
    /// stacks unmapped) by a later `spawn` once they have ended, so that hung runs that end
    /// late give their memory back.
    static ABANDONED: Mutex<Vec<(libc::pthread_t, Stack)>> = Mutex::new(Vec::new());

    /// A started run thread, joinable exactly once. Dropped without [`RunThread::join`], it
    /// is abandoned as the watchdog abandons a hung run (never its stack unmapped under it).
    pub(crate) struct RunThread {
        thread: libc::pthread_t,
        /// `None` once joined or abandoned.
        stack: Option<Stack>,
    }

    struct Start {
        main: Box<dyn FnOnce() + Send>,
        seed: u64,
        signal_stack: *mut c_void,
        guard: (usize, usize),
    }

    /// Starts `main` on a fresh thread named after `seed`.
    pub(crate) fn spawn(seed: u64, main: Box<dyn FnOnce() + Send>) -> std::io::Result<RunThread> {
        fault::install();
        reap_abandoned();
        // `try_with`: a run started from a thread-local destructor gets a stack of its own.
        let spare = SPARE
            .try_with(|spare| spare.borrow_mut().take())
            .ok()
            .flatten();
        let stack = match spare {
            Some(stack) => stack,
            None => Stack::new()?,
        };
        let start = Box::into_raw(Box::new(Start {
            main,
            seed,
            signal_stack: stack.signal_stack(),
            guard: stack.guard(),
        }));
        // SAFETY: `attr` is initialised before use and destroyed after; the stack is ours and
        // no thread runs on it; `start` passes to the new thread, or back to us on failure.
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            let mut code = libc::pthread_attr_init(&mut attr);
            if code == 0 {
                code = libc::pthread_attr_setstack(&mut attr, stack.stack_bottom(), STACK_BYTES);
                if code == 0 {
                    let mut thread: libc::pthread_t = std::mem::zeroed();
                    code = libc::pthread_create(&mut thread, &attr, run, start.cast());
                    if code == 0 {
                        libc::pthread_attr_destroy(&mut attr);
                        return Ok(RunThread {
                            thread,
                            stack: Some(stack),
                        });
                    }
                }
                libc::pthread_attr_destroy(&mut attr);
            }
            drop(Box::from_raw(start));
            give_back(stack);
            // madsim refuses threads inside a simulation by making `pthread_attr_init` fail
            // with -1: say so rather than "Unknown error -1".
            if code == -1 {
                return Err(std::io::Error::other(
                    "threads cannot be started inside a simulation (a run inside a run?)",
                ));
            }
            Err(std::io::Error::from_raw_os_error(code))
        }
    }

    /// Keeps `stack` for this thread's next run, or unmaps it where the thread-local is gone.
    fn give_back(mut stack: Stack) {
        stack.trim();
        let mut stack = Some(stack);
        let _ = SPARE.try_with(|spare| *spare.borrow_mut() = stack.take());
        drop(stack);
    }

    /// Joins the abandoned threads that have ended since, and unmaps their stacks.
    fn reap_abandoned() {
        let Ok(mut abandoned) = ABANDONED.try_lock() else {
            return;
        };
        abandoned.retain(|(thread, _)| !join_within(*thread, Duration::ZERO));
    }

    extern "C" fn run(start: *mut c_void) -> *mut c_void {
        // SAFETY: `spawn` passed a `Start` it gave up.
        let start = unsafe { Box::from_raw(start.cast::<Start>()) };
        let Start {
            main,
            seed,
            signal_stack,
            guard,
        } = *start;
        fault::enter_run(seed, signal_stack, guard);
        name_thread(seed);
        // `main` catches the run's panics; this one is for a panic in sending its report, which
        // must not unwind into C. The runner then sees a thread that ended without a report.
        let _ = catch_unwind(AssertUnwindSafe(main));
        std::ptr::null_mut()
    }

    /// `sim-seed-N` as the kernel's name of the calling thread (`top -H`, `perf`, debuggers),
    /// cut to the 15 bytes it keeps. std does not know the name: `std::thread::current()`
    /// has none on a run's thread (std cannot name a thread it did not start).
    fn name_thread(seed: u64) {
        let mut name = [0u8; 16];
        let mut text = fault::Text::default();
        text.push(b"sim-seed-");
        text.push_u64(seed);
        let len = text.bytes().len().min(15);
        name[..len].copy_from_slice(&text.bytes()[..len]);
        // SAFETY: `name` ends with a NUL; naming the calling thread has no other effect.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
    }

    impl RunThread {
        /// Joins the thread if it ends within `wall_limit` (zero: no limit) and then within
        /// `on_timeout()`; whether it did. A joined thread gives its stack back for the next
        /// run of the calling thread; one not joined is abandoned with its stack.
        pub(crate) fn join(
            mut self,
            wall_limit: Duration,
            on_timeout: impl FnOnce() -> Duration,
        ) -> bool {
            let joined = if wall_limit.is_zero() {
                // SAFETY: `thread` is joinable and nothing else joins or detaches it.
                unsafe { libc::pthread_join(self.thread, std::ptr::null_mut()) == 0 }
            } else {
                join_within(self.thread, wall_limit) || join_within(self.thread, on_timeout())
            };
            if joined {
                // The thread has ended and the kernel is done with its stack.
                give_back(self.stack.take().expect("a run thread is joined once"));
            }
            // Not joined: `drop` abandons it.
            joined
        }
    }

    impl Drop for RunThread {
        fn drop(&mut self) {
            if let Some(stack) = self.stack.take() {
                // The thread may still run on its stack: it stays mapped until the thread has
                // ended and a later `spawn` joins it.
                let mut abandoned = ABANDONED
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                abandoned.push((self.thread, stack));
            }
        }
    }

    /// Joins `thread` if it exits within `timeout` (zero: only if it has already); whether
    /// it did.
    fn join_within(thread: libc::pthread_t, timeout: Duration) -> bool {
        let mut deadline = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // A deadline in the past (the epoch) asks whether the thread has ended, without waiting.
        // SAFETY: `clock_gettime` only writes the time into `deadline`.
        if !timeout.is_zero()
            && unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut deadline) } != 0
        {
            return false;
        }
        let nanos = deadline.tv_nsec as u64 + u64::from(timeout.subsec_nanos());
        let seconds = (deadline.tv_sec as u64)
            .saturating_add(timeout.as_secs())
            .saturating_add(nanos / 1_000_000_000);
        deadline.tv_sec = libc::time_t::try_from(seconds).unwrap_or(libc::time_t::MAX);
        deadline.tv_nsec = (nanos % 1_000_000_000) as _;
        // SAFETY: `thread` is a joinable thread that nothing else joins or detaches; a join
        // that times out leaves it joinable.
        unsafe { libc::pthread_timedjoin_np(thread, std::ptr::null_mut(), &deadline) == 0 }
    }
}

/// The `SIGSEGV`/`SIGBUS` handler that names a run whose stack overflowed.
#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
mod fault {
    use std::cell::Cell;
    use std::ffi::c_void;
    use std::sync::{Once, OnceLock};

    /// The run on this thread, for the handler: its seed and its stack's guard. Constant
    /// initialisers and no destructor, so reading them in a signal handler is a plain load.
    struct Run {
        seed: Cell<u64>,
        guard: Cell<(usize, usize)>,
    }

    thread_local! {
        static RUN: Run = const {
            Run { seed: Cell::new(0), guard: Cell::new((0, 0)) }
        };
    }

    /// The handlers this one replaced, for `SIGSEGV` and `SIGBUS`.
    static PREVIOUS: [OnceLock<libc::sigaction>; 2] = [OnceLock::new(), OnceLock::new()];
    const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

    /// Installs the handler once per process.
    pub(super) fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            for (signal, previous) in SIGNALS.into_iter().zip(&PREVIOUS) {
                // SAFETY: swaps in our action in one call, keeping the one it replaced, which
                // ours hands every fault that is not a run's overflow.
                unsafe {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = on_fault as *const () as usize;
                    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                    libc::sigemptyset(&mut action.sa_mask);
                    // A fault on another thread between the swap and `set` finds no previous
                    // action and takes the default one: the same crash, without std's line.
                    let mut old: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(signal, &action, &mut old) == 0 {
                        let _ = previous.set(old);
                    }
                }
            }
        });
    }

    /// Called first on a run's thread: the handler's stack, and what it must know.
    pub(super) fn enter_run(seed: u64, signal_stack: *mut c_void, guard: (usize, usize)) {
        RUN.with(|run| {
            run.seed.set(seed);
            run.guard.set(guard);
        });
        let stack = libc::stack_t {
            ss_sp: signal_stack,
            ss_flags: 0,
            ss_size: super::SIGNAL_STACK_BYTES,
        };
        // SAFETY: the signal stack is mapped, ours, and used by this thread alone.
        unsafe { libc::sigaltstack(&stack, std::ptr::null_mut()) };
    }

    extern "C" fn on_fault(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
        // SAFETY: the kernel passes a valid `siginfo_t` to an `SA_SIGINFO` handler.
        let (address, code) = unsafe { ((*info).si_addr() as usize, (*info).si_code) };
        let (seed, guard) = RUN.with(|run| (run.seed.get(), run.guard.get()));
        // A positive code: the kernel's, for a fault (not a signal sent by a process).
        if code > 0 && guard.0 <= address && address < guard.1 {
            // Only async-signal-safe calls from here: a stack buffer, `write`, `abort`.
            let mut text = Text::default();
            text.push(OVERFLOW[0]);
            text.push_u64(seed);
            text.push(OVERFLOW[1]);
            text.push_u64(seed);
            text.push(OVERFLOW[2]);
            // SAFETY: writes our buffer to stderr, then ends the process as std would.
            unsafe {
                libc::write(2, text.bytes().as_ptr().cast(), text.bytes().len());
                libc::abort();
            }
        }
        let index = usize::from(signal == libc::SIGBUS);
        match PREVIOUS[index].get() {
            Some(previous)
                if previous.sa_sigaction != libc::SIG_DFL
                    && previous.sa_sigaction != libc::SIG_IGN =>
            {
                // Its mask and flags other than `SA_SIGINFO` are not applied (std's handler
                // asks for none that matter here).
                // SAFETY: the action installed before ours, called as it asked to be.
                unsafe {
                    if previous.sa_flags & libc::SA_SIGINFO != 0 {
                        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
                            std::mem::transmute(previous.sa_sigaction);
                        handler(signal, info, context);
                    } else {
                        let handler: extern "C" fn(libc::c_int) =
                            std::mem::transmute(previous.sa_sigaction);
                        handler(signal);
                    }
                }
            }
            _ => {
                // Not a run's overflow and nobody else's to handle: the default action, taken
                // when the faulting instruction runs again on return, or at once for a signal
                // a process sent.
                // SAFETY: restores the default action for this signal, then raises it if no
                // instruction will fault again.
                unsafe {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(signal, &action, std::ptr::null_mut());
                    if code <= 0 {
                        libc::raise(signal);
                    }
                }
            }
        }
    }

    /// The overflow message, around its two seeds.
    const OVERFLOW: [&[u8]; 3] = [
        b"\nthread 'sim-seed-",
        b"' has overflowed its stack (the sim-core run of seed ",
        b")\nfatal runtime error: stack overflow, aborting\n",
    ];
    const TEXT_BYTES: usize = 256;
    const _: () = assert!(
        OVERFLOW[0].len() + OVERFLOW[1].len() + OVERFLOW[2].len() + 2 * 20 <= TEXT_BYTES,
        "the overflow message with two 20-digit seeds fits a Text"
    );

    /// A line built without allocating (in a signal handler, or before every run).
    pub(super) struct Text {
        bytes: [u8; TEXT_BYTES],
        len: usize,
    }

    impl Default for Text {
        fn default() -> Self {
            Text {
                bytes: [0; TEXT_BYTES],
                len: 0,
            }
        }
    }

    impl Text {
        pub(super) fn push(&mut self, bytes: &[u8]) {
            let room = self.bytes.len() - self.len;
            let taken = bytes.len().min(room);
            self.bytes[self.len..self.len + taken].copy_from_slice(&bytes[..taken]);
            self.len += taken;
        }

        pub(super) fn push_u64(&mut self, mut value: u64) {
            let mut digits = [0u8; 20];
            let mut start = digits.len();
            loop {
                start -= 1;
                digits[start] = b'0' + (value % 10) as u8;
                value /= 10;
                if value == 0 {
                    break;
                }
            }
            self.push(&digits[start..]);
        }

        pub(super) fn bytes(&self) -> &[u8] {
            &self.bytes[..self.len]
        }
    }
}

/// Elsewhere: a `std::thread` with the same stack size; the caller waits for its report, then
/// joins it.
#[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
mod portable {
    use super::{Sent, ENDED_WITHOUT_REPORT, STACK_BYTES};
    use std::sync::mpsc;
    use std::thread::JoinHandle;
    use std::time::Duration;

    pub(crate) type RunThread = JoinHandle<()>;

    /// Starts `main` on a fresh thread named after `seed`.
    #[allow(clippy::disallowed_methods)] // The run's own fresh OS thread; see the module docs.
    pub(crate) fn spawn(seed: u64, main: Box<dyn FnOnce() + Send>) -> std::io::Result<RunThread> {
        std::thread::Builder::new()
            .name(format!("sim-seed-{seed}"))
            .stack_size(STACK_BYTES)
            .spawn(main)
    }

    /// As on Linux, without a join with a deadline: waits for what the thread sends.
    pub(crate) fn wait(
        thread: RunThread,
        receiver: mpsc::Receiver<Sent>,
        wall_limit: Duration,
        on_timeout: impl FnOnce() -> Duration,
    ) -> Option<Sent> {
        let received = if wall_limit.is_zero() {
            receiver
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            receiver
                .recv_timeout(wall_limit)
                .or_else(|error| match error {
                    mpsc::RecvTimeoutError::Timeout => receiver.recv_timeout(on_timeout()),
                    disconnected => Err(disconnected),
                })
        };
        match received {
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Ok(sent) => {
                let _ = thread.join();
                Some(sent)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
                Some(Err(ENDED_WITHOUT_REPORT.into()))
            }
        }
    }
}
