//! Resolving a run request to a script in the current snapshot, for operators
//! (`quiver-agent run`) and for runs the controller dispatches.
//!
//! A script runs from the current snapshot only, and only after its files were checked again
//! against the signed catalog: a file changed on disk since the last sync is never executed.

use std::collections::BTreeMap;
use std::time::Instant;

use quiver_catalog::api::{RunAssignment, RunResult};

use crate::Agent;
use crate::cache::{check_entry, load_current};
use crate::error::{Error, Result};
use crate::exec::{self, Invocation};
use crate::report::{self, LocalRunReport};

/// Finds `script` in the current snapshot, checks its files and parameters, and builds the
/// invocation. With `version`, the cached version must be exactly that one.
pub fn prepare(
    agent: &Agent,
    script: &str,
    version: Option<u32>,
    params: &BTreeMap<String, String>,
    run_id: &str,
) -> Result<Invocation> {
    let state = &agent.state;
    if !state.root().is_dir() {
        return Err(Error::NoSnapshot(state.root().to_path_buf()));
    }
    // Shared: runs resolve concurrently; a sync (exclusive) cannot switch or repair meanwhile.
    let _lock = state.lock_shared()?;
    let snap = load_current(state, &agent.key, &agent.limits)?
        .ok_or_else(|| Error::NoSnapshot(state.root().to_path_buf()))?;
    let entry = snap.entry(&agent.config, script)?;
    if let Some(wanted) = version.filter(|v| *v != entry.version) {
        return Err(Error::VersionMismatch {
            script: script.to_owned(),
            wanted,
            cached: entry.version,
        });
    }
    // Integrity at the last moment: never execute a file the catalog does not vouch for.
    let damage = check_entry(
        &snap.script_dir(&entry.script),
        entry,
        agent.config.platform,
    )?;
    if !damage.is_empty() {
        let list: Vec<String> = damage.iter().map(ToString::to_string).collect();
        return Err(Error::CacheTampered(format!(
            "{}: {}; refusing to run it until a sync restores it",
            entry.script,
            list.join("; ")
        )));
    }
    Invocation::prepare(&snap, entry, agent.config.platform, params, run_id)
}

/// A finished operator run.
#[derive(Debug)]
pub struct LocalRun {
    /// The run id the agent made up (`local-…`).
    pub run_id: String,
    /// What ran.
    pub invocation: Invocation,
    /// What happened.
    pub result: RunResult,
    /// Whether the controller accepted the report.
    pub reported: Result<()>,
}

/// Runs a script for an operator on this device and reports it to the controller.
pub fn local(agent: &Agent, script: &str, params: &BTreeMap<String, String>) -> Result<LocalRun> {
    let run_id = format!(
        "local-{}-{:08x}",
        time::OffsetDateTime::now_utc().unix_timestamp(),
        rand::random::<u32>()
    );
    let invocation = prepare(agent, script, None, params, &run_id)?;
    let result = exec::run(&invocation);
    let reported = report::post_local_run(
        agent,
        &LocalRunReport {
            script: script.to_owned(),
            version: invocation.version,
            params: params.clone(),
            result: result.clone(),
            requested_by: format!("local:{}", os_user()),
        },
    );
    Ok(LocalRun {
        run_id,
        invocation,
        result,
        reported,
    })
}

/// Prepares a run the controller dispatched; an error becomes the result to report.
pub fn prepare_assignment(
    agent: &Agent,
    a: &RunAssignment,
) -> std::result::Result<Invocation, Box<RunResult>> {
    prepare(
        agent,
        a.script.as_str(),
        Some(a.version),
        &a.params,
        &a.run_id,
    )
    .map_err(|e| {
        tracing::warn!(run = %a.run_id, code = e.code(), "run refused: {e}");
        // Prefix the stable code unless the message already starts with it.
        let message = e.to_string();
        let message =
            if message.starts_with(e.code()) || message.starts_with(&e.code().replace('-', " ")) {
                message
            } else {
                format!("{}: {message}", e.code())
            };
        Box::new(exec::not_started(message, Instant::now()))
    })
}

/// The operating-system user running the agent, for the run report.
pub fn os_user() -> String {
    #[cfg(unix)]
    {
        // SAFETY: getuid cannot fail and touches no memory.
        let uid = unsafe { libc::getuid() };
        user_name(uid).unwrap_or_else(|| format!("uid:{uid}"))
    }
    #[cfg(not(unix))]
    {
        std::env::var("USERNAME").unwrap_or_else(|_| "unknown".into())
    }
}

#[cfg(unix)]
fn user_name(uid: libc::uid_t) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: `pwd` is plain data; getpwuid_r writes into it and `buf` (of the given length)
    // and sets `result` to null or to `pwd`; `pw_name` then points into `buf`.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(pwd.pw_name)
            .to_str()
            .ok()
            .map(str::to_owned)
    }
}
