//! Endpoints and runs through the HTTP API (issue #4): enrollment, check-in, role checks on
//! run requests (201 / 403 with an audit record), dispatch by long poll, results, and
//! revocation (401 at once, and status shows it).

#[path = "controller_support.rs"]
mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

fn enroll(ctl: &Running, token: &str, device: &str, platform: &str) -> String {
    let r = ctl.post_json(
        "/v1/enroll",
        None,
        &json!({"token": token, "device_id": device, "platform": platform,
                "labels": {"site": "hq"}, "hostname": device}),
    );
    assert_eq!(r.status().as_u16(), 201);
    let v: serde_json::Value = r.json().expect("json");
    assert_eq!(v["agent_id"], device);
    assert!(
        v["public_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("RW"))
    );
    v["agent_token"].as_str().expect("token").to_string()
}

fn checkin(ctl: &Running, device: &str, token: &str, serial: u64) -> u16 {
    ctl.post_json(
        &format!("/v1/agents/{device}/checkin"),
        Some(token),
        &json!({"platform": "linux", "labels": {"site": "hq"}, "applied_serial": serial,
                "scripts": [{"name": "ps", "version": 1}], "errors": [], "agent_version": "test"}),
    )
    .status()
    .as_u16()
}

#[test]
fn runs_are_checked_against_roles_dispatched_and_reported() {
    let repo = TestRepo::new();
    let setup = Setup::new(&repo, "");
    let ctl = setup.start();
    ctl.wait_serial(1, Duration::from_secs(10));
    let enroll_token = setup.enroll_token();
    let (bob, dave, carol, alice) = (
        setup.member_token("bob"),
        setup.member_token("dave"),
        setup.member_token("carol"),
        setup.member_token("alice"),
    );
    let out = quiver(&[
        "token",
        "create",
        "--config",
        &setup.config_str(),
        "--member",
        "mallory",
    ]);
    assert!(!out.status.success(), "a member must exist in the policy");

    // Enrollment: a bad token is refused; a good one gives an agent token.
    let r = ctl.post_json(
        "/v1/enroll",
        None,
        &json!({"token": "qve_nope", "device_id": "h1", "platform": "linux"}),
    );
    assert_eq!(r.status().as_u16(), 401);
    let agent = enroll(&ctl, &enroll_token, "host-1", "linux");
    assert_eq!(checkin(&ctl, "host-1", &agent, 1), 200);
    assert_eq!(checkin(&ctl, "host-1", "qva_wrong", 1), 401);

    // Bob may execute on Linux devices: 201, pending.
    let r = ctl.post_json(
        "/v1/runs",
        Some(&bob),
        &json!({"device": "host-1", "script": "ps", "params": {"full": "true"}}),
    );
    assert_eq!(r.status().as_u16(), 201);
    let run: serde_json::Value = r.json().expect("run");
    assert_eq!(run["status"], "pending");
    assert_eq!(run["version"], 1);
    let run_id = run["id"].as_str().expect("id").to_string();

    // Dave may execute on Windows devices only, Alice not at all: 403 and an audit record.
    for (token, who) in [(&dave, "dave"), (&alice, "alice")] {
        let r = ctl.post_json(
            "/v1/runs",
            Some(token),
            &json!({"device": "host-1", "script": "ps"}),
        );
        assert_eq!(r.status().as_u16(), 403, "{who}");
        let refused = audit_records(&setup.audit_log(), "run.refused");
        assert!(refused.iter().any(|r| r["actors"][0] == who), "{refused:?}");
    }
    // Unknown token, device, script; parameters of the wrong type.
    assert_eq!(
        ctl.post_json(
            "/v1/runs",
            Some("qvm_nope"),
            &json!({"device": "host-1", "script": "ps"})
        )
        .status()
        .as_u16(),
        401
    );
    assert_eq!(
        ctl.post_json(
            "/v1/runs",
            Some(&bob),
            &json!({"device": "nope", "script": "ps"})
        )
        .status()
        .as_u16(),
        404
    );
    assert_eq!(
        ctl.post_json(
            "/v1/runs",
            Some(&bob),
            &json!({"device": "host-1", "script": "nope"})
        )
        .status()
        .as_u16(),
        404
    );
    let r = ctl.post_json(
        "/v1/runs",
        Some(&bob),
        &json!({"device": "host-1", "script": "ps", "params": {"full": "yes"}}),
    );
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().expect("body").contains("full"));

    // The agent's long poll hands the run over once.
    let poll: serde_json::Value = ctl
        .get_auth("/v1/agents/host-1/poll?after=1&wait=5s", &agent)
        .json()
        .expect("poll");
    assert_eq!(poll["runs"][0]["run_id"], run_id.as_str());
    assert_eq!(poll["runs"][0]["params"]["full"], "true");
    assert_eq!(poll["runs"][0]["requested_by"], "bob");
    // A poll waits until a run arrives (and no longer).
    let waiting = {
        let (url, agent) = (ctl.url.clone(), agent.clone());
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let v: serde_json::Value = client()
                .get(format!("{url}/v1/agents/host-1/poll?after=1&wait=20s"))
                .bearer_auth(agent)
                .send()
                .expect("poll")
                .json()
                .expect("json");
            (v, start.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let r = ctl.post_json(
        "/v1/runs",
        Some(&bob),
        &json!({"device": "host-1", "script": "ps"}),
    );
    assert_eq!(r.status().as_u16(), 201);
    let (v, took) = waiting.join().expect("poller");
    assert_eq!(v["runs"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(
        took < Duration::from_secs(5),
        "woken by the run, not the timeout: {took:?}"
    );

    // The result, from the device's own token only.
    let result = json!({"exit_code": 0, "duration_ms": 12, "timed_out": false,
        "stdout_tail": "PID CMD\n1 init\n", "stderr_tail": "", "truncated": false,
        "output_sha256": "ab".repeat(32), "output_bytes": 16, "error": null});
    let other = enroll(&ctl, &enroll_token, "host-2", "linux");
    assert_eq!(
        ctl.post_json(&format!("/v1/runs/{run_id}/result"), Some(&other), &result)
            .status()
            .as_u16(),
        401
    );
    let r = ctl.post_json(&format!("/v1/runs/{run_id}/result"), Some(&agent), &result);
    assert_eq!(r.status().as_u16(), 200);
    let done: serde_json::Value = ctl
        .get_auth(&format!("/v1/runs/{run_id}"), &bob)
        .json()
        .expect("run");
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["result"]["stdout_tail"], "PID CMD\n1 init\n");
    assert_eq!(audit_records(&setup.audit_log(), "run.finished").len(), 1);
    // Carol (audit) sees every run; Alice (neither execute nor audit) none.
    let all: serde_json::Value = ctl
        .get_auth("/v1/runs?device=host-1", &carol)
        .json()
        .expect("runs");
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    assert_eq!(ctl.get_auth("/v1/runs", &alice).status().as_u16(), 403);
    // The CLI shows the same.
    let out = quiver(&[
        "runs", "list", "--server", &ctl.url, "--token", &carol, "--json",
    ]);
    assert!(out.status.success(), "{out:?}");

    // `quiver run` end to end: request, then the agent reports, then --wait returns.
    let cli = {
        let (url, bob) = (ctl.url.clone(), bob.clone());
        std::thread::spawn(move || {
            quiver(&[
                "run",
                "--server",
                &url,
                "--token",
                &bob,
                "--device",
                "host-1",
                "ps",
                "--param",
                "full=false",
                "--wait",
            ])
        })
    };
    let poll: serde_json::Value = ctl
        .get_auth("/v1/agents/host-1/poll?after=1&wait=20s", &agent)
        .json()
        .expect("poll");
    let cli_run = poll["runs"][0]["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    let mut failed = result.clone();
    failed["exit_code"] = json!(3);
    failed["stdout_tail"] = json!("boom\n");
    assert_eq!(
        ctl.post_json(&format!("/v1/runs/{cli_run}/result"), Some(&agent), &failed)
            .status()
            .as_u16(),
        200
    );
    let out = cli.join().expect("cli");
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code mirrors the failure: {out:?}"
    );
    assert!(
        stdout(&out).contains("exit code 3") && stdout(&out).contains("boom"),
        "{}",
        stdout(&out)
    );

    // Revocation: the agent's token stops working at once, and status shows it.
    let out = quiver(&[
        "agents",
        "revoke",
        "--config",
        &setup.config_str(),
        "host-1",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(checkin(&ctl, "host-1", &agent, 1), 401);
    assert_eq!(
        ctl.get_auth("/v1/agents/host-1/poll?after=0", &agent)
            .status()
            .as_u16(),
        401
    );
    let status = ctl.status(&carol);
    let h1 = status["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["id"] == "host-1")
        .expect("host-1")
        .clone();
    assert_eq!(h1["revoked"], true);
    assert_eq!(h1["sync_state"], "revoked");
    assert_eq!(audit_records(&setup.audit_log(), "agent.revoked").len(), 1);
    let out = quiver(&["agents", "list", "--config", &setup.config_str(), "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    // Runs for a revoked device are refused.
    assert_eq!(
        ctl.post_json(
            "/v1/runs",
            Some(&bob),
            &json!({"device": "host-1", "script": "ps"})
        )
        .status()
        .as_u16(),
        409
    );
    // An operator who revoked it may enroll a new machine under the same id (docs/agent.md):
    // it starts from scratch, and the revoked credential stays refused.
    let r = ctl.post_json(
        "/v1/enroll",
        None,
        &json!({"token": enroll_token, "device_id": "host-1", "platform": "linux"}),
    );
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(checkin(&ctl, "host-1", &agent, 1), 401);
    let out = quiver(&["audit", "verify", setup.audit_log().to_str().expect("utf8")]);
    assert!(out.status.success(), "{out:?}");
}
