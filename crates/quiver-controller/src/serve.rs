//! Running the controller: the HTTP server plus its background tasks (reconcile loop,
//! timestamp re-signing, retention, ref watching), and a graceful shutdown.
//!
//! Shutdown (SIGTERM / ctrl-c, passed in as a future): stop accepting connections, wake
//! every long poll so it answers at once, let in-flight requests finish for up to
//! [`SHUTDOWN_GRACE`], then return so the process exits 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::config::RepoLocation;
use crate::controller::{Controller, Shared};
use crate::watch::{jittered, refs_dir, watch_refs};

/// How long in-flight requests get after the shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding the listen address failed.
    #[error("server.listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Binds the listen address and serves until `shutdown` resolves. Prints
/// `listening on http://ADDR` on stdout once bound (with port 0 the real port).
pub async fn run(
    controller: Controller,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let shared = controller.shared.clone();
    let addr = shared.config.server.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    println!("listening on http://{local}");
    tracing::info!(%local, "controller listening");

    let _watcher = start_ref_watch(&shared);
    let tasks = vec![
        tokio::spawn(reconcile_loop(controller.clone())),
        tokio::spawn(resign_loop(controller.clone())),
        tokio::spawn(retention_loop(shared.clone())),
    ];

    let down = shared.shutdown.clone();
    let app = crate::http::router(shared.clone());
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        down.send_replace(true);
    });
    let server = server.into_future();
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r,
        _ = async {
            crate::controller::shutting_down(shared.shutdown.subscribe()).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}; exiting");
            Ok(())
        }
    };
    shared.shutdown.send_replace(true);
    for t in tasks {
        t.abort();
    }
    tracing::info!("server stopped");
    result.map_err(ServeError::Io)
}

fn start_ref_watch(shared: &Arc<Shared>) -> Option<crate::watch::RefWatcher> {
    let cfg = &shared.config;
    let RepoLocation::Local(path) = &cfg.repository.location else {
        return None;
    };
    if !cfg.watch.fs_notify {
        return None;
    }
    let dir = match refs_dir(path) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("not watching the repository for changes: {e}");
            return None;
        }
    };
    let s = shared.clone();
    let debounce = (cfg.watch.debounce / 2).max(Duration::from_millis(20));
    match watch_refs(&dir, debounce, move || s.trigger.notify_one()) {
        Ok(w) => {
            tracing::info!(dir = %dir.display(), "watching refs for changes");
            Some(w)
        }
        Err(e) => {
            tracing::warn!("not watching {} for changes: {e}", dir.display());
            None
        }
    }
}

/// Reconciles at start, then on every trigger (debounced) and every jittered poll interval.
async fn reconcile_loop(controller: Controller) {
    let shared = controller.shared.clone();
    let cfg = &shared.config.watch;
    loop {
        controller.reconcile().await;
        tokio::select! {
            _ = shared.trigger.notified() => {
                // Let a burst (a push of several refs, a flurry of webhooks) settle, then
                // absorb the triggers it left so it costs one reconcile.
                tokio::time::sleep(cfg.debounce).await;
                let _ = tokio::time::timeout(Duration::ZERO, shared.trigger.notified()).await;
            }
            _ = tokio::time::sleep(jittered(cfg.poll_interval)) => {}
            _ = crate::controller::shutting_down(shared.shutdown.subscribe()) => break,
        }
        if *shared.shutdown.borrow() {
            break;
        }
    }
}

/// Re-signs the timestamp once it is `resign_interval` old.
async fn resign_loop(controller: Controller) {
    let interval = controller.shared.config.timestamp.resign_interval;
    let check = interval
        .min(Duration::from_secs(60))
        .max(Duration::from_secs(1));
    loop {
        let c = controller.clone();
        let done = tokio::task::spawn_blocking(move || c.resign_blocking(Some(interval))).await;
        match done {
            Ok(Ok(true)) => tracing::info!("re-signed the timestamp"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                controller.shared.metrics.reconcile_error("timestamp");
                tracing::warn!("re-signing the timestamp failed: {e}");
            }
            Err(e) => tracing::warn!("re-signing task failed: {e}"),
        }
        tokio::time::sleep(check).await;
    }
}

async fn retention_loop(shared: Arc<Shared>) {
    // Give the first reconcile time to load the policy in effect.
    tokio::time::sleep(Duration::from_secs(30)).await;
    loop {
        let s = shared.clone();
        match tokio::task::spawn_blocking(move || {
            crate::retention::run_once(&s, OffsetDateTime::now_utc())
        })
        .await
        {
            Ok(Ok(p)) if p != Default::default() => tracing::info!(?p, "retention pruned"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("retention failed: {e}"),
            Err(e) => tracing::warn!("retention task failed: {e}"),
        }
        tokio::time::sleep(crate::retention::INTERVAL).await;
    }
}
