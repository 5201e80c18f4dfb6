//! The quiver endpoint agent: it pins the controller's public key, keeps a verified cache of
//! the scripts approved for this device, and runs them on request with their declared
//! interpreter, parameters as separate arguments, a timeout and capped output.
//!
//! Code map (dependencies run downwards):
//!
//! - [`config`]: the state directory layout and the enrollment file.
//! - [`fetch`]: HTTP with size caps, per-request timeouts and a sync deadline.
//! - [`cache`]: snapshot directories and blobs on disk, and the checks that they still match
//!   the signed catalog.
//! - [`sync`]: verify, stage, switch — the one place `current.json` changes.
//! - [`exec`]: running a script.
//! - [`report`]: check-ins, run results, the long poll.
//! - [`enroll`], [`run`], [`daemon`]: the commands.
//!
//! Architecture invariants:
//! - the agent knows nothing of git, policies or approvals: it trusts the pinned key and the
//!   signed catalog, and nothing it downloads before checking it against them;
//! - `current.json` names a complete, verified snapshot at every instant;
//! - a script only ever runs from the current snapshot, after its files were re-checked.
//!
//! ```no_run
//! use quiver_agent::{Agent, config::StateDir, fetch::Timeouts, sync::SyncOptions};
//!
//! let agent = Agent::open(StateDir::new("/var/lib/quiver-agent"), Timeouts::default())?;
//! let outcome = quiver_agent::report::sync_and_checkin(&agent, &SyncOptions::default());
//! assert!(outcome.error.is_none());
//! # Ok::<(), quiver_agent::Error>(())
//! ```
#![deny(missing_docs)]

pub mod cache;
pub mod config;
pub mod daemon;
pub mod enroll;
mod error;
pub mod exec;
pub mod fetch;
mod fsutil;
pub mod report;
pub mod run;
pub mod sync;

pub use error::{Error, Result, exit};

use quiver_catalog::{Limits, PublicKey};

use crate::config::{AgentConfig, StateDir};
use crate::fetch::{Http, Timeouts};

/// An enrolled agent: its state directory, enrollment, pinned key and HTTP client.
#[derive(Debug, Clone)]
pub struct Agent {
    /// The state directory.
    pub state: StateDir,
    /// The enrollment.
    pub config: AgentConfig,
    /// The pinned controller key.
    pub key: PublicKey,
    /// HTTP client with the configured limits.
    pub http: Http,
    /// Size caps on downloaded documents.
    pub limits: Limits,
}

impl Agent {
    /// Opens an enrolled state directory.
    pub fn open(state: StateDir, timeouts: Timeouts) -> Result<Agent> {
        let config = state.load_config()?;
        let key = config.key()?;
        Ok(Agent {
            state,
            config,
            key,
            http: Http::new(timeouts)?,
            limits: Limits::default(),
        })
    }
}
