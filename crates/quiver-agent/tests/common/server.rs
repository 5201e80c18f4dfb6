//! A loopback HTTP server that plays controller and snapshot mirror, honest or hostile: it
//! serves whatever files a test puts in it (optionally trickled or delayed), answers the
//! controller API calls an agent makes with canned answers, and records every request.
//!
//! Used by the agent crate's tests (through `common`) and, as a hostile mirror in front of a
//! real controller, by the workspace's `tests/agent_attacks.rs` (through `#[path]`), so it
//! depends only on std, the catalog crate, serde_json, sha2 and hex.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use quiver_catalog::PublicKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const TOKEN: &str = "enroll-me";
pub const AGENT_TOKEN: &str = "agent-secret";

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A published file and how to misbehave while serving it.
#[derive(Debug, Clone, Default)]
pub struct Resource {
    pub body: Vec<u8>,
    /// Send the body one byte per this interval.
    pub trickle: Option<Duration>,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
}

#[derive(Default)]
pub struct Inner {
    pub files: HashMap<String, Resource>,
    pub requests: Vec<Req>,
    /// Answers to polls, in order; when empty a poll waits a little and answers "nothing".
    pub polls: VecDeque<(u16, String)>,
    pub enroll_key: Option<String>,
    pub revoked: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    changed: Condvar,
}

pub struct Server {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
        });
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    let _ = handle(conn, &s);
                });
            }
        });
        Server { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }

    pub fn put(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.lock().files.insert(
            format!("/v1/{path}"),
            Resource {
                body: body.into(),
                ..Resource::default()
            },
        );
    }

    pub fn set(&self, path: &str, r: Resource) {
        self.set_at(&format!("/v1/{path}"), r);
    }

    /// Serves `r` at exactly `path` (a mirror may serve the snapshot under any prefix).
    pub fn set_at(&self, path: &str, r: Resource) {
        self.lock().files.insert(path.to_owned(), r);
    }

    pub fn requests(&self) -> Vec<Req> {
        self.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Waits (on the server's condition variable, not by sleeping) until a recorded request
    /// satisfies `pred`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Req) -> bool) -> Req {
        let deadline = Instant::now() + timeout;
        let mut g = self.shared.inner.lock().unwrap();
        loop {
            if let Some(r) = g.requests.iter().find(|r| pred(r)) {
                return r.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for a request");
            g = self.shared.changed.wait_timeout(g, left).unwrap().0;
        }
    }
}

fn handle(conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let req = Req {
        method,
        path,
        headers,
        body,
    };
    let answer = {
        let mut g = shared.inner.lock().unwrap();
        g.requests.push(req.clone());
        shared.changed.notify_all();
        route(&mut g, &req)
    };
    let mut conn = conn;
    match answer {
        Answer::Json(status, body) => respond(&mut conn, status, &[], body.as_bytes()),
        Answer::NotModified(etag) => respond(&mut conn, 304, &[("ETag", &etag)], &[]),
        Answer::PollLater => {
            std::thread::sleep(Duration::from_millis(200));
            respond(&mut conn, 200, &[], br#"{"serial":null,"runs":[]}"#)
        }
        Answer::File(r, etag) => {
            if let Some(d) = r.delay {
                std::thread::sleep(d);
            }
            match r.trickle {
                None => respond(&mut conn, 200, &[("ETag", &etag)], &r.body),
                Some(every) => {
                    write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        r.body.len()
                    )?;
                    for b in &r.body {
                        conn.write_all(&[*b])?;
                        conn.flush()?;
                        std::thread::sleep(every);
                    }
                    Ok(())
                }
            }
        }
    }
}

enum Answer {
    Json(u16, String),
    NotModified(String),
    PollLater,
    File(Resource, String),
}

fn route(g: &mut Inner, req: &Req) -> Answer {
    let path = req.path.split('?').next().unwrap_or_default();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let unauthorized = || {
        Answer::Json(
            401,
            json!({"error": "agent revoked", "reason": "revoked"}).to_string(),
        )
    };
    let bearer_ok = req.header("authorization") == Some(&format!("Bearer {AGENT_TOKEN}"));
    match (req.method.as_str(), segs.as_slice()) {
        ("POST", ["v1", "enroll"]) => {
            let body = req.json();
            if body["token"] != TOKEN {
                return unauthorized();
            }
            let key = g.enroll_key.clone().unwrap_or_default();
            let fp = PublicKey::decode(&key)
                .map(|k| k.fingerprint())
                .unwrap_or_default();
            Answer::Json(
                200,
                json!({"agent_id": body["device_id"], "agent_token": AGENT_TOKEN,
                       "public_key": key, "fingerprint": fp})
                .to_string(),
            )
        }
        ("GET", ["v1", "agents", _, "poll"]) => {
            if g.revoked || !bearer_ok {
                return unauthorized();
            }
            match g.polls.pop_front() {
                Some((status, body)) => Answer::Json(status, body),
                None => Answer::PollLater,
            }
        }
        ("POST", ["v1", "agents", _, _]) | ("POST", ["v1", "runs", _, "result"]) => {
            if g.revoked || !bearer_ok {
                return unauthorized();
            }
            Answer::Json(200, r#"{"ok":true}"#.into())
        }
        ("GET", _) => match g.files.get(path) {
            Some(r) => {
                let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&r.body))[..16]);
                if req.header("if-none-match") == Some(etag.as_str()) {
                    Answer::NotModified(etag)
                } else {
                    Answer::File(r.clone(), etag)
                }
            }
            None => Answer::Json(404, r#"{"error":"not found"}"#.into()),
        },
        _ => Answer::Json(404, r#"{"error":"not found"}"#.into()),
    }
}

fn respond(
    conn: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        304 => "Not Modified",
        401 => "Unauthorized",
        _ => "Other",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    if status != 304 {
        head.push_str(&format!(
            "Content-Length: {}\r\nContent-Type: application/json\r\n",
            body.len()
        ));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    conn.flush()
}
