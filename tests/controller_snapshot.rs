//! What the controller publishes verifies with its public key and nothing else does; it is
//! a pure function of the approved state (two controllers agree byte for byte); blobs are
//! the exact git blob bytes (issue #4).

#[path = "controller_support.rs"]
mod support;

use std::time::Duration;

use quiver_catalog::{Limits, verify_catalog, verify_timestamp};
use sha2::Digest;
use support::*;

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= 0x01;
    b
}

#[test]
fn the_snapshot_verifies_and_any_flipped_byte_fails() {
    let repo = TestRepo::new();
    let setup = Setup::new(&repo, "");
    let ctl = setup.start();
    ctl.wait_serial(1, Duration::from_secs(10));
    let get = |p: &str| ctl.get(p).bytes().expect("bytes").to_vec();
    let (cat, cat_sig, ts, ts_sig) = (
        get("/v1/catalog.json"),
        String::from_utf8(get("/v1/catalog.json.minisig")).expect("utf8"),
        get("/v1/timestamp.json"),
        String::from_utf8(get("/v1/timestamp.json.minisig")).expect("utf8"),
    );
    // The HTTP mirror serves exactly the publish directory.
    assert_eq!(
        cat,
        std::fs::read(setup.publish().join("catalog.json")).expect("file")
    );
    assert_eq!(
        ts,
        std::fs::read(setup.publish().join("timestamp.json")).expect("file")
    );

    let pk = setup.public_key();
    let now = time::OffsetDateTime::now_utc();
    let limits = Limits::default();
    let t = verify_timestamp(&pk, &ts, &ts_sig, now, None, &limits).expect("timestamp verifies");
    verify_catalog(&pk, &cat, &cat_sig, &t, &limits).expect("catalog verifies");

    // A flipped byte anywhere in a document or its signature fails.
    for at in [0, ts.len() / 2, ts.len() - 2] {
        assert!(
            verify_timestamp(&pk, &flip(&ts, at), &ts_sig, now, None, &limits).is_err(),
            "timestamp byte {at}"
        );
    }
    for at in [0, cat.len() / 2, cat.len() - 2] {
        assert!(
            verify_catalog(&pk, &flip(&cat, at), &cat_sig, &t, &limits).is_err(),
            "catalog byte {at}"
        );
    }
    let sig_line = |s: &str| s.lines().nth(1).map(str::len).expect("signature line");
    let flip_sig = |s: &str| {
        // Flip a character of the base64 signature line (line 2).
        let start = s.find('\n').expect("line") + 1 + sig_line(s) / 2;
        let mut b = s.as_bytes().to_vec();
        b[start] = if b[start] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).expect("utf8")
    };
    assert!(verify_timestamp(&pk, &ts, &flip_sig(&ts_sig), now, None, &limits).is_err());
    assert!(verify_catalog(&pk, &cat, &flip_sig(&cat_sig), &t, &limits).is_err());
    // Another key does not verify.
    let other = quiver_catalog::KeyPair::generate().expect("keys").public;
    assert!(verify_timestamp(&other, &ts, &ts_sig, now, None, &limits).is_err());

    // Strong ETags: a matching If-None-Match gets 304 without a body.
    let r = ctl.get("/v1/catalog.json");
    let etag = r.headers()["etag"].to_str().expect("etag").to_string();
    assert_eq!(
        etag,
        format!("\"{}\"", hex::encode(sha2::Sha256::digest(&cat)))
    );
    let r = client()
        .get(format!("{}/v1/catalog.json", ctl.url))
        .header("if-none-match", &etag)
        .send()
        .expect("GET");
    assert_eq!(r.status().as_u16(), 304);
    // Long poll: nothing newer than serial 1 → 304 after the wait.
    let start = std::time::Instant::now();
    let r = ctl.get("/v1/catalog.json?after=1&wait=300ms");
    assert_eq!(r.status().as_u16(), 304);
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert_eq!(
        ctl.get("/v1/catalog.json?after=0&wait=30s")
            .status()
            .as_u16(),
        200
    );
}

