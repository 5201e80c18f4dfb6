//! Running cached scripts through the real binary: arguments never pass through a shell,
//! timeouts kill the whole process tree, output is capped with a digest of all of it, and
//! every run is reported to the controller.

mod common;

use common::*;
use quiver_catalog::*;
use serde_json::Value;

fn device_with(scripts: &[Script]) -> (Publisher, Device) {
    let p = Publisher::new();
    p.publish(1, scripts);
    let dev = enrolled(&p, &[]);
    dev.sync_ok();
    (p, dev)
}

fn run_json(dev: &Device, args: &[&str]) -> (i32, Value) {
    let mut a = vec!["run", "--json"];
    a.extend_from_slice(args);
    let out = dev.run(&a);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v)
}

fn marker() -> String {
    format!(
        "{}{:06}",
        std::process::id(),
        rand::random::<u32>() % 1_000_000
    )
}

#[test]
fn shell_metacharacters_reach_the_script_as_one_literal_argument() {
    let pwned = std::env::temp_dir().join(format!("pwned-{}", marker()));
    let pwned = pwned.display().to_string();
    let mut s = script(
        "echo-args",
        3,
        "printf 'arg:%s\\n' \"$@\"\nprintf 'env:%s:%s:%s\\n' \"$QUIVER_SCRIPT\" \"$QUIVER_VERSION\" \"$HOME\"\n",
    );
    s.parameters = vec![
        param("Note", ParamType::String),
        param("Force", ParamType::Bool),
    ];
    let (p, dev) = device_with(&[s]);
    let value = format!("'; touch {pwned} #\" $(touch {pwned}) `touch {pwned}` | && ;");
    let (code, v) = run_json(
        &dev,
        &[
            "echo-args",
            "--param",
            &format!("Note={value}"),
            "--param",
            "Force=true",
        ],
    );
    assert_eq!(code, 0, "{v}");
    let out = v["result"]["stdout_tail"].as_str().unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "arg:--Note",
            &format!("arg:{value}"),
            "arg:--Force",
            "arg:true"
        ]
    );
    assert!(lines[4].starts_with("env:echo-args:3:"), "{out}");
    assert!(
        !std::path::Path::new(&pwned).exists(),
        "a shell interpreted the value"
    );
    // HOME is the run's private temp dir, deleted afterwards.
    let home = lines[4].rsplit(':').next().unwrap();
    assert!(home.contains("quiver-run-"), "{home}");
    assert!(
        !std::path::Path::new(home).exists(),
        "the run's temp dir is removed"
    );

    // The run was reported to the controller as a local run.
    let rep = p.server.wait_for(std::time::Duration::from_secs(2), |r| {
        r.path == format!("/v1/agents/{DEVICE}/runs")
    });
    let body = rep.json();
    assert_eq!(body["script"], "echo-args");
    assert_eq!(body["version"], 3);
    assert_eq!(body["params"]["Note"], value);
    assert!(body["requested_by"].as_str().unwrap().starts_with("local:"));
    assert_eq!(body["result"]["exit_code"], 0);
}

#[test]
fn bad_parameters_and_unknown_scripts_are_refused() {
    let mut s = script("typed", 1, "exit 0\n");
    s.parameters = vec![param("Days", ParamType::Int)];
    let (_p, dev) = device_with(&[s]);
    let out = dev.run(&["run", "typed", "--param", "Days=1; rm -rf /"]);
    assert_eq!(out.status.code(), Some(2));
    let out = dev.run(&["run", "typed", "--param", "Nope=1"]);
    assert_eq!(out.status.code(), Some(2));
    let out = dev.run(&["run", "missing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the current snapshot"));
    let (code, _) = run_json(&dev, &["typed", "--param", "Days=3"]);
    assert_eq!(code, 0);
}

#[test]
fn exit_codes_pass_through() {
    let (_p, dev) = device_with(&[script("fails", 1, "echo oops >&2\nexit 7\n")]);
    let (code, v) = run_json(&dev, &["fails"]);
    assert_eq!(code, 7);
    assert_eq!(v["result"]["exit_code"], 7);
    assert_eq!(v["result"]["stderr_tail"], "oops\n");

    // A relative state directory works too (scripts run in their own working directory).
    let out = dev
        .cmd(&["run", "fails"])
        .current_dir(dev.dir.path())
        .env("QUIVER_AGENT_STATE_DIR", "state")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(target_os = "linux")]
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(marker)
        {
            found.push(format!(
                "{}: {}",
                e.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            ));
        }
    }
    found
}

#[cfg(target_os = "linux")]
#[test]
fn timeout_kills_the_whole_process_tree() {
    let m = marker();
    // A background grandchild and a foreground child, both long sleepers with a marker.
    let body = format!("sleep 1000.{m} &\nbash -c 'sleep 1000.{m}; echo never'\necho never\n");
    let mut s = script("hang", 1, &body);
    s.timeout_secs = 1;
    let (_p, dev) = device_with(&[s]);
    let started = std::time::Instant::now();
    let (code, v) = run_json(&dev, &["hang"]);
    assert_eq!(code, 124, "{v}");
    assert_eq!(v["result"]["timed_out"], true);
    assert_eq!(v["result"]["exit_code"], Value::Null);
    assert_eq!(
        v["result"]["error"],
        Value::Null,
        "a timeout is an outcome, not an error"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        !v["result"]["stdout_tail"]
            .as_str()
            .unwrap()
            .contains("never")
    );
    let left = processes_with(&format!("1000.{m}"));
    assert!(left.is_empty(), "processes survived the timeout: {left:?}");
}

#[test]
fn output_over_the_limit_is_truncated_with_a_digest_of_all_of_it() {
    let mut s = script(
        "chatty",
        1,
        "for i in $(seq 1 3000); do echo \"line $i\"; done\n",
    );
    s.output_limit = 1000;
    let (_p, dev) = device_with(&[s]);
    let (code, v) = run_json(&dev, &["chatty"]);
    assert_eq!(code, 0, "{v}");
    let full: String = (1..=3000).map(|i| format!("line {i}\n")).collect();
    let r = &v["result"];
    assert_eq!(r["truncated"], true);
    assert_eq!(r["output_bytes"], full.len());
    assert_eq!(r["output_sha256"], sha256_hex(full.as_bytes()).to_string());
    assert_eq!(
        r["stdout_tail"].as_str().unwrap(),
        &full[full.len() - 1000..]
    );
}
