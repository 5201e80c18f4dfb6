//! Enrollment: trade a one-time token for the agent's credentials and pin the controller key.
//!
//! The key is the root of every later check, so where it comes from matters: given with
//! `--public-key` (obtained out of band), the key the controller presents (`GET /v1/key`) must
//! be the same one *before* the enrollment token is sent, so a wrong controller or a wrong key
//! file costs no token use and leaves no device behind; the enrollment answer must carry the
//! same key again. Without `--public-key` the key in the answer is pinned on first use and its
//! fingerprint shown for the operator to compare out of band.
//!
//! The controller refuses a device id that is already enrolled and not revoked (409): that
//! would take over another machine's identity. Revoke the old device first.

use std::collections::BTreeMap;
use std::path::Path;

use quiver_catalog::api::{ApiError, EnrollRequest, EnrollResponse, KeyResponse};
use quiver_catalog::{Platform, PublicKey};
use reqwest::Method;

use crate::config::{AgentConfig, StateDir, check_id};
use crate::error::{Error, Result};
use crate::fetch::{Http, Timeouts};
use crate::fsutil;

/// What `quiver-agent enroll` was asked to do.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// Controller base URL.
    pub server: String,
    /// One-time enrollment token.
    pub token: String,
    /// Device id to enroll as.
    pub device_id: String,
    /// Labels for group targeting.
    pub labels: BTreeMap<String, String>,
    /// Platform of the device.
    pub platform: Platform,
    /// Key to pin (base64 line, `.pub` contents, or a path to a `.pub` file).
    pub public_key: Option<String>,
    /// Where snapshot files come from, if not the controller.
    pub snapshot_url: Option<String>,
    /// Replace an existing enrollment.
    pub force: bool,
}

/// The result of a successful enrollment.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// What was stored in `agent.json`.
    pub config: AgentConfig,
    /// Fingerprint of the pinned key.
    pub fingerprint: String,
    /// The key was given with `--public-key` (and matched); otherwise pinned on first use.
    pub pinned_out_of_band: bool,
}

/// Enrolls the device and writes `agent.json` (0600).
pub fn enroll(state: &StateDir, opts: &EnrollOptions, timeouts: Timeouts) -> Result<Enrolled> {
    check_id("device id", &opts.device_id)?;
    if !(opts.server.starts_with("https://") || opts.server.starts_with("http://")) {
        return Err(Error::Usage(format!(
            "server {:?} must be an http:// or https:// URL",
            opts.server
        )));
    }
    let previous = match state.load_config() {
        Ok(c) => Some(c),
        Err(Error::NotEnrolled(_)) => None,
        Err(e) if opts.force => {
            tracing::warn!("replacing an unreadable enrollment: {e}");
            None
        }
        Err(e) => return Err(e),
    };
    if previous.is_some() && !opts.force {
        return Err(Error::AlreadyEnrolled(state.agent_file()));
    }
    let pinned = opts.public_key.as_deref().map(read_key).transpose()?;

    let http = Http::new(timeouts)?;
    let server = opts.server.trim_end_matches('/');
    if let Some(p) = &pinned {
        // Before the token leaves this machine: is this the controller we were told about?
        let offered = presented_key(&http, server)?;
        if *p != offered {
            return Err(Error::KeyMismatch {
                pinned: p.fingerprint(),
                offered: offered.fingerprint(),
            });
        }
    }
    // A state directory we cannot write would waste the token's use on an enrollment the
    // agent cannot keep: find out first.
    check_writable(state)?;
    let url = format!("{server}/v1/enroll");
    let body = EnrollRequest {
        token: opts.token.clone(),
        device_id: opts.device_id.clone(),
        platform: opts.platform,
        labels: opts.labels.clone(),
        hostname: hostname(),
    };
    let resp: EnrollResponse = http
        .api(Method::POST, &url, None, Some(&body), None)
        .map_err(enroll_refusal)?;
    check_id("agent id from the controller", &resp.agent_id)?;
    let offered = PublicKey::decode(&resp.public_key)?;
    if let Some(p) = &pinned
        && *p != offered
    {
        return Err(Error::KeyMismatch {
            pinned: p.fingerprint(),
            offered: offered.fingerprint(),
        });
    }
    if !resp
        .fingerprint
        .eq_ignore_ascii_case(&offered.fingerprint())
    {
        tracing::warn!(
            "the controller says its key is {} but the key it sent is {}",
            resp.fingerprint,
            offered.fingerprint()
        );
    }
    let config = AgentConfig {
        server: server.to_owned(),
        snapshot_url: opts.snapshot_url.clone(),
        agent_id: resp.agent_id,
        device_id: opts.device_id.clone(),
        platform: opts.platform,
        labels: opts.labels.clone(),
        agent_token: resp.agent_token,
        public_key: offered.to_base64(),
    };
    state.save_config(&config)?;
    if previous.is_some_and(|p| p.public_key != config.public_key) {
        // Snapshots signed by another key can never verify again, and the old serial means
        // nothing to the new controller: start from scratch.
        fsutil::remove_any(&state.current_file())?;
        fsutil::remove_any(&state.timestamp_cache_file())?;
    }
    Ok(Enrolled {
        config,
        fingerprint: offered.fingerprint(),
        pinned_out_of_band: pinned.is_some(),
    })
}

