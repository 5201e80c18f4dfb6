//! Enrollment end to end with the real binaries: a `quiver controller` process on 127.0.0.1
//! (the library of `controller_support.rs`: `ps` for Linux) and `quiver-agent` processes with
//! their own state directories, standing for different machines.
//!
//! - Takeover: enrolling a device id that is enrolled and not revoked is refused with 409 and
//!   a message naming the device and `quiver agents revoke`; the refusal is audited as
//!   `agent.enroll_refused`; the token keeps its use; the real agent's daemon keeps running,
//!   syncing and receiving its runs.
//! - Wrong pinned key: the agent compares the controller's key with `--public-key` before it
//!   sends the token, so the token stays usable and no device appears; a missing key file and
//!   a secret key file are named as such. A token with no uses left says so in enrollment's
//!   terms.
//! - A revoked device id can be enrolled again (by another machine): the old token stays dead,
//!   the old device's unfinished run is closed instead of reaching the new one, and both the
//!   re-enrollment and a second revocation are audited.
//!
//! Keys are made at test time (`quiver keygen` by the setup, another pair here).

#[path = "controller_support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{Daemon, Running, Setup, TestRepo, audit_records, quiver, stdout};

/// Runs `quiver-agent` with `args`, with no agent settings from the environment.
fn agent(args: &[&str]) -> Output {
    Command::new(quiver_tests::bin("quiver-agent"))
        .args(args)
        .env_remove("QUIVER_ENROLL_TOKEN")
        .env_remove("QUIVER_AGENT_STATE_DIR")
        .env("QUIVER_AGENT_TIMEOUT", "20s")
        .output()
        .expect("run quiver-agent")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// `quiver-agent enroll` as a linux device pinning `key` (a path or a key line).
fn enroll(ctl: &Running, token: &str, device: &str, state: &Path, key: &str) -> Output {
    agent(&[
        "enroll",
        "--server",
        &ctl.url,
        "--token",
        token,
        "--device-id",
        device,
        "--platform",
        "linux",
        "--public-key",
        key,
        "--state-dir",
        s(state),
    ])
}

fn sync(state: &Path) -> Output {
    agent(&["sync", "--state-dir", s(state), "--json"])
}

/// `quiver token create --enroll --uses N`.
fn enroll_token(setup: &Setup, uses: u32) -> String {
    let out = quiver(&[
        "token",
        "create",
        "--config",
        &setup.config_str(),
        "--enroll",
        "--uses",
        &uses.to_string(),
    ]);
    assert!(out.status.success(), "token create: {out:?}");
    stdout(&out).trim().to_string()
}

/// `quiver agents list --json`.
fn agents_list(setup: &Setup) -> Vec<Value> {
    let out = quiver(&["agents", "list", "--config", &setup.config_str(), "--json"]);
    assert!(out.status.success(), "agents list: {out:?}");
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("agents JSON")
        .as_array()
        .expect("array")
        .clone()
}

fn listed<'a>(agents: &'a [Value], id: &str) -> &'a Value {
    agents
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in `quiver agents list`: {agents:?}"))
}

fn agent_token(state: &Path) -> String {
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(state.join("agent.json")).expect("agent.json"))
            .expect("agent.json JSON");
    cfg["agent_token"].as_str().expect("agent_token").to_owned()
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn audit_verifies(setup: &Setup) {
    let out = quiver(&["audit", "verify", s(&setup.audit_log())]);
    assert!(out.status.success(), "audit verify: {out:?}");
}

fn started_controller() -> (TestRepo, Setup, Running, PathBuf) {
    let repo = TestRepo::new();
    let setup = Setup::new(&repo, "");
    let ctl = setup.start();
    ctl.wait_serial(1, Duration::from_secs(20));
    let pubkey = setup.path().join("keys/quiver.pub");
    (repo, setup, ctl, pubkey)
}

