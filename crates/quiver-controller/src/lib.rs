//! The quiver controller: watches the library repository, reconciles its approved state into
//! a signed snapshot, serves it and the HTTP API, and keeps the audit log and the state.
//!
//! Code map:
//! - [`config`]: `quiver.toml`, strict, with `file:line:column` errors.
//! - [`source`]: the input of a reconcile ([`source::DesiredState`]) and the seam to git;
//!   [`gitsource`] implements it over `quiver-git`.
//! - [`reconcile`]: the decisions, pure: catalog, serial, what to publish, what to audit.
//! - [`controller`]: the I/O shell around them (fetch, rewrite guard, publish, status).
//! - [`publish`]: atomic writes of blobs, catalog and timestamp into the publish directory.
//! - [`audit`]: the hash-chained audit log and its verification.
//! - [`state`]: SQLite: serial offset, reconcile history, agents, tokens, runs.
//! - [`http`]: the axum API; [`webhook`]: forge signatures; [`watch`]: fs notify + poll.
//! - [`retention`]: pruning of run output, run records and audit payloads.
//! - [`metrics`]: Prometheus metrics.
//!
//! Architecture invariants:
//! - Everything published is a pure function of (repository, policy in effect, key, clock);
//!   the catalog bytes depend on the approved state only, so replicas agree byte for byte.
//! - When anything fails the last good snapshot keeps being served, and `/readyz` says why.
//! - This crate never writes to the library repository.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use quiver_controller::{config::Config, controller::Controller, gitsource::GitSource};
//! let config = Config::load("quiver.toml".as_ref())?;
//! let source = GitSource::new(&config);
//! let controller = Controller::open(config, Box::new(source))?;
//! quiver_controller::serve::run(controller, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod audit;
pub mod config;
pub mod controller;
pub mod gitsource;
pub mod http;
pub mod metrics;
pub mod mirror;
pub mod publish;
pub mod reconcile;
pub mod retention;
pub mod serve;
pub mod source;
pub mod state;
pub mod watch;
pub mod webhook;