#[test]
fn two_controllers_publish_byte_identical_catalogs() {
    let repo = TestRepo::new();
    repo.approved_change(
        "v2",
        &[("library/ps/ps.sh", b"#!/bin/bash\nps aux\n")],
        "ps aux",
    );
    let a = Setup::new(&repo, "");
    let b = Setup::with_key_of(&a, &repo, "");
    for s in [&a, &b] {
        let out = quiver(&["reconcile", "--config", &s.config_str(), "--json"]);
        assert!(out.status.success(), "{out:?}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(report["outcome"], "published");
        assert_eq!(report["serial"], 2);
    }
    let read = |s: &Setup| std::fs::read(s.publish().join("catalog.json")).expect("catalog");
    assert_eq!(read(&a), read(&b), "same history, same bytes");
    // A new commit that does not change the approved state (a drift) changes nothing.
    repo.direct_push(&[("library/ps/ps.sh", b"#!/bin/bash\nps\n")], "drift");
    let out = quiver(&["reconcile", "--config", &a.config_str(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["outcome"], "unchanged", "{report}");
}

#[test]
fn two_running_controllers_serve_the_same_catalog_under_different_signatures() {
    let repo = TestRepo::new();
    repo.approved_change(
        "v2",
        &[("library/ps/ps.sh", b"#!/bin/bash\nps aux\n")],
        "ps aux",
    );
    // Separate folders (config, state, publish) and ports; the same repository and key.
    let a = Setup::new(&repo, "");
    let b = Setup::with_key_of(&a, &repo, "");
    assert_ne!(a.publish(), b.publish());
    let (ca, cb) = (a.start(), b.start());
    assert_ne!(ca.url, cb.url, "two listeners");
    for ctl in [&ca, &cb] {
        ctl.wait_serial(2, Duration::from_secs(30));
    }
    let get = |ctl: &Running, path: &str| {
        let r = ctl.get(path);
        assert_eq!(r.status().as_u16(), 200, "{} {path}", ctl.url);
        r.bytes().expect("body").to_vec()
    };
    let (cat_a, cat_b) = (get(&ca, "/v1/catalog.json"), get(&cb, "/v1/catalog.json"));
    assert!(cat_a == cat_b, "same history, same catalog bytes");
    let sig = |ctl: &Running| {
        String::from_utf8(get(ctl, "/v1/catalog.json.minisig")).expect("utf8 signature")
    };
    let (sig_a, sig_b) = (sig(&ca), sig(&cb));
    let pk = a.public_key();
    assert_eq!(pk, b.public_key());
    pk.verify(&cat_a, &sig_a).expect("A's signature verifies");
    pk.verify(&cat_b, &sig_b).expect("B's signature verifies");
    // The whole chain too: each controller's timestamp names the catalog it serves.
    let (now, limits) = (time::OffsetDateTime::now_utc(), Limits::default());
    for (ctl, cat, sig) in [(&ca, &cat_a, &sig_a), (&cb, &cat_b, &sig_b)] {
        let ts = get(ctl, "/v1/timestamp.json");
        let ts_sig = String::from_utf8(get(ctl, "/v1/timestamp.json.minisig")).expect("utf8");
        let t = verify_timestamp(&pk, &ts, &ts_sig, now, None, &limits).expect("timestamp");
        assert_eq!(t.serial, 2);
        verify_catalog(&pk, cat, sig, &t, &limits).expect("catalog verifies");
    }
    // Same signed text (the trusted comment), different signatures: minisign signs with a
    // random nonce, so replicas agree on documents, not on signature bytes.
    let trusted = |s: &str| s.lines().nth(2).expect("trusted comment").to_string();
    assert!(trusted(&sig_a).starts_with("trusted comment: "), "{sig_a}");
    assert_eq!(trusted(&sig_a), trusted(&sig_b));
    assert_ne!(sig_a, sig_b, "signatures carry a random nonce");
    // What is served is what each wrote to its own publish folder.
    assert_eq!(
        std::fs::read_to_string(a.publish().join("catalog.json.minisig")).expect("sig file"),
        sig_a
    );
    assert_eq!(
        std::fs::read_to_string(b.publish().join("catalog.json.minisig")).expect("sig file"),
        sig_b
    );
}

#[test]
fn published_blobs_are_the_git_blobs_byte_for_byte() {
    let repo = TestRepo::new();
    let setup = Setup::new(&repo, "");
    let ctl = setup.start();
    ctl.wait_serial(1, Duration::from_secs(10));
    let catalog: serde_json::Value = ctl.get("/v1/catalog.json").json().expect("catalog");
    let win = catalog["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["script"] == "winusers")
        .expect("winusers")
        .clone();
    let mut checked = 0;
    for f in win["files"].as_array().expect("files") {
        let path = f["path"].as_str().expect("path");
        let git = std::process::Command::new("git")
            .current_dir(repo.path())
            .args(["cat-file", "blob", &format!("HEAD:library/winusers/{path}")])
            .output()
            .expect("git cat-file")
            .stdout;
        let digest = hex::encode(sha2::Sha256::digest(&git));
        assert_eq!(f["sha256"], digest.as_str(), "{path}");
        let served = ctl
            .get(&format!("/v1/blobs/sha256/{digest}"))
            .bytes()
            .expect("blob");
        assert_eq!(served.to_vec(), git, "{path} served byte for byte");
        let on_disk =
            std::fs::read(setup.publish().join("blobs/sha256").join(&digest)).expect("blob file");
        assert_eq!(on_disk, git);
        checked += 1;
    }
    assert_eq!(checked, 3, "script.toml, users.ps1 and notes.txt");
    let ps1 = ctl
        .get(&format!(
            "/v1/blobs/sha256/{}",
            hex::encode(sha2::Sha256::digest(WIN_PS1))
        ))
        .bytes()
        .expect("ps1");
    assert_eq!(ps1.to_vec(), WIN_PS1, "CRLF preserved");
    let notes = utf16_notes();
    let got = ctl
        .get(&format!(
            "/v1/blobs/sha256/{}",
            hex::encode(sha2::Sha256::digest(&notes))
        ))
        .bytes()
        .expect("notes");
    assert_eq!(got.to_vec(), notes, "UTF-16 preserved");
    // Names that are not digests are refused before touching the disk.
    assert_eq!(
        ctl.get("/v1/blobs/sha256/..%2F..%2Fkeys%2Fquiver.key")
            .status()
            .as_u16(),
        400
    );
    assert_eq!(
        ctl.get(&format!("/v1/blobs/sha256/{}", "a".repeat(64)))
            .status()
            .as_u16(),
        404
    );
}

/// `quiver reconcile --json` with info logs: (report, log).
fn reconcile_logged(setup: &Setup) -> (serde_json::Value, String) {
    let out = std::process::Command::new(quiver_tests::bin("quiver"))
        .args(["reconcile", "--config", &setup.config_str(), "--json"])
        .env("QUIVER_LOG", "info")
        .output()
        .expect("run quiver");
    assert!(out.status.success(), "{out:?}");
    let report = serde_json::from_slice(&out.stdout).expect("json");
    (report, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_persisted_index_resumes_and_a_bad_one_is_rebuilt_to_the_same_bytes() {
    let repo = TestRepo::new();
    let a = Setup::new(&repo, "");
    let index_file = a.path().join("state/index.json");
    let (report, _) = reconcile_logged(&a);
    assert_eq!(report["serial"], 1);
    let merge = repo.approved_change(
        "v2",
        &[("library/ps/ps.sh", b"#!/bin/bash\nps aux\n")],
        "ps aux",
    );
    repo.direct_push(&[("library/ps/ps.sh", b"#!/bin/bash\nps\n")], "drift");
    let (report, log) = reconcile_logged(&a);
    assert_eq!(report["outcome"], "published", "{report}");
    assert_eq!(report["serial"], 2);
    assert!(log.contains("loaded the version index"), "{log}");
    let catalog = std::fs::read(a.publish().join("catalog.json")).expect("catalog");
    let cat: serde_json::Value = serde_json::from_slice(&catalog).expect("json");
    assert_eq!(cat["source_commit"], merge.as_str(), "not the drifted head");
    let persisted = std::fs::read(&index_file).expect("index");
    let index: serde_json::Value = serde_json::from_slice(&persisted).expect("json");
    assert_eq!(index["last_commit"], repo.head().as_str());
    assert_eq!(index["approved_changes"], 2);
    assert_eq!(index["last_approved_change"], merge.as_str());

    // A cold controller on the same history: the same index, byte for byte, and the same
    // catalog.
    let b = Setup::with_key_of(&a, &repo, "");
    let (report, log) = reconcile_logged(&b);
    assert_eq!(report["serial"], 2);
    assert!(log.contains("no version index"), "{log}");
    assert!(
        std::fs::read(b.path().join("state/index.json")).expect("index") == persisted,
        "incremental and cold indexes differ"
    );
    assert_eq!(
        std::fs::read(b.publish().join("catalog.json")).expect("catalog"),
        catalog
    );

    // An index that does not parse, or was built on another trust anchor, is rebuilt (the
    // log says why) with the same result.
    let foreign = String::from_utf8(persisted.clone()).expect("utf8").replace(
        &format!(
            "\"anchor\":\"{}\"",
            index["anchor"].as_str().expect("anchor")
        ),
        &format!("\"anchor\":\"{merge}\""),
    );
    assert_ne!(foreign.as_bytes(), &persisted[..]);
    for (bad, why) in [
        (b"{\"format\":".to_vec(), "index:"),
        (foreign.into_bytes(), "trust anchor"),
    ] {
        std::fs::write(&index_file, bad).expect("write");
        let (report, log) = reconcile_logged(&a);
        assert_eq!(report["outcome"], "unchanged", "{report}");
        assert_eq!(report["serial"], 2);
        assert!(
            log.contains("rebuilding the version index") && log.contains(why),
            "{log}"
        );
        assert!(std::fs::read(&index_file).expect("index") == persisted);
        assert_eq!(
            std::fs::read(a.publish().join("catalog.json")).expect("catalog"),
            catalog
        );
    }
}
