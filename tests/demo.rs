//! End-to-end: `quiver demo --json` runs the whole flow (repository, controller process,
//! three agents, a remote run, a refused run, audit verify) in a temp dir, and the summary
//! and the endpoint caches on disk say what a new team should see.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Script name → platforms, read from the example library's manifests.
fn example_platforms() -> BTreeMap<String, BTreeSet<String>> {
    let root = quiver_tests::workspace_root().join("example-library");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&root).expect("example-library") {
        let dir = entry.expect("entry").path();
        let Ok(text) = std::fs::read_to_string(dir.join("script.toml")) else {
            continue;
        };
        let manifest: toml::Value = toml::from_str(&text).expect("manifest parses");
        let name = manifest["name"].as_str().expect("name").to_string();
        let platforms = manifest["platforms"]
            .as_array()
            .expect("platforms")
            .iter()
            .map(|p| p.as_str().expect("platform").to_string())
            .collect();
        out.insert(name, platforms);
    }
    out
}

fn current_dir(cache: &Path) -> std::path::PathBuf {
    let pointer: Value =
        serde_json::from_slice(&std::fs::read(cache.join("current.json")).expect("current.json"))
            .expect("pointer json");
    cache.join(pointer["dir"].as_str().expect("dir"))
}

#[test]
fn demo_runs_the_whole_flow() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    let out = Command::new(quiver_tests::bin("quiver"))
        .current_dir(quiver_tests::workspace_root())
        .args(["demo", "--json", "--dir"])
        .arg(&dir)
        .output()
        .expect("run quiver demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary is JSON");

    // The documented shape.
    for key in ["repo", "api", "scripts", "endpoints", "runs", "audit"] {
        assert!(summary.get(key).is_some(), "summary lacks {key}: {summary}");
    }
    let scripts = summary["scripts"].as_array().expect("scripts");
    let state_of = |name: &str| {
        scripts
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };

    // Every endpoint synced to the same serial.
    let endpoints = summary["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 3);
    let serials: BTreeSet<u64> = endpoints
        .iter()
        .map(|e| e["serial"].as_u64().expect("serial"))
        .collect();
    assert_eq!(
        serials.len(),
        1,
        "endpoints at different serials: {endpoints:?}"
    );

    // Each endpoint holds exactly the example scripts for its platform, as the summary says
    // and as its cache on disk holds them.
    let platforms = example_platforms();
    for e in endpoints {
        let platform = e["platform"].as_str().expect("platform");
        let expected: BTreeSet<String> = platforms
            .iter()
            .filter(|(_, p)| p.contains(platform))
            .map(|(n, _)| n.clone())
            .collect();
        let listed: BTreeSet<String> = e["scripts"]
            .as_array()
            .expect("scripts")
            .iter()
            .map(|s| s["name"].as_str().expect("name").to_string())
            .collect();
        assert_eq!(listed, expected, "{} lists the wrong scripts", e["name"]);
        let cache = dir
            .join("endpoints")
            .join(e["name"].as_str().expect("name"));
        let on_disk: BTreeSet<String> = std::fs::read_dir(current_dir(&cache))
            .expect("snapshot dir")
            .map(|d| d.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert_eq!(on_disk, expected, "{} caches the wrong scripts", e["name"]);
    }

    // The drifted script stays at its approved version everywhere, byte for byte.
    let drifted = summary["story"]["drifted"]
        .as_str()
        .expect("drifted script");
    assert_eq!(state_of(drifted)["state"], "drifted");
    let approved = state_of(drifted)["version"]
        .as_u64()
        .expect("drifted script keeps a version");
    let approved_bytes = std::fs::read(
        quiver_tests::workspace_root()
            .join("example-library")
            .join(drifted)
            .join(format!("{drifted}.sh")),
    )
    .expect("approved bytes");
    let head_bytes = std::fs::read(
        dir.join("repo/library")
            .join(drifted)
            .join(format!("{drifted}.sh")),
    )
    .expect("head");
    assert_ne!(
        approved_bytes, head_bytes,
        "the direct push changed the file at head"
    );
    for e in endpoints {
        let v = e["scripts"]
            .as_array()
            .expect("scripts")
            .iter()
            .find(|s| s["name"] == drifted)
            .map(|s| s["version"].clone());
        assert_eq!(
            v,
            Some(Value::from(approved)),
            "{} has another version of {drifted}",
            e["name"]
        );
    }
    // On every endpoint that stages it, each cached file of the drifted script is the git
    // blob of its approved version's commit, not the bytes pushed since.
    let approved_commit = state_of(drifted)["commit"]
        .as_str()
        .expect("the drifted script names its approved commit")
        .to_string();
    let mut compared = 0;
    for e in endpoints {
        let cache = dir
            .join("endpoints")
            .join(e["name"].as_str().expect("name"));
        let script_dir = current_dir(&cache).join(drifted);
        let Ok(files) = std::fs::read_dir(&script_dir) else {
            continue;
        };
        for f in files {
            let f = f.expect("entry");
            let rel = f.file_name().to_string_lossy().into_owned();
            let blob = Command::new("git")
                .current_dir(dir.join("repo"))
                .args([
                    "cat-file",
                    "blob",
                    &format!("{approved_commit}:library/{drifted}/{rel}"),
                ])
                .output()
                .expect("git cat-file");
            assert!(blob.status.success(), "{rel} not in {approved_commit}");
            assert_eq!(
                std::fs::read(f.path()).expect("cached"),
                blob.stdout,
                "{} caches {drifted}/{rel} as the approved version's blob",
                e["name"]
            );
            compared += 1;
        }
    }
    assert!(compared > 0, "no endpoint caches {drifted}");
    let cached = std::fs::read(
        current_dir(&dir.join("endpoints/linux-01"))
            .join(drifted)
            .join(format!("{drifted}.sh")),
    )
    .expect("cached");
    assert_eq!(
        cached, approved_bytes,
        "the cache holds the approved bytes, not the pushed ones"
    );

    // The refused new script is on no endpoint.
    let refused = summary["story"]["refused"]
        .as_str()
        .expect("refused script");
    assert_eq!(state_of(refused)["state"], "refused");
    assert!(
        state_of(refused)["reason"]
            .as_str()
            .unwrap_or("")
            .contains("download-exec.shell")
    );
    for e in endpoints {
        assert!(
            !e["scripts"]
                .as_array()
                .expect("scripts")
                .iter()
                .any(|s| s["name"] == refused)
        );
        let cache = dir
            .join("endpoints")
            .join(e["name"].as_str().expect("name"));
        assert!(!current_dir(&cache).join(refused).exists());
    }

    // The remote run succeeded with output; the auditor's run was refused.
    let runs = summary["runs"].as_array().expect("runs");
    assert_eq!(runs[0]["status"], "succeeded", "{runs:?}");
    assert_eq!(runs[0]["exit_code"], 0);
    assert!(
        !runs[0]["output_head"]
            .as_array()
            .expect("output")
            .is_empty()
    );
    assert_eq!(runs[1]["status"], "refused", "{runs:?}");
    for r in runs {
        assert_eq!(r["endpoint"], "linux-01", "{r}");
        let script = r["script"].as_str().expect("run names its script");
        assert!(
            platforms.get(script).is_some_and(|p| p.contains("linux")),
            "the run's script {script} is a linux script of the example library"
        );
    }

    // The audit log verifies, and `quiver audit verify` agrees.
    assert_eq!(summary["audit"]["verified"], true);
    assert!(summary["audit"]["records"].as_u64().expect("records") > 10);
    let verify = Command::new(quiver_tests::bin("quiver"))
        .args(["audit", "verify"])
        .arg(summary["audit"]["path"].as_str().expect("path"))
        .output()
        .expect("audit verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // A second demo into the same folder replaces the first, and prints for people what
    // the first printed as JSON: the table of scripts × endpoints, the reasons, the runs
    // and the audit verification.
    let human = Command::new(quiver_tests::bin("quiver"))
        .current_dir(quiver_tests::workspace_root())
        .args(["demo", "--dir"])
        .arg(&dir)
        .output()
        .expect("run quiver demo");
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.status.success(),
        "second demo failed: {}",
        String::from_utf8_lossy(&human.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| {
            l.split_whitespace()
                .take(3)
                .eq(["script", "state", "approved"])
        })
        .unwrap_or_else(|| panic!("no scripts × endpoints table in:\n{text}"));
    let columns: Vec<&str> = lines[header].split_whitespace().skip(3).collect();
    let names: Vec<&str> = endpoints
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    assert_eq!(columns, names, "one column per endpoint");
    for sc in scripts {
        let name = sc["name"].as_str().expect("name");
        let row = lines[header + 1..]
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name} in:\n{text}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells.len(), 3 + names.len(), "{row}");
        assert_eq!(cells[1], sc["state"].as_str().expect("state"), "{row}");
    }
    for name in [drifted, refused] {
        assert!(
            lines.iter().any(|l| l.trim_start().starts_with(name)
                && l.contains(state_of(name)["state"].as_str().expect("state"))
                && l.contains(state_of(name)["reason"].as_str().expect("reason"))),
            "{name} and its reason are not listed in:\n{text}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Audit log:") && l.ends_with("verify: OK")),
        "no audit verification line in:\n{text}"
    );

    // A foreign folder is refused and left as it was.
    let foreign = tmp.path().join("mine");
    std::fs::create_dir_all(&foreign).expect("mkdir");
    std::fs::write(foreign.join("notes.txt"), "keep me").expect("write");
    let refused_dir = Command::new(quiver_tests::bin("quiver"))
        .current_dir(quiver_tests::workspace_root())
        .args(["demo", "--dir"])
        .arg(&foreign)
        .output()
        .expect("run demo");
    assert!(!refused_dir.status.success());
    assert!(String::from_utf8_lossy(&refused_dir.stderr).contains("not an earlier demo"));
    assert_eq!(
        std::fs::read_to_string(foreign.join("notes.txt")).expect("kept"),
        "keep me"
    );
}
