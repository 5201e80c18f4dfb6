//! HTTP with caps: every response body is read through a size cap and a deadline, so a hostile
//! or broken server can neither fill memory or disk (endless data) nor hold a sync forever
//! (slow retrieval). Blobs are hashed while they stream.
//!
//! Two clocks bound every request: a per-request timeout, and the deadline of the whole sync
//! ([`Timeouts::deadline`]) checked between reads, which is what stops a server trickling one
//! byte at a time under the per-read timeout.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use quiver_catalog::{FileEntry, Sha256Hex, VerifyError};
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The biggest body accepted from a controller API call (poll responses, enrollment…).
pub const MAX_API_BYTES: u64 = 4 << 20;
/// The biggest signature file accepted.
pub const MAX_SIG_BYTES: u64 = 16 << 10;
/// How much of an error body is kept for the message.
const MAX_ERROR_BODY: u64 = 4 << 10;

/// Time limits of network operations; all configurable from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a connection. Default 10 s.
    pub connect: Duration,
    /// One request, from sending it to the last byte of the body. Default 60 s.
    pub request: Duration,
    /// A whole sync, all requests together. Default 15 min.
    pub deadline: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
            deadline: Duration::from_secs(15 * 60),
        }
    }
}

/// The result of a conditional GET.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the copy matching the ETag sent is still current.
    NotModified,
    /// 200 with the body and its ETag, if the server sent one.
    Body {
        /// The body (at most the cap).
        bytes: Vec<u8>,
        /// The `ETag` header.
        etag: Option<String>,
    },
}

/// An HTTP client with the agent's limits.
#[derive(Debug, Clone)]
pub struct Http {
    client: Client,
    timeouts: Timeouts,
}

impl Http {
    /// A client with these timeouts.
    pub fn new(timeouts: Timeouts) -> Result<Http> {
        let client = Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .user_agent(concat!("quiver-agent/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| Error::Usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(Http { client, timeouts })
    }

    /// The configured timeouts.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Starts a session whose requests all end by `now + timeouts.deadline`.
    pub fn session(&self) -> Session<'_> {
        Session {
            http: self,
            deadline: Instant::now() + self.timeouts.deadline,
        }
    }

    /// Calls a controller API endpoint with a bearer token (if any) and a JSON body (if any),
    /// and decodes the JSON answer. `timeout` overrides the request timeout (long polls).
    pub fn api<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<T> {
        let timeout = timeout.unwrap_or(self.timeouts.request);
        let mut req = self.client.request(method, url).timeout(timeout);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let mut resp = send(req, url)?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            let body = read_error_body(&mut resp);
            let (detail, reason) =
                match serde_json::from_str::<quiver_catalog::api::ApiError>(&body) {
                    Ok(e) => (e.error, e.reason),
                    Err(_) => (body, None),
                };
            return Err(Error::Unauthorized {
                url: url.to_owned(),
                detail,
                reason,
            });
        }
        if !status.is_success() {
            return Err(status_error(url, status, &mut resp));
        }
        let deadline = Instant::now() + timeout;
        let mut bytes = Vec::new();
        read_capped(&mut resp, url, MAX_API_BYTES, deadline, |chunk| {
            bytes.extend_from_slice(chunk);
            Ok(())
        })?;
        // An empty 200 decodes as JSON `null`, which suits `()` and `Option`s.
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"null"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map_err(|e| Error::invalid(format!("response of {url}"), e))
    }
}

/// A group of requests sharing one deadline (one sync).
#[derive(Debug)]
pub struct Session<'a> {
    http: &'a Http,
    deadline: Instant,
}