#[test]
fn enrolling_an_active_device_id_is_refused_audited_and_spends_nothing() {
    let (_repo, setup, ctl, pubkey) = started_controller();
    let bob = setup.member_token("bob");
    let machines = tempfile::tempdir().expect("temp dir");
    let real = machines.path().join("real-web-01");
    let intruder = machines.path().join("other-machine");

    // The real web-01 enrolls, syncs and runs its daemon.
    let first = enroll_token(&setup, 1);
    let out = enroll(&ctl, &first, "web-01", &real, s(&pubkey));
    assert!(out.status.success(), "enroll web-01: {out:?}");
    let out = sync(&real);
    assert!(out.status.success(), "sync web-01: {out:?}");
    let real_token = agent_token(&real);
    let mut daemon = Daemon::start(&real, machines.path().join("daemon.log"));

    // Another machine with a valid token claims web-01: refused, 409, nothing written.
    let second = enroll_token(&setup, 1);
    let out = enroll(&ctl, &second, "web-01", &intruder, s(&pubkey));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("HTTP 409"), "{err}");
    assert!(
        err.contains("device web-01 is already enrolled and not revoked"),
        "{err}"
    );
    assert!(
        err.contains("revoke it first with `quiver agents revoke web-01 --config <the controller's quiver.toml>`, then enroll again"),
        "{err}"
    );
    assert!(err.contains("the enrollment token was not used"), "{err}");
    assert!(!intruder.join("agent.json").exists());

    // The API answer itself, as any client sees it.
    let r = ctl.post_json(
        "/v1/enroll",
        None,
        &json!({"token": second, "device_id": "web-01", "platform": "windows",
                "hostname": "intruder"}),
    );
    assert_eq!(r.status().as_u16(), 409);
    let body: Value = r.json().expect("error JSON");
    assert_eq!(body["reason"], "already_enrolled", "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("quiver agents revoke web-01")),
        "{body}"
    );

    // Both refusals are audited with the device, the reason and the token's digest.
    let refused = audit_records(&setup.audit_log(), "agent.enroll_refused");
    assert_eq!(refused.len(), 2, "{refused:?}");
    for r in &refused {
        assert_eq!(r["subject"], "agent:web-01", "{r}");
        assert_eq!(r["details"]["device"], "web-01", "{r}");
        assert_eq!(r["details"]["reason"], "already_enrolled", "{r}");
        assert_eq!(r["details"]["token_sha256"], sha256(&second), "{r}");
    }
    assert_eq!(refused[1]["details"]["hostname"], "intruder");
    assert_eq!(refused[1]["details"]["platform"], "windows");
    let enrolled = audit_records(&setup.audit_log(), "agent.enrolled");
    assert_eq!(
        enrolled.len(),
        1,
        "only the real web-01 enrolled: {enrolled:?}"
    );

    // web-01 is untouched: same token, still checking in, still getting its runs.
    let agents = agents_list(&setup);
    assert_eq!(agents.len(), 1, "{agents:?}");
    let web01 = listed(&agents, "web-01");
    assert_eq!(web01["revoked_at"], Value::Null, "{web01}");
    assert_eq!(web01["platform"], "linux", "{web01}");
    assert_eq!(agent_token(&real), real_token);
    let out = sync(&real);
    assert!(out.status.success(), "web-01 still syncs: {out:?}");
    let out = quiver(&[
        "run",
        "--server",
        &ctl.url,
        "--token",
        &bob,
        "--device",
        "web-01",
        "ps",
        "--wait",
        "--json",
        "--timeout",
        "40s",
    ]);
    assert!(out.status.success(), "run on web-01: {out:?}");
    let run: Value = serde_json::from_slice(&out.stdout).expect("run JSON");
    assert_eq!(run["device"], "web-01", "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        run["result"]["stdout_tail"]
            .as_str()
            .is_some_and(|o| o.contains("PID")),
        "ps output: {run}"
    );
    daemon.assert_running();
    assert!(
        !daemon.log().contains("refused this agent's token"),
        "the real agent was never refused:\n{}",
        daemon.log()
    );

    // The refused attempts spent nothing: the token still enrolls another device, once.
    let web02 = machines.path().join("web-02");
    let out = enroll(&ctl, &second, "web-02", &web02, s(&pubkey));
    assert!(out.status.success(), "the token was still usable: {out:?}");
    let out = enroll(
        &ctl,
        &second,
        "web-03",
        &machines.path().join("web-03"),
        s(&pubkey),
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(
            "enrollment token has no uses left: create a new one with `quiver token create --enroll`"
        ),
        "{err}"
    );
    assert!(!err.contains("enroll it again"), "{err}");
    assert_eq!(agents_list(&setup).len(), 2);
    audit_verifies(&setup);
}

