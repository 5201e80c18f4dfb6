//! Restarts are invisible (same serial, no duplicate audit records) and the audit log's hash
//! chain catches any edit, removal or reordering (issue #4).

#[path = "controller_support.rs"]
mod support;

use std::time::Duration;

use support::*;

/// `quiver audit verify`: success, and its first line.
fn verify(log: &std::path::Path) -> (bool, String) {
    let out = quiver(&["audit", "verify", log.to_str().expect("utf8")]);
    let text = stdout(&out);
    (
        out.status.success(),
        text.lines().next().unwrap_or("").trim().to_string(),
    )
}

#[test]
fn a_restart_keeps_the_serial_and_does_not_duplicate_audit_records() {
    let repo = TestRepo::new();
    let setup = Setup::new(&repo, "[watch]\npoll_interval = \"1h\"\n");
    let ctl = setup.start();
    ctl.wait_serial(1, Duration::from_secs(10));
    repo.approved_change(
        "v2",
        &[("library/ps/ps.sh", b"#!/bin/bash\nps aux\n")],
        "ps aux",
    );
    ctl.wait_serial(2, Duration::from_secs(5));
    repo.direct_push(&[("library/ps/ps.sh", b"#!/bin/bash\nps\n")], "drift");
    let token = setup.member_token("carol");
    wait_until("drift seen", Duration::from_secs(5), || {
        (audit_records(&setup.audit_log(), "change.drifted").len() == 1).then_some(())
    });
    let catalog = ctl.get("/v1/catalog.json").bytes().expect("catalog");
    assert!(ctl.stop().success());
    let before = std::fs::read_to_string(setup.audit_log()).expect("log");

    // The version index was persisted at the last reconciled commit.
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(setup.path().join("state/index.json")).expect("index"),
    )
    .expect("index json");
    assert_eq!(index["last_commit"], repo.head().as_str());
    assert_eq!(index["approved_changes"], 2);

    let ctl = setup.start();
    // The restarted controller serves the same snapshot at once, and its first reconcile
    // computes the same serial and bytes.
    assert_eq!(ctl.serial(), Some(2));
    wait_until("first reconcile", Duration::from_secs(10), || {
        ctl.status(&token)["head"].as_str().map(drop)
    });
    assert_eq!(
        ctl.get("/v1/catalog.json").bytes().expect("catalog"),
        catalog
    );
    let log = std::fs::read_to_string(&ctl.log).expect("controller log");
    assert!(ctl.stop().success());
    // It resumed from the persisted index instead of reading the history again.
    assert!(log.contains("loaded the version index"), "{log}");
    assert!(!log.contains("rebuilding the version index"), "{log}");
    let after = std::fs::read_to_string(setup.audit_log()).expect("log");
    assert_eq!(before, after, "a restart adds no audit records");
    let (ok, msg) = verify(&setup.audit_log());
    assert!(ok, "{msg}");
    assert!(msg.starts_with("OK: "), "{msg}");
    for kind in [
        "version.approved",
        "snapshot.published",
        "change.drifted",
        "policy.changed",
    ] {
        assert!(
            !audit_records(&setup.audit_log(), kind).is_empty(),
            "no {kind} record"
        );
    }
}

#[test]
fn verify_names_the_first_bad_record() {
    let repo = TestRepo::new();
    let setup = Setup::new(&repo, "");
    // Build a log with the in-process reconcile and a few approved changes.
    for (i, body) in ["ps aux", "ps -e", "ps -A"].iter().enumerate() {
        let out = quiver(&["reconcile", "--config", &setup.config_str()]);
        assert!(out.status.success(), "{out:?}");
        repo.approved_change(
            &format!("b{i}"),
            &[(
                "library/ps/ps.sh",
                format!("#!/bin/bash\n{body}\n").as_bytes(),
            )],
            body,
        );
    }
    assert!(
        quiver(&["reconcile", "--config", &setup.config_str()])
            .status
            .success()
    );
    let log = setup.audit_log();
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 8, "{}", lines.len());
    let (ok, msg) = verify(&log);
    assert!(ok && msg == format!("OK: {} records", lines.len()), "{msg}");

    let check = |content: String, want: &str| {
        std::fs::write(&log, content).expect("write");
        let (ok, msg) = verify(&log);
        assert!(!ok, "tampering must fail verification");
        assert_eq!(msg, want);
    };
    // One byte changed in record 5's subject.
    let mut bytes = text.clone().into_bytes();
    let start: usize = lines[..4].iter().map(|l| l.len() + 1).sum();
    let at = start + lines[4].find("\"subject\":\"").expect("subject") + 11;
    bytes[at] ^= 0x01;
    check(
        String::from_utf8(bytes).expect("utf8"),
        "record 5 (line 5): hash mismatch",
    );
    // Line 3 removed.
    let removed: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, l)| *l)
        .collect();
    check(
        removed.join("\n") + "\n",
        "record 4 (line 3): sequence gap (expected seq 3)",
    );
    // Lines 6 and 7 swapped.
    let mut swapped = lines.clone();
    swapped.swap(5, 6);
    check(
        swapped.join("\n") + "\n",
        "record 7 (line 6): sequence gap (expected seq 6)",
    );
    // --json names the same record.
    let json = quiver(&["audit", "verify", log.to_str().expect("utf8"), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["line"], 6);
    std::fs::write(&log, &text).expect("restore");
    assert!(verify(&log).0);
}