/// The key the controller presents at `GET /v1/key`.
fn presented_key(http: &Http, server: &str) -> Result<PublicKey> {
    let url = format!("{server}/v1/key");
    let resp: KeyResponse = http
        .api::<(), _>(Method::GET, &url, None, None, None)
        .map_err(|e| match e {
            Error::Status { status: 404, .. } => Error::invalid(
                url.clone(),
                "the controller does not serve its key (is it older than this agent?), so it \
                 cannot be checked against --public-key before the enrollment token is sent; \
                 refusing to enroll",
            ),
            e => e,
        })?;
    PublicKey::decode(&resp.public_key).map_err(|e| Error::invalid(format!("key from {url}"), e))
}

/// Creates the state directory and checks a file can be written in it.
fn check_writable(state: &StateDir) -> Result<()> {
    state.ensure_layout()?;
    let dir = state.tmp_dir();
    tempfile::NamedTempFile::new_in(&dir)
        .map(drop)
        .map_err(Error::io(dir))
}

/// A refused `POST /v1/enroll`, said in enrollment's terms (the generic 401 message is about
/// agent tokens).
fn enroll_refusal(e: Error) -> Error {
    const CREATE: &str = "create a new one with `quiver token create --enroll`";
    match e {
        Error::Unauthorized {
            url,
            detail,
            reason,
        } => {
            let message = match reason.as_deref() {
                Some("used_up") => format!("enrollment token has no uses left: {CREATE}"),
                Some("expired") => format!("enrollment token expired: {CREATE}"),
                Some("unknown_token") => format!(
                    "the controller does not know this enrollment token (check for a typo, or \
                     {CREATE})"
                ),
                _ => format!("the controller refused the enrollment token ({detail})"),
            };
            Error::EnrollRefused {
                url,
                status: 401,
                message,
            }
        }
        Error::Status { url, status, body } if (400..500).contains(&status) => {
            let message = serde_json::from_str::<ApiError>(&body)
                .map(|e| e.error)
                .unwrap_or(body);
            Error::EnrollRefused {
                url,
                status,
                message,
            }
        }
        e => e,
    }
}

/// A key given on the command line: a path to a `.pub` file, or the key text itself.
fn read_key(arg: &str) -> Result<PublicKey> {
    let usage = |msg: String| Error::Usage(format!("--public-key {msg}"));
    let path = Path::new(arg);
    if path.is_dir() {
        return Err(usage(format!(
            "{}: is a directory, not the controller's .pub file",
            path.display()
        )));
    }
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        if is_secret_key(&text) {
            return Err(usage(format!(
                "{}: this is a minisign secret key, not the controller's public key; give its \
                 .pub file (the secret key stays on the controller)",
                path.display()
            )));
        }
        return PublicKey::decode(&text).map_err(|e| {
            usage(format!(
                "{}: not a minisign public key ({e}); give the controller's .pub file",
                path.display()
            ))
        });
    }
    if is_secret_key(arg) {
        return Err(usage(
            "is a minisign secret key, not the controller's public key; give its `RW…` public \
             key line or .pub file (the secret key stays on the controller)"
                .into(),
        ));
    }
    PublicKey::decode(arg).map_err(|e| {
        if looks_like_key_text(arg) {
            usage(format!("{arg:?} is not a valid minisign public key ({e})"))
        } else {
            usage(format!(
                "{}: no such file (give the path of the controller's .pub file, or its `RW…` \
                 key line)",
                path.display()
            ))
        }
    })
}

/// Whether `text` (a file's contents or an argument) holds a minisign secret key: its comment
/// says so, or its key line is far longer than a public key's 56 characters.
fn is_secret_key(text: &str) -> bool {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    lines.clone().any(|l| {
        l.strip_prefix("untrusted comment:")
            .is_some_and(|c| c.to_ascii_lowercase().contains("secret key"))
    }) || lines
        .find(|l| !l.starts_with("untrusted comment:"))
        .is_some_and(|l| l.len() > 100 && l.bytes().all(is_base64))
}

/// Whether an argument that is not a file was meant as the key itself (`RW…` or the contents
/// of a `.pub` file) rather than a path.
fn looks_like_key_text(arg: &str) -> bool {
    let t = arg.trim();
    t.contains('\n') || (t.starts_with("RW") && t.bytes().all(is_base64))
}

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

/// The host name, for operators.
pub fn hostname() -> Option<String> {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc != 0 {
            return None;
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8(buf[..end].to_vec())
            .ok()
            .filter(|s| !s.is_empty())
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").ok()
    }
}
