//! One module per command; each has an `Args` struct and a `run` function.

pub mod agents;
pub mod audit;
pub mod controller;
pub mod demo;
pub mod diff;
pub mod history;
pub mod keygen;
pub mod lint;
pub mod reconcile;
pub mod run;
pub mod runs;
pub mod status;
pub mod token;

/// Who ran a CLI command, for audit records: `cli:<operating-system user>`, looked up from
/// the process's user id (not `$USER`, which may be unset or set to anything).
pub fn cli_actor() -> String {
    format!("cli:{}", quiver_agent::run::os_user())
}
