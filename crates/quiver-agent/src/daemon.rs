//! The long-running agent: long-poll the controller, sync when a newer serial is published
//! (and every 15 minutes regardless, so an expired timestamp is noticed), run dispatched
//! scripts on a bounded pool, and report results.
//!
//! Shutdown arrives as an event on the same channel as poll answers (from a signal handler via
//! [`ShutdownHandle`]), so a long poll or a backoff never delays it: running scripts get a
//! grace period to finish, then their process trees are killed and their results reported.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use quiver_catalog::api::{PollResponse, RunAssignment, RunResult};

use crate::Agent;
use crate::error::{Error, Result};
use crate::exec::{self, Killer};
use crate::report::{self, sync_and_checkin};
use crate::run::prepare_assignment;
use crate::sync::SyncOptions;

/// Knobs of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonOptions {
    /// Sync options.
    pub sync: SyncOptions,
    /// Runs executing at once. Default 2.
    pub max_runs: usize,
    /// How long a poll may wait at the controller. Default 30 s.
    pub poll_wait: Duration,
    /// Full sync at least this often, new serial or not. Default 15 min.
    pub full_sync_every: Duration,
    /// Time running scripts get to finish at shutdown before they are killed. Default 10 s.
    pub shutdown_grace: Duration,
    /// Longest wait between retries after network errors. Default 60 s.
    pub backoff_cap: Duration,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            sync: SyncOptions::default(),
            max_runs: 2,
            poll_wait: Duration::from_secs(30),
            full_sync_every: Duration::from_secs(15 * 60),
            shutdown_grace: Duration::from_secs(10),
            backoff_cap: Duration::from_secs(60),
        }
    }
}

enum Event {
    Polled(Result<PollResponse>),
    /// A run found the cache damaged: sync now, to repair and report it, rather than at
    /// the next periodic sync.
    Resync,
    Shutdown,
}

/// Asks a running daemon to stop; cloneable and usable from any thread.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Sender<Event>);

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Polled(_) => f.write_str("Polled"),
            Event::Resync => f.write_str("Resync"),
            Event::Shutdown => f.write_str("Shutdown"),
        }
    }
}

impl ShutdownHandle {
    /// Starts a graceful shutdown.
    pub fn shutdown(&self) {
        let _ = self.0.send(Event::Shutdown);
    }
}

/// A daemon ready to [`run`](Daemon::run).
#[derive(Debug)]
pub struct Daemon {
    agent: Arc<Agent>,
    opts: DaemonOptions,
    events_tx: Sender<Event>,
    events: Receiver<Event>,
}

/// Runs in flight, so shutdown can wait for them and then kill them.
#[derive(Debug, Default)]
struct Inflight {
    runs: Mutex<HashMap<String, Killer>>,
    changed: Condvar,
}

impl Inflight {
    fn insert(&self, id: &str, k: Killer) {
        if let Ok(mut m) = self.runs.lock() {
            m.insert(id.to_owned(), k);
        }
    }
    fn remove(&self, id: &str) {
        if let Ok(mut m) = self.runs.lock() {
            m.remove(id);
        }
        self.changed.notify_all();
    }
    /// Waits until no run is in flight or `timeout` passes; true if none is left.
    fn wait_empty(&self, timeout: Duration) -> bool {
        let Ok(guard) = self.runs.lock() else {
            return false;
        };
        match self
            .changed
            .wait_timeout_while(guard, timeout, |m| !m.is_empty())
        {
            Ok((m, _)) => m.is_empty(),
            Err(_) => false,
        }
    }
    fn cancel_all(&self) {
        if let Ok(m) = self.runs.lock() {
            for (id, k) in m.iter() {
                tracing::warn!(run = %id, "killing the run: the agent is shutting down");
                k.cancel();
            }
        }
    }
}

impl Daemon {
    /// A daemon for `agent`, and the handle that stops it.
    pub fn new(agent: Agent, opts: DaemonOptions) -> (Daemon, ShutdownHandle) {
        let (events_tx, events) = mpsc::channel();
        let handle = ShutdownHandle(events_tx.clone());
        (
            Daemon {
                agent: Arc::new(agent),
                opts,
                events_tx,
                events,
            },
            handle,
        )
    }