#[test]
fn a_wrong_pinned_key_leaves_the_token_usable_and_no_device() {
    let (_repo, setup, ctl, pubkey) = started_controller();
    let machines = tempfile::tempdir().expect("temp dir");
    let state = machines.path().join("db-01");
    let token = enroll_token(&setup, 1);

    // The operator was given another key than the controller's (made here, at test time).
    let other = quiver_catalog::KeyPair::generate().expect("key pair");
    let other_pub = machines.path().join("other.pub");
    std::fs::write(&other_pub, other.public_key_file_contents()).expect("write other.pub");
    let real = quiver_catalog::PublicKey::decode(
        &std::fs::read_to_string(&pubkey).expect("controller .pub"),
    )
    .expect("controller key");
    let out = enroll(&ctl, &token, "db-01", &state, s(&other_pub));
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "the controller's public key {} is not the pinned key {}; refusing to enroll",
            real.fingerprint(),
            other.public.fingerprint()
        )),
        "{err}"
    );
    assert!(err.contains("the enrollment token was not sent"), "{err}");
    assert!(!state.exists(), "nothing written on the device");

    // A key file that is not there, and the controller's secret key instead of its public
    // key: named as such, before anything is sent.
    let missing = setup.path().join("keys/missing.pub");
    let out = enroll(&ctl, &token, "db-01", &state, s(&missing));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("--public-key {}: no such file", missing.display())),
        "{err}"
    );
    assert!(!err.contains("Invalid encoding"), "{err}");
    let secret = setup.path().join("keys/quiver.key");
    let out = enroll(&ctl, &token, "db-01", &state, s(&secret));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "--public-key {}: this is a minisign secret key, not the controller's public key",
            secret.display()
        )),
        "{err}"
    );
    assert!(!err.contains("Invalid encoding"), "{err}");

    // No ghost device, no enrollment in the audit log.
    assert_eq!(agents_list(&setup), Vec::<Value>::new());
    assert!(audit_records(&setup.audit_log(), "agent.enrolled").is_empty());

    // The single use is still there: with the right key the same token enrolls.
    let out = enroll(&ctl, &token, "db-01", &state, s(&pubkey));
    assert!(out.status.success(), "enroll with the right key: {out:?}");
    assert!(
        stdout(&out).contains(&real.fingerprint()),
        "{}",
        stdout(&out)
    );
    let out = sync(&state);
    assert!(out.status.success(), "sync: {out:?}");
    let agents = agents_list(&setup);
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(listed(&agents, "db-01")["sync_state"], "in_sync");
    assert_eq!(audit_records(&setup.audit_log(), "agent.enrolled").len(), 1);
    audit_verifies(&setup);
}

