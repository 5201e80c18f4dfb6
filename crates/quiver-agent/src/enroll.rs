//! Enrollment: trade a one-time token for the agent's credentials and pin the controller key.
//!
//! The key is the root of every later check, so where it comes from matters: given with
//! `--public-key` (obtained out of band), the controller's answer must carry the same key or
//! enrollment is refused; otherwise the key in the answer is pinned on first use and its
//! fingerprint shown for the operator to compare out of band.

use std::collections::BTreeMap;
use std::path::Path;

use quiver_catalog::api::{EnrollRequest, EnrollResponse};
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
    let url = format!("{}/v1/enroll", opts.server.trim_end_matches('/'));
    let body = EnrollRequest {
        token: opts.token.clone(),
        device_id: opts.device_id.clone(),
        platform: opts.platform,
        labels: opts.labels.clone(),
        hostname: hostname(),
    };
    let resp: EnrollResponse = http.api(Method::POST, &url, None, Some(&body), None)?;
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
        server: opts.server.trim_end_matches('/').to_owned(),
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

/// A key given on the command line: a path to a `.pub` file, or the key text itself.
fn read_key(arg: &str) -> Result<PublicKey> {
    let path = Path::new(arg);
    let text = if path.is_file() {
        std::fs::read_to_string(path).map_err(Error::io(path))?
    } else {
        arg.to_owned()
    };
    PublicKey::decode(&text).map_err(|e| Error::Usage(format!("--public-key: {e}")))
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