    /// Runs until shut down (`Ok`) or until the controller refuses the agent's token
    /// ([`Error::Unauthorized`]: the agent was revoked).
    pub fn run(self) -> Result<()> {
        let Daemon {
            agent,
            opts,
            events_tx,
            events,
        } = self;
        let shutting_down = Arc::new(AtomicBool::new(false));
        let inflight = Arc::new(Inflight::default());
        // Bounded: when every worker is busy and the queue is full, polling waits.
        let (queue_tx, queue_rx) = mpsc::sync_channel::<RunAssignment>(opts.max_runs.max(1) * 4);
        let queue_rx = Arc::new(Mutex::new(queue_rx));
        let workers: Vec<JoinHandle<()>> = (0..opts.max_runs.max(1))
            .map(|_| {
                let (agent, rx) = (Arc::clone(&agent), Arc::clone(&queue_rx));
                let (inflight, stop) = (Arc::clone(&inflight), Arc::clone(&shutting_down));
                let resync = events_tx.clone();
                std::thread::spawn(move || worker(&agent, &rx, &inflight, &stop, &resync))
            })
            .collect();
        let poll_tx = spawn_poller(Arc::clone(&agent), opts.poll_wait, events_tx);

        let mut state = LoopState::new(&agent);
        let outcome = state.run_loop(&agent, &opts, &events, &poll_tx, &queue_tx);

        // Shutdown: no new runs; queued ones are reported as not started; running ones get
        // the grace period (none when revoked: nothing could be reported anyway).
        shutting_down.store(true, Ordering::SeqCst);
        drop(queue_tx);
        let grace = if outcome.is_err() {
            Duration::ZERO
        } else {
            opts.shutdown_grace
        };
        if !inflight.wait_empty(grace) {
            inflight.cancel_all();
        }
        for w in workers {
            let _ = w.join();
        }
        tracing::info!("stopped");
        outcome
    }
}

struct LoopState {
    /// Serial of the current snapshot.
    applied: u64,
    /// Highest serial the controller announced (a failed sync does not lower it).
    seen: u64,
    next_full_sync: Instant,
    sync_failures: u32,
    poll_failures: u32,
}

impl LoopState {
    fn new(agent: &Agent) -> LoopState {
        let applied = applied_serial(agent);
        LoopState {
            applied,
            seen: applied,
            next_full_sync: Instant::now(),
            sync_failures: 0,
            poll_failures: 0,
        }
    }

    fn run_loop(
        &mut self,
        agent: &Agent,
        opts: &DaemonOptions,
        events: &Receiver<Event>,
        poll_tx: &Sender<u64>,
        queue: &SyncSender<RunAssignment>,
    ) -> Result<()> {
        loop {
            if Instant::now() >= self.next_full_sync {
                self.sync(agent, opts)?;
            }
            let _ = poll_tx.send(self.applied.max(self.seen));
            let resp = loop {
                match events.recv() {
                    Err(_) | Ok(Event::Shutdown) => return Ok(()),
                    Ok(Event::Polled(r)) => break r,
                    // The poll stays outstanding; its answer is the next event.
                    Ok(Event::Resync) => {
                        tracing::warn!("a run found the cache damaged; syncing now to repair it");
                        self.sync(agent, opts)?;
                    }
                }
            };
            let resp = match resp {
                Ok(r) => {
                    self.poll_failures = 0;
                    r
                }
                Err(e @ Error::Unauthorized { .. }) => return Err(e),
                Err(e) => {
                    self.poll_failures += 1;
                    let delay =
                        backoff(self.poll_failures, Duration::from_secs(1), opts.backoff_cap);
                    tracing::warn!("poll failed ({e}); retrying in {} ms", delay.as_millis());
                    match events.recv_timeout(delay) {
                        Ok(Event::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                            return Ok(());
                        }
                        Ok(Event::Resync) => self.next_full_sync = Instant::now(),
                        _ => {}
                    }
                    continue;
                }
            };
            if let Some(serial) = resp.serial.filter(|s| *s > self.seen) {
                tracing::info!(serial, "controller published a new snapshot");
                self.seen = serial;
                self.sync(agent, opts)?;
            }
            for a in resp.runs {
                tracing::info!(run = %a.run_id, script = %a.script, version = a.version,
                    requested_by = %a.requested_by, "run dispatched");
                if queue.send(a).is_err() {
                    return Ok(());
                }
            }
        }
    }

    fn sync(&mut self, agent: &Agent, opts: &DaemonOptions) -> Result<()> {
        let outcome = sync_and_checkin(agent, &opts.sync);
        if let Some(e @ Error::Unauthorized { .. }) = outcome.checkin_error {
            return Err(e);
        }
        self.applied = applied_serial(agent);
        self.seen = self.seen.max(self.applied);
        let now = Instant::now();
        if outcome.error.is_some() {
            self.sync_failures += 1;
            // Retry sooner than the periodic sync, but back off so a persistent failure
            // (a hostile mirror) does not become a hot loop.
            let delay = backoff(
                self.sync_failures,
                Duration::from_secs(30),
                opts.full_sync_every,
            );
            self.next_full_sync = now + delay;
        } else {
            self.sync_failures = 0;
            self.next_full_sync = now + opts.full_sync_every;
            if let Some(r) = &outcome.report
                && r.switched
            {
                tracing::info!(serial = ?r.serial, scripts = r.scripts, "switched to a new snapshot");
            }
        }
        Ok(())
    }
}

fn applied_serial(agent: &Agent) -> u64 {
    agent
        .state
        .load_pointer()
        .ok()
        .flatten()
        .map_or(0, |p| p.serial)
}

