//! Running a cached script: the declared interpreter, parameters as separate arguments (never
//! a shell string), a clean environment, a fresh working directory, a timeout that kills the
//! whole process tree, and output captured concurrently into a digest and a bounded tail.
//!
//! Shared by operator runs (`quiver-agent run`) and runs dispatched by the controller.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
#[cfg(not(unix))]
use std::process::Child;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quiver_catalog::api::RunResult;
use quiver_catalog::{Entry, Interpreter, ParamType, Platform, ScriptName, Sha256Hex};
use sha2::{Digest, Sha256};

use crate::cache::{Snapshot, join_rel};
use crate::error::{Error, Result};

/// The largest output tail kept per stream, whatever the catalog says.
pub const MAX_OUTPUT_TAIL: u64 = 16 << 20;
/// How long to wait for the output pipes to close once the script's process tree is gone.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// Everything needed to start one run, decided before anything is started.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Run id (`local-…` for operator runs).
    pub run_id: String,
    /// Script name.
    pub script: ScriptName,
    /// Script version.
    pub version: u32,
    /// Program to start.
    pub program: OsString,
    /// Its arguments, one element each; no shell ever sees them.
    pub args: Vec<OsString>,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Tail kept of each of stdout and stderr.
    pub output_limit: u64,
}

impl Invocation {
    /// Prepares a run of `entry` from `snap`: checks the parameters against the signed
    /// declaration (defaults filled in, declared order) and builds the command line.
    pub fn prepare(
        snap: &Snapshot,
        entry: &Entry,
        platform: Platform,
        given: &BTreeMap<String, String>,
        run_id: &str,
    ) -> Result<Invocation> {
        let launch = entry.platforms.get(&platform).ok_or_else(|| {
            Error::invalid(
                format!("script {}", entry.script),
                format!("has no launch for {platform}"),
            )
        })?;
        let params = entry.check_params(given)?;
        let file = join_rel(&snap.script_dir(&entry.script), &launch.file);
        let (program, args) = command_line(launch.interpreter, &file, entry, &params);
        Ok(Invocation {
            run_id: run_id.to_owned(),
            script: entry.script.clone(),
            version: entry.version,
            program,
            args,
            timeout: Duration::from_secs(entry.timeout_secs.max(1)),
            output_limit: entry.output_limit.min(MAX_OUTPUT_TAIL),
        })
    }
}

/// The program and arguments for a script file and checked parameters.
///
/// POSIX shells and python get `--name value`; PowerShell gets `-Name value`, with booleans
/// as `-Name:$true` / `-Name:$false` (the only spelling that binds both `[bool]` and
/// `[switch]` parameters). Each value is its own argument: metacharacters stay literal.
pub fn command_line(
    interpreter: Interpreter,
    file: &Path,
    entry: &Entry,
    params: &[(String, String)],
) -> (OsString, Vec<OsString>) {
    let ty = |name: &str| {
        entry
            .parameters
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.r#type)
    };
    let mut args: Vec<OsString> = Vec::new();
    let program: OsString = match interpreter {
        Interpreter::Powershell | Interpreter::Pwsh => {
            for a in [
                "-NoProfile",
                "-NonInteractive",
                "-ExecutionPolicy",
                "Bypass",
                "-File",
            ] {
                args.push(a.into());
            }
            args.push(file.into());
            for (name, value) in params {
                if ty(name) == Some(ParamType::Bool) {
                    args.push(format!("-{name}:${value}").into());
                } else {
                    args.push(format!("-{name}").into());
                    args.push(value.into());
                }
            }
            if interpreter == Interpreter::Powershell {
                "powershell.exe".into()
            } else {
                "pwsh".into()
            }
        }
        other => {
            let program: OsString = match other {
                Interpreter::Bash => "bash".into(),
                Interpreter::Sh => "sh".into(),
                Interpreter::Zsh => "zsh".into(),
                Interpreter::Python3 => "python3".into(),
                _ => file.into(),
            };
            if other != Interpreter::Executable {
                args.push(file.into());
            }
            for (name, value) in params {
                args.push(format!("--{name}").into());
                args.push(value.into());
            }
            program
        }
    };
    (program, args)
}