/// Runs `quiver controller` expecting it to refuse to start; returns its stderr.
fn refused_start(setup: &Setup) -> String {
    let out = std::process::Command::new(quiver_tests::bin("quiver"))
        .args(["controller", "--config", &setup.config_str()])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run controller");
    assert!(
        !out.status.success(),
        "the controller started on a damaged audit log: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_controller_does_not_continue_a_chain_that_was_cut_or_edited() {
    let repo = TestRepo::new();
    let setup = Setup::new(&repo, "[watch]\npoll_interval = \"1h\"\n");
    let ctl = setup.start();
    ctl.wait_serial(1, Duration::from_secs(10));
    assert!(ctl.stop().success());
    let log = setup.audit_log();
    let original = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() >= 3, "{original}");

    // The last record removed: what is left verifies on its own, but the controller knows
    // where its chain ended and refuses to continue it.
    let cut: String = lines[..lines.len() - 1]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&log, &cut).expect("write");
    assert!(verify(&log).0, "a shortened log still verifies by itself");
    let err = refused_start(&setup);
    assert!(
        err.contains("does not end where the controller last wrote it")
            && err.contains(&format!("record {}", lines.len())),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        cut,
        "nothing appended"
    );

    // The file deleted: refused too.
    std::fs::remove_file(&log).expect("rm");
    assert!(refused_start(&setup).contains("with no record"));

    // A byte changed: the chain does not verify, and the controller names the record.
    std::fs::write(
        &log,
        original.replacen("snapshot.published", "snapshot.publishez", 1),
    )
    .expect("write");
    let err = refused_start(&setup);
    assert!(
        err.contains("does not verify") && err.contains("record "),
        "{err}"
    );

    // The operator keeps the damaged log as evidence and starts a new chain: the
    // controller starts, and the new chain's first record says where the old one ended.
    let evidence = setup.path().join("audit.jsonl.damaged");
    std::fs::rename(&log, &evidence).expect("move aside");
    let out = quiver(&[
        "audit",
        "new-chain",
        "--config",
        &setup.config_str(),
        "--reason",
        "log edited on disk; kept as audit.jsonl.damaged",
    ]);
    assert!(out.status.success(), "{out:?}");
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .expect("new log")
            .lines()
            .next()
            .expect("a first record"),
    )
    .expect("json");
    assert_eq!(first["seq"], 1);
    assert_eq!(first["kind"], "audit.chain_started");
    assert_eq!(first["details"]["previous_last_seq"], lines.len());
    // It refuses to start a chain over a log that is still there.
    let again = quiver(&[
        "audit",
        "new-chain",
        "--config",
        &setup.config_str(),
        "--reason",
        "again",
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("move it aside first"));

    let ctl = setup.start();
    repo.approved_change(
        "v2",
        &[("library/ps/ps.sh", b"#!/bin/bash\nps aux\n")],
        "ps aux",
    );
    ctl.wait_serial(2, Duration::from_secs(10));
    assert!(ctl.stop().success());
    let (ok, msg) = verify(&log);
    assert!(ok, "{msg}");
    assert!(
        audit_records(&log, "snapshot.published").len() == 1,
        "the new chain goes on"
    );
    // verify prints the head to keep elsewhere: the last record's seq and hash.
    let text = std::fs::read_to_string(&log).expect("log");
    let last: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a record")).expect("json");
    let out = quiver(&["audit", "verify", log.to_str().expect("utf8")]);
    assert!(
        stdout(&out).contains(&format!(
            "last record: seq {}, hash {}",
            last["seq"],
            last["hash"].as_str().expect("hash")
        )),
        "{}",
        stdout(&out)
    );
}
