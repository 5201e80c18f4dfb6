//! Restarts are invisible (same serial, no duplicate audit records) and the audit log's hash
//! chain catches any edit, removal or reordering (issue #4).

#[path = "controller_support.rs"]
mod support;

use std::time::Duration;

use support::*;

fn verify(log: &std::path::Path) -> (bool, String) {
    let out = quiver(&["audit", "verify", log.to_str().expect("utf8")]);
    (out.status.success(), stdout(&out).trim().to_string())
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