/// The environment of a script: nothing inherited but a minimal PATH (and the variables
/// Windows cannot work without), HOME in the run's own temp directory, and the run's ids.
fn environment(inv: &Invocation, workdir: &Path) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    if cfg!(windows) {
        let root = std::env::var_os("SystemRoot").unwrap_or_else(|| r"C:\Windows".into());
        let root = PathBuf::from(root);
        let pf = std::env::var_os("ProgramFiles").unwrap_or_else(|| r"C:\Program Files".into());
        let path = std::env::join_paths([
            root.join("System32"),
            root.clone(),
            root.join(r"System32\WindowsPowerShell\v1.0"),
            PathBuf::from(pf).join(r"PowerShell\7"),
        ])
        .unwrap_or_default();
        env.push(("PATH".into(), path));
        env.push(("SystemRoot".into(), root.into()));
        env.push(("TEMP".into(), workdir.into()));
        env.push(("TMP".into(), workdir.into()));
        env.push(("USERPROFILE".into(), workdir.into()));
    } else {
        env.push((
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ));
        env.push(("TMPDIR".into(), workdir.into()));
    }
    env.push(("HOME".into(), workdir.into()));
    env.push(("LANG".into(), "C.UTF-8".into()));
    env.push(("QUIVER_RUN_ID".into(), inv.run_id.clone().into()));
    env.push(("QUIVER_SCRIPT".into(), inv.script.as_str().into()));
    env.push(("QUIVER_VERSION".into(), inv.version.to_string().into()));
    env
}

/// Kills a run's process tree; cloneable so a daemon can stop runs at shutdown.
#[derive(Debug, Clone)]
pub struct Killer {
    cancelled: Arc<AtomicBool>,
    #[cfg(unix)]
    pgid: i32,
    #[cfg(not(unix))]
    child: Arc<Mutex<Child>>,
}

impl Killer {
    /// Stops the run on purpose (agent shutdown); its result says so.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.kill_tree();
    }

    fn kill_tree(&self) {
        #[cfg(unix)]
        // SAFETY: kill(2) with a negative pid signals the process group we created with
        // `process_group(0)`; it touches no memory. The group id stays reserved while any
        // member lives, so this reaches the script's descendants and nothing else.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
        }
        #[cfg(not(unix))]
        {
            // TODO(windows): assign the child to a Job Object with
            // JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE at spawn and terminate the job here; until
            // then only the top process is killed and its children may outlive the timeout.
            if let Ok(mut child) = self.child.lock() {
                let _ = child.kill();
            }
        }
    }
}

/// Output captured so far: one digest over everything read (in the order it was read) and a
/// bounded tail per stream.
#[derive(Debug)]
struct Capture {
    hasher: Sha256,
    total: u64,
    tails: [Tail; 2],
}

#[derive(Debug)]
struct Tail {
    buf: VecDeque<u8>,
    limit: usize,
    truncated: bool,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        // Only the last `limit` bytes of this chunk can survive.
        let keep = &bytes[bytes.len().saturating_sub(self.limit)..];
        if keep.len() < bytes.len() {
            self.truncated = true;
        }
        let overflow = (self.buf.len() + keep.len()).saturating_sub(self.limit);
        if overflow > 0 {
            self.truncated = true;
            self.buf.drain(..overflow);
        }
        self.buf.extend(keep);
    }

    fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).into_owned()
    }
}

/// A started run.
pub struct Running {
    inv: Invocation,
    started: Instant,
    killer: Killer,
    exited: mpsc::Receiver<std::io::Result<ExitStatus>>,
    pipes_done: mpsc::Receiver<()>,
    capture: Arc<Mutex<Capture>>,
    // Deleted (with whatever the script left in it) when the run is dropped.
    _workdir: tempfile::TempDir,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("run_id", &self.inv.run_id)
            .finish_non_exhaustive()
    }
}

