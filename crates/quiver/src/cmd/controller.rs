//! `quiver controller --config quiver.toml`: run the controller (HTTP API, watch, reconcile,
//! publish) until SIGTERM or ctrl-c, then shut down gracefully and exit 0.

use anyhow::{Context, Result};
use quiver_controller::config::Config;
use quiver_controller::controller::Controller;
use quiver_controller::gitsource::GitSource;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `quiver controller`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The controller's configuration file (see docs/configuration.md).
    #[arg(long, default_value = "quiver.toml")]
    pub config: PathBuf,
}

/// Loads the configuration and opens the controller's state (shared by several commands).
pub fn open(config: &std::path::Path) -> Result<Controller> {
    let config = Config::load(config)?;
    // A local repository that is not there is a typo in the configuration, not a passing
    // failure to wait out: say so at once rather than start degraded.
    if let quiver_controller::config::RepoLocation::Local(path) = &config.repository.location
        && !path.exists()
    {
        anyhow::bail!(
            "repository.path: {} does not exist (give the library's git repository; a relative path is relative to the configuration file)",
            path.display()
        );
    }
    let source = GitSource::new(&config);
    Ok(Controller::open(config, Box::new(source))?)
}

pub fn run(args: Args) -> Result<ExitCode> {
    let controller = open(&args.config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(quiver_controller::serve::run(controller, shutdown_signal()));
    // Background tasks were told to stop; do not wait for idle blocking threads.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on ctrl-c or (on unix) SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
