//! The one error type of the agent library.
//!
//! Each variant says what failed and where; [`Error::code`] is the stable label that goes into a
//! check-in's [`SyncProblem`](quiver_catalog::api::SyncProblem), and the binary maps variants
//! to exit codes ([`Error::exit_code`]).

use std::path::PathBuf;

use quiver_catalog::{ParamError, VerifyError};

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the state directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server could not be reached, or the connection broke.
    #[error("{url}: {reason}")]
    Network {
        /// The URL requested.
        url: String,
        /// What the HTTP client said.
        reason: String,
    },
    /// A request took longer than its timeout, or a sync ran past its deadline (a server
    /// trickling bytes ends here).
    #[error("{url}: timed out: {reason}")]
    Timeout {
        /// The URL requested.
        url: String,
        /// Which limit was hit.
        reason: String,
    },
    /// The server answered with an unexpected HTTP status.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The controller refused the agent's token (revoked agent, or bad enrollment token).
    #[error(
        "{url}: the controller answered 401 Unauthorized ({detail}); the agent was revoked or \
         its token is not valid: enroll it again"
    )]
    Unauthorized {
        /// The URL requested.
        url: String,
        /// The controller's explanation.
        detail: String,
        /// The controller's reason code (`revoked`, `used_up`…), if it gave one.
        reason: Option<String>,
    },
    /// The controller refused an enrollment: a bad enrollment token, or a device id that is
    /// already enrolled. `agent.json` was not written.
    #[error("enrollment refused by {url} (HTTP {status}): {message}")]
    EnrollRefused {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What went wrong and what to do.
        message: String,
    },
    /// A response body was bigger than the cap for that kind of document.
    #[error("{url}: response is over the {limit}-byte limit; refusing to read more")]
    TooLarge {
        /// The URL requested.
        url: String,
        /// The cap.
        limit: u64,
    },
    /// A snapshot document or blob failed verification.
    #[error("{0}")]
    Verify(#[from] VerifyError),
    /// A file in the cache differs from what the verified catalog says.
    #[error("cache tampered: {0}")]
    CacheTampered(String),
    /// A document (ours or the server's) is not what it should be.
    #[error("{what}: {reason}")]
    Invalid {
        /// Which document or field.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The agent has not been enrolled in this state directory.
    #[error("{0}: not enrolled; run `quiver-agent enroll` first")]
    NotEnrolled(PathBuf),
    /// Enrolling again over an existing enrollment.
    #[error("{0}: already enrolled; pass --force to enroll again")]
    AlreadyEnrolled(PathBuf),
    /// The key the controller presents is not the one the operator pinned.
    #[error(
        "the controller's public key {offered} is not the pinned key {pinned}; refusing to \
         enroll (the enrollment token was not sent; check --public-key and the controller you \
         are talking to)"
    )]
    KeyMismatch {
        /// Fingerprint of the key given with --public-key.
        pinned: String,
        /// Fingerprint of the key the controller presents.
        offered: String,
    },
    /// No snapshot has been applied yet.
    #[error("no verified snapshot in {0} yet; run `quiver-agent sync` first")]
    NoSnapshot(PathBuf),
    /// The script is not in the current snapshot for this device.
    #[error("script {script} is not in the current snapshot (serial {serial}) for this device")]
    UnknownScript {
        /// The name asked for.
        script: String,
        /// The serial of the current snapshot.
        serial: u64,
    },
    /// A run names a version the cache does not have.
    #[error("script {script}: version {wanted} requested, the cache has version {cached}")]
    VersionMismatch {
        /// The script.
        script: String,
        /// The version asked for.
        wanted: u32,
        /// The version in the cache.
        cached: u32,
    },
    /// The parameters of a run were refused.
    #[error("{0}")]
    Param(#[from] ParamError),
    /// A command-line or configuration value is unusable.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// A short stable label for check-ins, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Network { .. } => "network",
            Error::Timeout { .. } => "timeout",
            Error::Status { .. } => "http-status",
            Error::Unauthorized { .. } => "unauthorized",
            Error::EnrollRefused { .. } => "enroll-refused",
            Error::TooLarge { .. } => "too-large",
            Error::Verify(e) => e.reason_code(),
            Error::CacheTampered(_) => "cache-tampered",
            Error::Invalid { .. } => "invalid",
            Error::NotEnrolled(_) => "not-enrolled",
            Error::AlreadyEnrolled(_) => "already-enrolled",
            Error::KeyMismatch { .. } => "key-mismatch",
            Error::NoSnapshot(_) => "no-snapshot",
            Error::UnknownScript { .. } => "unknown-script",
            Error::VersionMismatch { .. } => "version-mismatch",
            Error::Param(_) => "bad-params",
            Error::Usage(_) => "usage",
        }
    }

    /// The process exit code the binary uses for this error (see docs/agent.md).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Unauthorized { .. } | Error::EnrollRefused { status: 401, .. } => {
                exit::UNAUTHORIZED
            }
            Error::Verify(_) | Error::CacheTampered(_) | Error::KeyMismatch { .. } => {
                exit::VERIFICATION
            }
            Error::Usage(_) | Error::Param(_) => exit::USAGE,
            _ => exit::FAILURE,
        }
    }

    /// Whether retrying later may help (network trouble, server errors, timeouts).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Network { .. } | Error::Timeout { .. } => true,
            Error::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl ToString) -> Error {
        Error::Invalid {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// Process exit codes of `quiver-agent`.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Any other failure: I/O, network, server error.
    pub const FAILURE: i32 = 1;
    /// Bad command line, bad parameters.
    pub const USAGE: i32 = 2;
    /// The controller refused the agent's token (revoked or never valid), or `enroll`'s
    /// enrollment token (unknown, expired, no uses left).
    pub const UNAUTHORIZED: i32 = 3;
    /// A snapshot or the cache failed verification; `current` was left untouched.
    pub const VERIFICATION: i32 = 4;
    /// `run`: the script was killed at its timeout (as timeout(1) does).
    pub const RUN_TIMED_OUT: i32 = 124;
    /// `run`: the script could not be started (missing interpreter, tampered cache…).
    pub const RUN_NOT_STARTED: i32 = 125;
}

/// The agent's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
