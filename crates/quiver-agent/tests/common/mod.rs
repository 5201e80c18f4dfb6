//! Test harness: a loopback HTTP server that plays controller and snapshot mirror (honest or
//! hostile), a publisher that signs catalogs with a key made at test time, and helpers that
//! drive the real `quiver-agent` binary and check the state directory independently of the
//! agent's own code.
#![allow(dead_code)]

mod server;

pub use server::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use quiver_catalog::*;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_quiver-agent");
pub const DEVICE: &str = "dev-1";

// ---------------------------------------------------------------------------------------------
// Publishing

/// A script to put in a catalog.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: String,
    pub version: u32,
    pub files: Vec<(String, Vec<u8>)>,
    pub platform: Platform,
    pub groups: Vec<String>,
    pub parameters: Vec<Parameter>,
    pub timeout_secs: u64,
    pub output_limit: u64,
}

/// A bash script whose launch file is `run.sh` with `body`.
pub fn script(name: &str, version: u32, body: &str) -> Script {
    Script {
        name: name.into(),
        version,
        files: vec![("run.sh".into(), body.as_bytes().to_vec())],
        platform: Platform::Linux,
        groups: vec!["all".into()],
        parameters: vec![],
        timeout_secs: 30,
        output_limit: 65536,
    }
}

pub fn param(name: &str, t: ParamType) -> Parameter {
    Parameter {
        name: name.into(),
        r#type: t,
        required: false,
        default: None,
        values: vec![],
        description: String::new(),
    }
}

impl Script {
    pub fn with_file(mut self, path: &str, content: &[u8]) -> Script {
        self.files.push((path.into(), content.to_vec()));
        self
    }

    pub fn entry(&self) -> Entry {
        Entry {
            script: ScriptName::new(&self.name).unwrap(),
            version: self.version,
            commit: "c0ffee".into(),
            description: format!("{} for tests", self.name),
            risk: Risk::Low,
            platforms: BTreeMap::from([(
                self.platform,
                Launch {
                    file: RelPath::new(&self.files[0].0).unwrap(),
                    interpreter: Interpreter::Bash,
                },
            )]),
            groups: self.groups.clone(),
            parameters: self.parameters.clone(),
            timeout_secs: self.timeout_secs,
            output_limit: self.output_limit,
            files: self
                .files
                .iter()
                .map(|(p, c)| FileEntry {
                    path: RelPath::new(p).unwrap(),
                    sha256: sha256_hex(c),
                    size: c.len() as u64,
                    mode: 0o644,
                })
                .collect(),
        }
    }
}

/// The signed documents of one snapshot.
#[derive(Debug, Clone)]
pub struct Signed {
    pub serial: u64,
    pub cat: Vec<u8>,
    pub cat_sig: String,
    pub ts: Vec<u8>,
    pub ts_sig: String,
    pub blobs: Vec<Vec<u8>>,
}

/// The standard groups: everyone, Linux web servers, Windows kiosks.
pub fn groups() -> Vec<Group> {
    vec![
        Group {
            id: "all".into(),
            platform: None,
            labels: BTreeMap::new(),
        },
        Group {
            id: "web".into(),
            platform: Some(Platform::Linux),
            labels: BTreeMap::from([("role".into(), "web".into())]),
        },
        Group {
            id: "db".into(),
            platform: Some(Platform::Linux),
            labels: BTreeMap::from([("role".into(), "db".into())]),
        },
    ]
}

pub struct Publisher {
    pub keys: KeyPair,
    pub server: Server,
}

impl Publisher {
    pub fn new() -> Publisher {
        let keys = KeyPair::generate().unwrap();
        let server = Server::start();
        server.lock().enroll_key = Some(keys.public.to_base64());
        Publisher { keys, server }
    }

    /// Signs a catalog of `scripts` at `serial`, with a timestamp valid for an hour.
    pub fn sign(&self, serial: u64, scripts: &[Script]) -> Signed {
        let entries = scripts.iter().map(Script::entry).collect();
        let catalog = Catalog::new(serial, "src".into(), "pol".into(), groups(), entries);
        let blobs = scripts
            .iter()
            .flat_map(|s| s.files.iter().map(|(_, c)| c.clone()))
            .collect();
        self.sign_bytes(serial, catalog.to_canonical_bytes(), blobs, now(), 3600)
    }

    pub fn sign_bytes(
        &self,
        serial: u64,
        cat: Vec<u8>,
        blobs: Vec<Vec<u8>>,
        issued: time::OffsetDateTime,
        validity_secs: u64,
    ) -> Signed {
        let ts = Timestamp::new(&cat, serial, issued, Duration::from_secs(validity_secs))
            .to_canonical_bytes();
        Signed {
            serial,
            cat_sig: self.keys.signing.sign(&cat, "catalog").unwrap(),
            ts_sig: self.keys.signing.sign(&ts, "timestamp").unwrap(),
            cat,
            ts,
            blobs,
        }
    }