/// Starts a run. On failure, the result to report is returned instead.
pub fn spawn(inv: &Invocation) -> std::result::Result<Running, Box<RunResult>> {
    let started = Instant::now();
    let fail = |msg: String| Box::new(not_started(msg, started));
    let workdir = tempfile::Builder::new()
        .prefix("quiver-run-")
        .tempdir()
        .map_err(|e| fail(format!("cannot create the run's working directory: {e}")))?;
    let mut cmd = Command::new(&inv.program);
    cmd.args(&inv.args)
        .current_dir(workdir.path())
        .env_clear()
        .envs(environment(inv, workdir.path()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| {
        fail(format!(
            "cannot start {}: {e}",
            Path::new(&inv.program).display()
        ))
    })?;

    let limit = usize::try_from(inv.output_limit).unwrap_or(usize::MAX);
    let tail = || Tail {
        buf: VecDeque::new(),
        limit,
        truncated: false,
    };
    let capture = Arc::new(Mutex::new(Capture {
        hasher: Sha256::new(),
        total: 0,
        tails: [tail(), tail()],
    }));
    let (pipes_tx, pipes_done) = mpsc::channel();
    let streams: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for (i, stream) in streams.into_iter().enumerate() {
        let capture = Arc::clone(&capture);
        let tx = pipes_tx.clone();
        std::thread::spawn(move || {
            if let Some(mut s) = stream {
                read_stream(&mut s, &capture, i);
            }
            let _ = tx.send(());
        });
    }

    let cancelled = Arc::new(AtomicBool::new(false));
    let (exit_tx, exited) = mpsc::channel();
    #[cfg(unix)]
    let killer = {
        let pgid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        std::thread::spawn(move || {
            let _ = exit_tx.send(child.wait());
        });
        Killer { cancelled, pgid }
    };
    #[cfg(not(unix))]
    let killer = {
        let child = Arc::new(Mutex::new(child));
        let waiter = Arc::clone(&child);
        std::thread::spawn(move || {
            // Polled because `wait` would hold the lock `Killer` needs to kill the child.
            loop {
                let polled = match waiter.lock() {
                    Ok(mut c) => c.try_wait(),
                    Err(_) => Err(std::io::Error::other("child lock poisoned")),
                };
                match polled {
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                    Ok(Some(status)) => break drop(exit_tx.send(Ok(status))),
                    Err(e) => break drop(exit_tx.send(Err(e))),
                }
            }
        });
        Killer { cancelled, child }
    };
    Ok(Running {
        inv: inv.clone(),
        started,
        killer,
        exited,
        pipes_done,
        capture,
        _workdir: workdir,
    })
}

fn read_stream(s: &mut dyn Read, capture: &Mutex<Capture>, index: usize) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let Ok(mut c) = capture.lock() else { return };
        c.hasher.update(&buf[..n]);
        c.total += n as u64;
        c.tails[index].push(&buf[..n]);
    }
}

impl Running {
    /// A handle to stop the run from elsewhere.
    pub fn killer(&self) -> Killer {
        self.killer.clone()
    }

    /// Waits for the run to end (or kills it at its timeout) and fills in the result.
    pub fn wait(self) -> RunResult {
        let mut timed_out = false;
        let status = match self.exited.recv_timeout(self.inv.timeout) {
            Ok(s) => s,
            Err(RecvTimeoutError::Timeout) => {
                timed_out = true;
                self.killer.kill_tree();
                self.exited
                    .recv()
                    .unwrap_or_else(|_| Err(std::io::Error::other("waiter thread ended")))
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(std::io::Error::other("waiter thread ended"))
            }
        };
        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        // A run owns its whole process group: whatever it left behind in the background
        // goes too (and with it the last writers of the output pipes).
        self.killer.kill_tree();
        for _ in 0..2 {
            if self.pipes_done.recv_timeout(PIPE_GRACE).is_err() {
                tracing::warn!(run = %self.inv.run_id,
                    "output pipes stayed open after the script ended (a process escaped its \
                     group); output may be incomplete");
                break;
            }
        }
        // `error` is for runs that could not happen as asked (the controller files them as
        // errors); a timeout or a death by signal is an outcome of the script, said by
        // `timed_out` and a missing exit code.
        let (exit_code, mut error) = match &status {
            Ok(s) => {
                if let Some(how) = describe_status(s) {
                    tracing::warn!(run = %self.inv.run_id, "script {how}");
                }
                (s.code(), None)
            }
            Err(e) => (None, Some(format!("waiting for the script failed: {e}"))),
        };
        if self.killer.cancelled.load(Ordering::SeqCst) {
            error = Some("killed: the agent is shutting down".into());
        } else if timed_out {
            tracing::warn!(run = %self.inv.run_id,
                "timed out after {} s; the process tree was killed", self.inv.timeout.as_secs());
        }
        let (output_sha256, output_bytes, stdout_tail, stderr_tail, truncated) =
            match self.capture.lock() {
                Ok(c) => (
                    hex_digest(c.hasher.clone()),
                    c.total,
                    c.tails[0].text(),
                    c.tails[1].text(),
                    c.tails[0].truncated || c.tails[1].truncated,
                ),
                Err(_) => (
                    hex_digest(Sha256::new()),
                    0,
                    String::new(),
                    String::new(),
                    true,
                ),
            };
        RunResult {
            exit_code,
            duration_ms,
            timed_out,
            stdout_tail,
            stderr_tail,
            truncated,
            output_sha256,
            output_bytes,
            error,
        }
    }
}