impl Session<'_> {
    fn request_timeout(&self, url: &str) -> Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(deadline_error(url));
        }
        Ok(left.min(self.http.timeouts.request))
    }

    /// GETs `url`, reading at most `cap` bytes; with `etag`, a conditional GET that may
    /// answer [`Fetched::NotModified`].
    pub fn get(&self, url: &str, cap: u64, etag: Option<&str>) -> Result<Fetched> {
        let mut req = self
            .http
            .client
            .get(url)
            .timeout(self.request_timeout(url)?);
        if let Some(tag) = etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, tag);
        }
        let mut resp = send(req, url)?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED && etag.is_some() {
            return Ok(Fetched::NotModified);
        }
        if status != StatusCode::OK {
            return Err(status_error(url, status, &mut resp));
        }
        // Endless data: refuse an announced oversize body before reading any of it.
        if resp.content_length().is_some_and(|n| n > cap) {
            return Err(Error::TooLarge {
                url: url.to_owned(),
                limit: cap,
            });
        }
        let new_etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut bytes = Vec::new();
        read_capped(&mut resp, url, cap, self.deadline, |chunk| {
            bytes.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(Fetched::Body {
            bytes,
            etag: new_etag,
        })
    }

    /// GETs a blob into `out`, hashing it as it streams, and checks size and digest against
    /// the catalog entry. Reads at most `file.size + 1` bytes: one byte too many is enough to
    /// know the server is sending the wrong thing (endless data).
    pub fn get_blob(&self, url: &str, file: &FileEntry, out: &mut impl Write) -> Result<()> {
        let req = self
            .http
            .client
            .get(url)
            .timeout(self.request_timeout(url)?);
        let mut resp = send(req, url)?;
        let status = resp.status();
        if status != StatusCode::OK {
            return Err(status_error(url, status, &mut resp));
        }
        let mut check = BlobCheck::new(file);
        let cap = file.size.saturating_add(1);
        let result = read_capped(&mut resp, url, cap, self.deadline, |chunk| {
            check.update(chunk);
            out.write_all(chunk).map_err(|e| Error::Network {
                url: url.to_owned(),
                reason: format!("writing the download: {e}"),
            })
        });
        match result {
            // More than cap bytes: report it as the size mismatch it is.
            Err(Error::TooLarge { .. }) => Err(VerifyError::BlobSize {
                path: file.path.clone(),
                expected: file.size,
                found: cap,
            }
            .into()),
            Err(e) => Err(e),
            Ok(_) => Ok(check.finish()?),
        }
    }
}

/// Streaming equivalent of [`quiver_catalog::verify_blob`]: the same checks (size first, then
/// digest) and the same errors, without holding the blob in memory.
#[derive(Debug)]
pub struct BlobCheck<'a> {
    file: &'a FileEntry,
    hasher: Sha256,
    size: u64,
}

impl<'a> BlobCheck<'a> {
    /// Starts checking bytes against `file`.
    pub fn new(file: &'a FileEntry) -> BlobCheck<'a> {
        BlobCheck {
            file,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        self.hasher.update(bytes);
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Checks the size (truncation, endless data), then the digest (integrity).
    pub fn finish(self) -> Result<(), VerifyError> {
        if self.size != self.file.size {
            return Err(VerifyError::BlobSize {
                path: self.file.path.clone(),
                expected: self.file.size,
                found: self.size,
            });
        }
        let found = hex::encode(self.hasher.finalize());
        if found != self.file.sha256.as_str() {
            return Err(VerifyError::BlobDigest {
                path: self.file.path.clone(),
                expected: self.file.sha256.clone(),
                // 64 lowercase hex digits by construction; fall back to the expected value's
                // type only to keep the error well-formed.
                found: Sha256Hex::new(&found).unwrap_or_else(|_| self.file.sha256.clone()),
            });
        }
        Ok(())
    }
}

/// Reads `resp` in chunks into `sink`, failing once more than `cap` bytes arrive or the
/// `deadline` passes. Returns the byte count.
fn read_capped(
    resp: &mut Response,
    url: &str,
    cap: u64,
    deadline: Instant,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        // Slow retrieval: the deadline holds however the bytes are spread over time.
        if Instant::now() >= deadline {
            return Err(deadline_error(url));
        }
        let n = match resp.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(url, e)),
        };
        total += n as u64;
        // Endless data: stop at the first byte over the cap.
        if total > cap {
            return Err(Error::TooLarge {
                url: url.to_owned(),
                limit: cap,
            });
        }
        sink(&buf[..n])?;
    }
}

fn send(req: RequestBuilder, url: &str) -> Result<Response> {
    req.send().map_err(|e| reqwest_error(url, &e))
}

fn reqwest_error(url: &str, e: &reqwest::Error) -> Error {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_timeout() {
        Error::Timeout {
            url: url.to_owned(),
            reason,
        }
    } else {
        Error::Network {
            url: url.to_owned(),
            reason,
        }
    }
}

fn io_error(url: &str, e: std::io::Error) -> Error {
    let timed_out = e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
            .is_some_and(reqwest::Error::is_timeout);
    if timed_out {
        Error::Timeout {
            url: url.to_owned(),
            reason: format!("reading the body: {e}"),
        }
    } else {
        Error::Network {
            url: url.to_owned(),
            reason: format!("reading the body: {e}"),
        }
    }
}

fn deadline_error(url: &str) -> Error {
    Error::Timeout {
        url: url.to_owned(),
        reason: "the sync deadline passed (server too slow?)".into(),
    }
}

fn status_error(url: &str, status: StatusCode, resp: &mut Response) -> Error {
    Error::Status {
        url: url.to_owned(),
        status: status.as_u16(),
        body: read_error_body(resp),
    }
}

fn read_error_body(resp: &mut Response) -> String {
    let mut buf = Vec::new();
    let _ = resp.take(MAX_ERROR_BODY).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).trim().to_owned()
}