    /// Serves the documents and blobs of `s`.
    pub fn serve(&self, s: &Signed) {
        let srv = &self.server;
        srv.put(layout::TIMESTAMP_FILE, s.ts.clone());
        srv.put(layout::TIMESTAMP_SIG_FILE, s.ts_sig.clone());
        srv.put(layout::CATALOG_FILE, s.cat.clone());
        srv.put(layout::CATALOG_SIG_FILE, s.cat_sig.clone());
        for b in &s.blobs {
            srv.put(&blob_rel_path(&sha256_hex(b)), b.clone());
        }
    }

    pub fn publish(&self, serial: u64, scripts: &[Script]) -> Signed {
        let s = self.sign(serial, scripts);
        self.serve(&s);
        s
    }
}

pub fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

// ---------------------------------------------------------------------------------------------
// Driving the binary

pub struct Device {
    pub dir: tempfile::TempDir,
    pub labels: Vec<(String, String)>,
}

impl Device {
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("QUIVER_AGENT_STATE_DIR", self.state())
            .env("QUIVER_AGENT_LOG", "debug")
            .env("QUIVER_AGENT_TIMEOUT", "10s")
            .env("QUIVER_AGENT_DEADLINE", "20s");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().unwrap();
        eprintln!(
            "$ quiver-agent {}\n{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `sync --json`: (exit code, parsed output).
    pub fn sync(&self, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["sync", "--json"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), v)
    }

    pub fn sync_ok(&self) -> Value {
        let (code, v) = self.sync(&[]);
        assert_eq!(code, 0, "sync failed: {v}");
        v
    }

    /// Asserts that `current.json` names a complete snapshot of `serial` whose signed catalog
    /// verifies and whose files (for this device) all match their digests. Checked with the
    /// catalog crate directly, not the agent's code.
    pub fn assert_current(&self, key: &PublicKey, serial: u64) {
        assert_eq!(
            verify_current(&self.state(), key, &self.labels),
            Some(serial)
        );
    }

    pub fn pointer(&self) -> Option<Value> {
        std::fs::read(self.state().join("current.json"))
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
    }
}

/// Independent check of the invariant: `None` if there is no current.json; panics if it names
/// anything but a complete, verifying snapshot.
pub fn verify_current(state: &Path, key: &PublicKey, labels: &[(String, String)]) -> Option<u64> {
    let ptr: Value = serde_json::from_slice(&std::fs::read(state.join("current.json")).ok()?)
        .expect("current.json is JSON");
    let serial = ptr["serial"].as_u64().expect("serial");
    let dir = state.join(ptr["dir"].as_str().expect("dir"));
    let meta = dir.join(".quiver");
    let cat = std::fs::read(meta.join("catalog.json")).expect("catalog in snapshot");
    let sig = std::fs::read_to_string(meta.join("catalog.json.minisig")).expect("sig");
    key.verify(&cat, &sig).expect("stored catalog verifies");
    let catalog = Catalog::parse(&cat, &Limits::default()).expect("catalog parses");
    assert_eq!(catalog.serial, serial);
    let labels: BTreeMap<String, String> = labels.iter().cloned().collect();
    for e in catalog.for_device(Platform::Linux, &labels) {
        for f in &e.files {
            let mut p = dir.join(e.script.as_str());
            for c in f.path.components() {
                p.push(c);
            }
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            verify_blob(&bytes, f).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
    }
    Some(serial)
}

/// Enrolls a fresh device with `labels` against the publisher's server.
pub fn enrolled(p: &Publisher, labels: &[(&str, &str)]) -> Device {
    let dev = Device {
        dir: tempfile::tempdir().unwrap(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let mut args = vec![
        "enroll".to_owned(),
        "--server".into(),
        p.server.url(),
        "--token".into(),
        TOKEN.into(),
        "--device-id".into(),
        DEVICE.into(),
        "--platform".into(),
        "linux".into(),
    ];
    for (k, v) in labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = dev.run(&args);
    assert!(out.status.success(), "enroll failed");
    dev
}

/// Every file and directory under `root` with its size and modification time.
pub fn listing(root: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        out.insert(d.clone(), (m.len(), m.modified().unwrap()));
        if m.is_dir() {
            for e in std::fs::read_dir(&d).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out
}

pub fn snapshot_requests(reqs: &[Req]) -> Vec<&Req> {
    reqs.iter()
        .filter(|r| !r.path.starts_with("/v1/agents/") && !r.path.starts_with("/v1/runs/"))
        .collect()
}