/// A thread that performs one long poll per request; its answers arrive as events.
fn spawn_poller(agent: Arc<Agent>, wait: Duration, events: Sender<Event>) -> Sender<u64> {
    let (tx, rx) = mpsc::channel::<u64>();
    std::thread::spawn(move || {
        for after in rx {
            let r = report::poll(&agent, after, wait);
            if events.send(Event::Polled(r)).is_err() {
                return;
            }
        }
    });
    tx
}

fn worker(
    agent: &Agent,
    queue: &Mutex<Receiver<RunAssignment>>,
    inflight: &Inflight,
    shutting_down: &AtomicBool,
    events: &Sender<Event>,
) {
    loop {
        let next = match queue.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(a) = next else { return };
        let result = if shutting_down.load(Ordering::SeqCst) {
            exec::not_started(
                "the agent shut down before the run started".into(),
                Instant::now(),
            )
        } else {
            execute(agent, &a, inflight)
        };
        deliver(agent, &a.run_id, &result, shutting_down);
        if result
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("cache-tampered") || e.starts_with("cache tampered"))
        {
            let _ = events.send(Event::Resync);
        }
    }
}

fn execute(agent: &Agent, a: &RunAssignment, inflight: &Inflight) -> RunResult {
    let inv = match prepare_assignment(agent, a) {
        Ok(inv) => inv,
        Err(result) => return *result,
    };
    let running = match exec::spawn(&inv) {
        Ok(r) => r,
        Err(result) => return *result,
    };
    inflight.insert(&a.run_id, running.killer());
    let result = running.wait();
    inflight.remove(&a.run_id);
    tracing::info!(run = %a.run_id, exit_code = ?result.exit_code, timed_out = result.timed_out,
        "run finished");
    result
}

/// Posts a result, retrying transient failures a few times (once only while shutting down).
fn deliver(agent: &Agent, run_id: &str, result: &RunResult, shutting_down: &AtomicBool) {
    for attempt in 1..=5u32 {
        match report::post_result(agent, run_id, result) {
            Ok(()) => return,
            Err(e) if e.is_transient() && attempt < 5 && !shutting_down.load(Ordering::SeqCst) => {
                let delay = backoff(attempt, Duration::from_secs(1), Duration::from_secs(30));
                tracing::warn!(run = %run_id, "posting the result failed ({e}); retrying");
                std::thread::sleep(delay);
            }
            Err(e) => {
                tracing::error!(run = %run_id, "could not post the result: {e}");
                return;
            }
        }
    }
}

/// Exponential backoff with jitter: `base * 2^(n-1)`, capped, then a random point in its upper
/// half so many agents do not retry in step.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let d = exp.min(cap);
    let half = d / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// Turns SIGTERM and SIGINT into a graceful shutdown (unix). The handler only writes a byte
/// to a pipe; a thread reading the pipe does the rest, outside signal context.
#[cfg(unix)]
pub fn shutdown_on_signals(handle: ShutdownHandle) -> Result<()> {
    use std::sync::atomic::AtomicI32;
    static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

    extern "C" fn on_signal(_: libc::c_int) {
        let fd = PIPE_WRITE.load(Ordering::SeqCst);
        if fd >= 0 {
            let byte = 1u8;
            // SAFETY: write(2) is async-signal-safe; the buffer is a live local.
            unsafe {
                libc::write(fd, (&raw const byte).cast(), 1);
            }
        }
    }

    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(Error::invalid(
            "signal pipe",
            std::io::Error::last_os_error(),
        ));
    }
    PIPE_WRITE.store(fds[1], Ordering::SeqCst);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with a valid handler and an empty mask is well-formed;
        // the handler only does async-signal-safe work.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(Error::invalid(
                    "signal handler",
                    std::io::Error::last_os_error(),
                ));
            }
        }
    }
    let read_fd = fds[0];
    std::thread::spawn(move || {
        let mut byte = 0u8;
        loop {
            // SAFETY: reads one byte into a live local from the pipe we own.
            let n = unsafe { libc::read(read_fd, (&raw mut byte).cast(), 1) };
            if n == 1 {
                tracing::info!("shutdown requested");
                handle.shutdown();
            } else if n < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            } else {
                return;
            }
        }
    });
    Ok(())
}

/// Windows: Ctrl-C and service stop requests are not wired yet; the process ends the default
/// way. TODO(windows): register a console control handler / service control handler that calls
/// [`ShutdownHandle::shutdown`].
#[cfg(not(unix))]
pub fn shutdown_on_signals(handle: ShutdownHandle) -> Result<()> {
    drop(handle);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let cap = Duration::from_secs(60);
        for attempt in 1..40 {
            let d = backoff(attempt, Duration::from_secs(1), cap);
            assert!(d <= cap, "{d:?}");
            let full = Duration::from_secs(1)
                .saturating_mul(1 << (attempt - 1).min(20))
                .min(cap);
            assert!(d >= full / 2, "{attempt}: {d:?}");
        }
    }
}