#[test]
fn a_revoked_device_id_can_be_enrolled_again() {
    let (_repo, setup, ctl, pubkey) = started_controller();
    let bob = setup.member_token("bob");
    let carol = setup.member_token("carol");
    let machines = tempfile::tempdir().expect("temp dir");
    let old = machines.path().join("old-machine");
    let new = machines.path().join("new-machine");
    let token = enroll_token(&setup, 2);

    let out = enroll(&ctl, &token, "web-01", &old, s(&pubkey));
    assert!(out.status.success(), "enroll: {out:?}");
    let out = sync(&old);
    assert!(out.status.success(), "sync: {out:?}");
    let old_token = agent_token(&old);

    // A run queued for the old machine, never picked up (no daemon).
    let out = quiver(&[
        "run", "--server", &ctl.url, "--token", &bob, "--device", "web-01", "ps", "--json",
    ]);
    assert!(out.status.success(), "run request: {out:?}");
    let queued: Value = serde_json::from_slice(&out.stdout).expect("run JSON");
    assert_eq!(queued["status"], "pending", "{queued}");
    let run_id = queued["id"].as_str().expect("run id").to_owned();

    let revoke = || {
        let out = quiver(&[
            "agents",
            "revoke",
            "--config",
            &setup.config_str(),
            "web-01",
        ]);
        assert!(out.status.success(), "revoke: {out:?}");
    };
    revoke();
    let out = sync(&old);
    assert_eq!(out.status.code(), Some(3), "revoked: {out:?}");

    // Another machine takes the id over.
    let out = enroll(&ctl, &token, "web-01", &new, s(&pubkey));
    assert!(out.status.success(), "re-enroll after revocation: {out:?}");
    assert!(stdout(&out).contains("enrolled as web-01"), "{out:?}");
    let new_token = agent_token(&new);
    assert_ne!(new_token, old_token);
    let out = sync(&new);
    assert!(out.status.success(), "sync of the new machine: {out:?}");
    let agents = agents_list(&setup);
    let web01 = listed(&agents, "web-01");
    assert_eq!(web01["revoked_at"], Value::Null, "{web01}");
    assert_eq!(web01["sync_state"], "in_sync", "{web01}");
    // The old machine's token stays dead.
    let out = sync(&old);
    assert_eq!(out.status.code(), Some(3), "old token: {out:?}");
    let r = ctl.post_json(
        "/v1/agents/web-01/checkin",
        Some(&old_token),
        &json!({"platform": "linux", "applied_serial": 1, "agent_version": "test"}),
    );
    assert_eq!(r.status().as_u16(), 401);

    // The run queued for the old machine was closed, not handed to the new one.
    let r = ctl.get_auth(&format!("/v1/runs/{run_id}"), &carol);
    assert_eq!(r.status().as_u16(), 200);
    let run: Value = r.json().expect("run JSON");
    assert_eq!(run["status"], "error", "{run}");
    assert!(
        run["result"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("revoked and enrolled again")),
        "{run}"
    );
    let poll = support::client()
        .get(format!("{}/v1/agents/web-01/poll?after=1&wait=0s", ctl.url))
        .bearer_auth(&new_token)
        .send()
        .expect("poll");
    assert_eq!(poll.status().as_u16(), 200);
    let poll: Value = poll.json().expect("poll JSON");
    assert_eq!(poll["runs"], json!([]), "{poll}");

    // Audited: the re-enrollment says what it replaced, and revoking again is recorded again.
    let enrolled = audit_records(&setup.audit_log(), "agent.enrolled");
    assert_eq!(enrolled.len(), 2, "{enrolled:?}");
    assert_eq!(enrolled[0]["details"]["replaced"], Value::Null);
    let replaced = &enrolled[1]["details"]["replaced"];
    assert!(replaced["revoked_at"].is_string(), "{replaced}");
    assert_eq!(replaced["runs_closed"], 1, "{replaced}");
    revoke();
    assert_eq!(
        audit_records(&setup.audit_log(), "agent.revoked").len(),
        2,
        "each revocation is audited"
    );
    let out = sync(&new);
    assert_eq!(out.status.code(), Some(3), "revoked again: {out:?}");
    audit_verifies(&setup);
}