fn describe_status(s: &ExitStatus) -> Option<String> {
    if s.code().is_some() {
        return None;
    }
    #[cfg(unix)]
    if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(s) {
        return Some(format!("killed by signal {sig}"));
    }
    Some(format!("ended abnormally: {s}"))
}

/// Runs to completion; the result also covers a run that could not start.
pub fn run(inv: &Invocation) -> RunResult {
    match spawn(inv) {
        Ok(r) => r.wait(),
        Err(result) => *result,
    }
}

/// The result of a run that never started.
pub fn not_started(error: String, started: Instant) -> RunResult {
    RunResult {
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        ..RunResult::not_run(error)
    }
}

fn hex_digest(h: Sha256) -> Sha256Hex {
    Sha256Hex::new(&hex::encode(h.finalize())).expect("hex of a SHA-256 is 64 lowercase digits")
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_catalog::{Launch, Parameter, RelPath, Risk};

    fn entry() -> Entry {
        let p = |name: &str, t: ParamType| Parameter {
            name: name.into(),
            r#type: t,
            required: false,
            default: None,
            values: vec![],
            description: String::new(),
        };
        Entry {
            script: ScriptName::new("s").unwrap(),
            version: 1,
            commit: "c".into(),
            description: String::new(),
            risk: Risk::Low,
            platforms: BTreeMap::from([(
                Platform::Linux,
                Launch {
                    file: RelPath::new("run.sh").unwrap(),
                    interpreter: Interpreter::Bash,
                },
            )]),
            groups: vec![],
            parameters: vec![p("Name", ParamType::String), p("Force", ParamType::Bool)],
            timeout_secs: 5,
            output_limit: 10,
            files: vec![],
        }
    }

    fn strings(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn command_lines() {
        let e = entry();
        let params = vec![
            ("Name".to_owned(), "a b; rm -rf / #".to_owned()),
            ("Force".to_owned(), "true".to_owned()),
        ];
        let f = Path::new("/c/run");
        let (prog, args) = command_line(Interpreter::Bash, f, &e, &params);
        assert_eq!(prog, "bash");
        assert_eq!(
            strings(&args),
            ["/c/run", "--Name", "a b; rm -rf / #", "--Force", "true"]
        );
        let (prog, args) = command_line(Interpreter::Pwsh, f, &e, &params);
        assert_eq!(prog, "pwsh");
        assert_eq!(
            strings(&args),
            [
                "-NoProfile",
                "-NonInteractive",
                "-ExecutionPolicy",
                "Bypass",
                "-File",
                "/c/run",
                "-Name",
                "a b; rm -rf / #",
                "-Force:$true"
            ]
        );
        let (prog, args) = command_line(Interpreter::Powershell, f, &e, &[]);
        assert_eq!(prog, "powershell.exe");
        assert_eq!(args.len(), 6);
        let (prog, args) = command_line(Interpreter::Executable, f, &e, &params[..1]);
        assert_eq!(prog, "/c/run");
        assert_eq!(strings(&args), ["--Name", "a b; rm -rf / #"]);
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut t = Tail {
            buf: VecDeque::new(),
            limit: 4,
            truncated: false,
        };
        t.push(b"ab");
        assert!(!t.truncated);
        t.push(b"cd");
        assert_eq!(t.text(), "abcd");
        assert!(!t.truncated);
        t.push(b"e");
        assert_eq!(t.text(), "bcde");
        assert!(t.truncated);
        t.push(b"0123456789");
        assert_eq!(t.text(), "6789");
    }
}
