//! End to end with the real binaries (issue 5): a library repository made with the git CLI,
//! a `quiver controller` process on 127.0.0.1 and three `quiver-agent` processes (linux,
//! windows, macos) with their own state directories.
//!
//! - Enrollment and sync: each cache holds exactly the scripts targeted at its platform, and
//!   every cached file is byte-identical to its git blob (CRLF, UTF-8 BOM and UTF-16 LE
//!   files included).
//! - Runs through the controller with `quiver-agent daemon` on the linux endpoint: an
//!   allowed run returns its output, a member without `execute` gets 403 and an audit record,
//!   a script past its timeout is killed with its whole process tree, output over the limit
//!   is truncated with the digest of all of it, a hostile string parameter arrives as one
//!   literal argument, and revoking the agent stops the daemon (exit 3) and shows in status.

#[path = "controller_support.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{Daemon, Running, Setup, TestRepo, client, files_under, quiver, stdout, wait_until};

const POLICY: &str = r#"
[[member]]
id = "lena"
emails = ["lena@corp.example"]
roles = ["lead"]

[[member]]
id = "sam"
emails = ["sam@corp.example"]
roles = ["author"]

[[member]]
id = "andy"
emails = ["andy@corp.example"]
roles = ["analyst"]

[[member]]
id = "olga"
emails = ["olga@corp.example"]
roles = ["auditor"]

[[role]]
id = "lead"
permissions = ["author", "approve", "execute", "audit"]

[[role]]
id = "author"
permissions = ["author"]

[[role]]
id = "analyst"
permissions = ["execute"]
max_risk = "low"

[[role]]
id = "auditor"
permissions = ["audit"]

[[approval]]
scripts = ["*"]
min_approvals = 1

[[approval]]
policy = true
min_approvals = 1

[[group]]
id = "linux"
platform = "linux"
labels = { os = "linux" }
scripts = ["*"]

[[group]]
id = "windows"
platform = "windows"
labels = { os = "windows" }
scripts = ["*"]

[[group]]
id = "macos"
platform = "macos"
labels = { os = "macos" }
scripts = ["*"]
"#;

/// `notes.txt` of `linux-hello`: a data file with CRLF line endings, printed by the script.
const NOTES: &[u8] = b"line one\r\nline two\r\n";

/// UTF-16 LE with a BOM.
fn utf16le(text: &str) -> Vec<u8> {
    let mut b = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        b.extend_from_slice(&u.to_le_bytes());
    }
    b
}

/// UTF-8 with a BOM.
fn utf8_bom(text: &str) -> Vec<u8> {
    let mut b = vec![0xEF, 0xBB, 0xBF];
    b.extend_from_slice(text.as_bytes());
    b
}

/// The scripts of the first (trusted) commit: (path under the repository, bytes).
fn initial_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (".gitattributes", b"* -text\n".to_vec()),
        ("policies/team.toml", POLICY.as_bytes().to_vec()),
        // Linux only: prints a CRLF data file from its own folder.
        (
            "library/linux-hello/script.toml",
            br#"name = "linux-hello"
description = "Greets and prints its notes file (text)."
platforms = ["linux"]
timeout = "30s"

[entry.linux]
file = "hello.sh"
interpreter = "bash"
"#
            .to_vec(),
        ),
        (
            "library/linux-hello/hello.sh",
            b"#!/bin/bash\nset -eu\nprintf 'hello from %s\\n' \"$QUIVER_SCRIPT\"\ncat \"$(dirname \"$0\")/notes.txt\"\n"
                .to_vec(),
        ),
        ("library/linux-hello/notes.txt", NOTES.to_vec()),
        // Linux only: echoes its one parameter's value.
        (
            "library/echo-arg/script.toml",
            br#"name = "echo-arg"
description = "Echoes its text parameter (text)."
platforms = ["linux"]
timeout = "30s"

[entry.linux]
file = "echo.sh"
interpreter = "bash"

[[parameter]]
name = "text"
type = "string"
required = true
"#
            .to_vec(),
        ),
        (
            "library/echo-arg/echo.sh",
            b"#!/bin/bash\necho \"$2\"\n".to_vec(),
        ),
        // Linux only: outlives its 2 s timeout with children carrying a marker.
        (
            "library/slow/script.toml",
            br#"name = "slow"
description = "Sleeps far past its timeout, with children (test)."
platforms = ["linux"]
timeout = "2s"

[entry.linux]
file = "slow.sh"
interpreter = "bash"

[[parameter]]
name = "tag"
type = "string"
required = true
"#
            .to_vec(),
        ),
        (
            "library/slow/slow.sh",
            b"#!/bin/bash\nmarker=\"$2\"\n(exec -a \"$marker\" sleep 300) &\nbash -c 'sleep 300; exit 0' \"$marker\" &\necho started\nwait\necho not reached\n"
                .to_vec(),
        ),
        // Linux only: prints more than its output limit.
        (
            "library/big-output/script.toml",
            br#"name = "big-output"
description = "Prints 1 to 20000 (text)."
platforms = ["linux"]
timeout = "30s"
output_limit = "4 KiB"

[entry.linux]
file = "big.sh"
interpreter = "bash"
"#
            .to_vec(),
        ),
        (
            "library/big-output/big.sh",
            b"#!/bin/bash\nseq 1 20000\n".to_vec(),
        ),
        // Linux only, high risk: analysts may not run it.
        (
            "library/wipe-tmp/script.toml",
            br#"name = "wipe-tmp"
description = "Pretends to clean up (changes the endpoint)."
platforms = ["linux"]
risk = "high"
timeout = "30s"

[entry.linux]
file = "wipe.sh"
interpreter = "bash"
"#
            .to_vec(),
        ),
        (
            "library/wipe-tmp/wipe.sh",
            b"#!/bin/bash\necho would clean up\n".to_vec(),
        ),
        // Windows only: a UTF-16 LE entry with CRLF, a UTF-8 BOM helper with CRLF and
        // non-ASCII text, a CRLF data file.
        (
            "library/win-users/script.toml",
            br#"name = "win-users"
description = "Local users (text)."
platforms = ["windows"]

[entry.windows]
file = "users.ps1"
interpreter = "powershell"
"#
            .to_vec(),
        ),
        (
            "library/win-users/users.ps1",
            utf16le("Get-LocalUser | Select-Object Name\r\nWrite-Output 'Zo\u{eb}'\r\n"),
        ),
        (
            "library/win-users/helper.ps1",
            utf8_bom("function Get-Greeting {\r\n    'gr\u{fc}\u{df} dich'\r\n}\r\n"),
        ),
        (
            "library/win-users/columns.txt",
            b"Name\r\nEnabled\r\n".to_vec(),
        ),
        // macOS only.
        (
            "library/mac-info/script.toml",
            br#"name = "mac-info"
description = "OS version (text)."
platforms = ["macos"]

[entry.macos]
file = "info.zsh"
interpreter = "zsh"
"#
            .to_vec(),
        ),
        (
            "library/mac-info/info.zsh",
            b"#!/bin/zsh\nsw_vers\n".to_vec(),
        ),
        ("library/mac-info/README.txt", b"Runs sw_vers.\n".to_vec()),
    ]
}

/// The script added by the approved merge: all three platforms.
fn merged_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "library/all-inventory/script.toml",
            br#"name = "all-inventory"
description = "Host name and uptime on every platform (text)."
platforms = ["linux", "macos", "windows"]
timeout = "1m"

[entry.linux]
file = "inventory.sh"
interpreter = "bash"

[entry.macos]
file = "inventory.zsh"
interpreter = "zsh"

[entry.windows]
file = "inventory.ps1"
interpreter = "powershell"
"#
            .to_vec(),
        ),
        (
            "library/all-inventory/inventory.sh",
            b"#!/bin/bash\nhostname\nuptime\n".to_vec(),
        ),
        (
            "library/all-inventory/inventory.zsh",
            b"#!/bin/zsh\nhostname\nuptime\n".to_vec(),
        ),
        (
            "library/all-inventory/inventory.ps1",
            utf8_bom(
                "$env:COMPUTERNAME\r\n(Get-CimInstance Win32_OperatingSystem).LastBootUpTime\r\nWrite-Output 'caf\u{e9}'\r\n",
            ),
        ),
        (
            "library/all-inventory/fields.txt",
            b"hostname\r\nuptime\r\n".to_vec(),
        ),
    ]
}

/// Which scripts each platform must cache.
fn expected_scripts(platform: &str) -> BTreeSet<String> {
    let names: &[&str] = match platform {
        "linux" => &[
            "linux-hello",
            "echo-arg",
            "slow",
            "big-output",
            "wipe-tmp",
            "all-inventory",
        ],
        "windows" => &["win-users", "all-inventory"],
        "macos" => &["mac-info", "all-inventory"],
        _ => unreachable!(),
    };
    names.iter().map(ToString::to_string).collect()
}

/// The repository: a trusted first commit, then `all-inventory` added on a branch by sam and
/// merged with `--no-ff` and an `Approved-by:` trailer from lena.
fn library_repo() -> TestRepo {
    let repo = TestRepo {
        dir: tempfile::tempdir().expect("temp dir"),
    };
    repo.git(&["init", "-q", "-b", "main"]);
    repo.git(&["config", "user.name", "Sam"]);
    repo.git(&["config", "user.email", "sam@corp.example"]);
    repo.git(&["config", "commit.gpgsign", "false"]);
    for (p, b) in initial_files() {
        repo.write(p, &b);
    }
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "initial library"]);
    repo.git(&["checkout", "-q", "-b", "all-inventory"]);
    for (p, b) in merged_files() {
        repo.write(p, &b);
    }
    repo.git(&["add", "-A"]);
    repo.git(&[
        "commit",
        "-q",
        "-m",
        "all-inventory: one script for every platform",
    ]);
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&[
        "-c",
        "user.name=Lena",
        "-c",
        "user.email=lena@corp.example",
        "merge",
        "-q",
        "--no-ff",
        "-m",
        "Merge #1 all-inventory\n\nApproved-by: Lena <lena@corp.example>",
        "all-inventory",
    ]);
    repo
}

/// `git cat-file blob HEAD:<path>`, raw bytes.
fn git_blob(repo: &TestRepo, path: &str) -> Vec<u8> {
    let out = Command::new("git")
        .current_dir(repo.path())
        .args(["cat-file", "blob", &format!("HEAD:{path}")])
        .output()
        .expect("git cat-file");
    assert!(out.status.success(), "git cat-file {path}: {out:?}");
    out.stdout
}

/// Files of a script at HEAD, relative to its folder.
fn git_script_files(repo: &TestRepo, script: &str) -> BTreeSet<String> {
    let prefix = format!("library/{script}/");
    repo.git(&["ls-tree", "-r", "--name-only", "HEAD", &prefix])
        .lines()
        .map(|l| {
            l.strip_prefix(&prefix)
                .expect("under the folder")
                .to_string()
        })
        .collect()
}

/// The snapshot directory `current.json` names.
fn current_snapshot(state: &Path) -> PathBuf {
    let pointer: Value =
        serde_json::from_slice(&std::fs::read(state.join("current.json")).expect("current.json"))
            .expect("pointer JSON");
    state.join(pointer["dir"].as_str().expect("dir"))
}

fn agent(args: &[&str]) -> Output {
    Command::new(quiver_tests::bin("quiver-agent"))
        .args(args)
        .env_remove("QUIVER_AGENT_STATE_DIR")
        .env_remove("QUIVER_ENROLL_TOKEN")
        .output()
        .expect("run quiver-agent")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `quiver run … --wait --json` as `member`: (exit status, run record or `Null`, stderr).
fn run_script(
    ctl: &Running,
    token: &str,
    device: &str,
    script: &str,
    params: &[(&str, &str)],
) -> (ExitStatus, Value, String) {
    let mut args: Vec<String> = [
        "run",
        "--server",
        &ctl.url,
        "--token",
        token,
        "--device",
        device,
        script,
        "--wait",
        "--json",
        "--timeout",
        "40s",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    for (k, v) in params {
        args.push("--param".into());
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = quiver(&args);
    let record = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status,
        record,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits (20 s at most) until the controller serves `serial`; panics with its log if not.
fn wait_for_serial(ctl: &Running, serial: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while ctl.serial() != Some(serial) {
        assert!(
            Instant::now() < deadline,
            "the controller did not publish serial {serial}; /readyz: {:?}\n{}",
            ctl.get("/readyz").text(),
            ctl.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Processes (other than this one) whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // A process may exit between read_dir and read: that is the point.
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .windows(marker.len())
            .any(|w| w == marker.as_bytes())
        {
            found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

#[test]
fn agents_sync_exactly_their_scripts_and_run_them_through_the_controller() {
    let started = Instant::now();
    let repo = library_repo();
    let head = repo.head();
    let setup = Setup::new(&repo, "");
    let ctl = setup.start();
    // One serial per approved state of the history: the trusted commit, then the merge.
    wait_for_serial(&ctl, 2);

    let lena = setup.member_token("lena");
    let andy = setup.member_token("andy");
    let olga = setup.member_token("olga");

    // Every script is approved at head; all-inventory through the reviewed merge.
    let status = ctl.status(&lena);
    assert_eq!(status["head"], head.as_str(), "{status}");
    let scripts = status["scripts"].as_array().expect("scripts");
    for s in scripts {
        assert_eq!(s["state"], "approved", "{s}");
    }
    let all_names: BTreeSet<&str> = scripts
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(all_names.len(), 8, "{all_names:?}");
    let approved = support::audit_records(&setup.audit_log(), "version.approved");
    let inventory = approved
        .iter()
        .find(|r| r["details"]["script"] == "all-inventory")
        .unwrap_or_else(|| panic!("no version.approved for all-inventory: {approved:?}"));
    assert_eq!(inventory["details"]["commit"], head.as_str());
    assert_eq!(inventory["details"]["approvers"], json!(["lena"]));

    // Enrollment: one token for three devices, each pinning the controller's key.
    let out = quiver(&[
        "token",
        "create",
        "--config",
        &setup.config_str(),
        "--enroll",
        "--uses",
        "3",
    ]);
    assert!(out.status.success(), "token create: {out:?}");
    let enroll_token = stdout(&out).trim().to_string();
    let pubkey = setup.path().join("keys/quiver.pub");
    let agents_dir = tempfile::tempdir().expect("temp dir");
    let state_of = |platform: &str| agents_dir.path().join(platform);
    for platform in ["linux", "windows", "macos"] {
        let state = state_of(platform);
        let out = agent(&[
            "enroll",
            "--server",
            &ctl.url,
            "--token",
            &enroll_token,
            "--device-id",
            &format!("{platform}-01"),
            "--platform",
            platform,
            "--label",
            &format!("os={platform}"),
            "--public-key",
            pubkey.to_str().expect("utf8"),
            "--state-dir",
            state.to_str().expect("utf8"),
            "--json",
        ]);
        assert!(out.status.success(), "enroll {platform}: {out:?}");
        let enrolled: Value = serde_json::from_slice(&out.stdout).expect("enroll JSON");
        assert_eq!(enrolled["pinned_out_of_band"], true);
        let out = agent(&[
            "sync",
            "--state-dir",
            state.to_str().expect("utf8"),
            "--json",
        ]);
        assert!(out.status.success(), "sync {platform}: {out:?}");
        let synced: Value = serde_json::from_slice(&out.stdout).expect("sync JSON");
        assert_eq!(synced["ok"], true, "{synced}");
        assert_eq!(synced["report"]["serial"], 2, "{synced}");
        assert_eq!(synced["report"]["switched"], true, "{synced}");
    }
    // The token had three uses.
    let out = agent(&[
        "enroll",
        "--server",
        &ctl.url,
        "--token",
        &enroll_token,
        "--device-id",
        "fourth",
        "--platform",
        "linux",
        "--public-key",
        pubkey.to_str().expect("utf8"),
        "--state-dir",
        agents_dir.path().join("fourth").to_str().expect("utf8"),
    ]);
    assert!(!out.status.success(), "a fourth enrollment must be refused");

    // Each cache holds exactly its platform's scripts, byte for byte as in git.
    for platform in ["linux", "windows", "macos"] {
        let snap = current_snapshot(&state_of(platform));
        let cached: BTreeSet<String> = std::fs::read_dir(&snap)
            .expect("snapshot dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".quiver")
            .collect();
        assert_eq!(cached, expected_scripts(platform), "{platform} cache");
        for script in &cached {
            let on_disk = files_under(&snap.join(script));
            let in_git = git_script_files(&repo, script);
            assert_eq!(
                on_disk.keys().cloned().collect::<BTreeSet<_>>(),
                in_git,
                "{platform}: files of {script}"
            );
            for (rel, bytes) in &on_disk {
                let blob = git_blob(&repo, &format!("library/{script}/{rel}"));
                assert!(
                    *bytes == blob,
                    "{platform}: {script}/{rel} differs from its git blob"
                );
            }
        }
    }
    // The special encodings really are there (not normalised anywhere on the way).
    let win = current_snapshot(&state_of("windows"));
    let users = std::fs::read(win.join("win-users/users.ps1")).expect("users.ps1");
    assert!(users.starts_with(&[0xFF, 0xFE]) && users.windows(4).any(|w| w == b"\r\0\n\0"));
    let helper = std::fs::read(win.join("win-users/helper.ps1")).expect("helper.ps1");
    assert!(helper.starts_with(&[0xEF, 0xBB, 0xBF]) && helper.windows(2).any(|w| w == b"\r\n"));
    let linux = current_snapshot(&state_of("linux"));
    assert_eq!(
        std::fs::read(linux.join("linux-hello/notes.txt")).expect("notes"),
        NOTES
    );
    assert_eq!(
        std::fs::read(linux.join("all-inventory/fields.txt")).expect("fields"),
        b"hostname\r\nuptime\r\n"
    );
    let endpoints = ctl.status(&lena)["endpoints"].clone();
    for e in endpoints.as_array().expect("endpoints") {
        assert_eq!(e["sync_state"], "in_sync", "{e}");
        assert_eq!(e["groups"], json!([e["platform"].clone()]), "{e}");
    }

    // Runs, with the linux agent as a daemon.
    let linux_state = state_of("linux");
    let mut daemon = Daemon::start(&linux_state, agents_dir.path().join("linux-daemon.log"));

    // The timeout run goes first, in the background: it takes its 2 s.
    let marker = format!(
        "quiver-e2e-marker-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );
    let slow = {
        let (url, lena, marker) = (ctl.url.clone(), lena.clone(), marker.clone());
        std::thread::spawn(move || {
            let args = vec![
                "run".to_string(),
                "--server".into(),
                url,
                "--token".into(),
                lena,
                "--device".into(),
                "linux-01".into(),
                "slow".into(),
                "--param".into(),
                format!("tag={marker}"),
                "--wait".into(),
                "--json".into(),
                "--timeout".into(),
                "40s".into(),
            ];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            quiver(&args)
        })
    };

    // While it runs, its children carry the marker (so the check below can see them):
    // `sleep 300` started with the marker as its argv[0].
    wait_until(
        "the slow script's children",
        Duration::from_secs(20),
        || {
            processes_with(&marker)
                .iter()
                .any(|(_, cmd)| cmd.starts_with(&format!("{marker} 300")))
                .then_some(())
        },
    );

    // An analyst runs a low-risk Linux script and gets its output.
    let (st, rec, err) = run_script(&ctl, &andy, "linux-01", "linux-hello", &[]);
    assert!(st.success(), "linux-hello: {err}\n{}", daemon.log());
    assert_eq!(rec["status"], "succeeded", "{rec}");
    assert_eq!(rec["requested_by"], "andy");
    assert_eq!(rec["result"]["exit_code"], 0);
    let expected = format!("hello from linux-hello\n{}", String::from_utf8_lossy(NOTES));
    assert_eq!(rec["result"]["stdout_tail"], expected.as_str(), "{rec}");
    assert_eq!(rec["result"]["truncated"], false);
    assert_eq!(
        rec["result"]["output_sha256"],
        sha256_hex(expected.as_bytes()).as_str()
    );

    // The auditor has no execute: 403, and an audit record naming her. The analyst may not
    // run a high-risk script: 403 too.
    let (st, _, err) = run_script(&ctl, &olga, "linux-01", "linux-hello", &[]);
    assert!(!st.success());
    assert!(err.contains("403"), "{err}");
    let r = ctl.post_json(
        "/v1/runs",
        Some(&olga),
        &json!({"device": "linux-01", "script": "linux-hello"}),
    );
    assert_eq!(r.status().as_u16(), 403);
    let (st, _, err) = run_script(&ctl, &andy, "linux-01", "wipe-tmp", &[]);
    assert!(!st.success());
    assert!(err.contains("403"), "{err}");
    let audit: Vec<Value> = ctl
        .get_auth("/v1/audit?after=0&limit=1000", &olga)
        .json()
        .expect("audit JSON");
    let refused: Vec<&Value> = audit
        .iter()
        .filter(|r| r["kind"] == "run.refused")
        .collect();
    assert!(
        refused
            .iter()
            .any(|r| r["actors"] == json!(["olga"]) && r["subject"] == "linux-hello@linux-01"),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|r| r["actors"] == json!(["andy"]) && r["subject"] == "wipe-tmp@linux-01"),
        "{refused:?}"
    );
    // Only members with audit may read it.
    assert_eq!(
        ctl.get_auth("/v1/audit?after=0", &andy).status().as_u16(),
        403
    );

    // Output over the limit: the last 4 KiB, flagged, with the digest of all of it.
    let (st, rec, err) = run_script(&ctl, &lena, "linux-01", "big-output", &[]);
    assert!(st.success(), "big-output: {err}");
    let full: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    let r = &rec["result"];
    assert_eq!(r["truncated"], true, "{rec}");
    assert_eq!(r["output_bytes"], full.len() as u64);
    assert_eq!(r["output_sha256"], sha256_hex(full.as_bytes()).as_str());
    assert_eq!(r["stdout_tail"], &full[full.len() - 4096..]);

    // A hostile string reaches the script as one literal argument; no shell parses it.
    let pwned = format!("/tmp/{marker}-pwned");
    let hostile = format!("x'; touch {pwned}; echo '");
    let (st, rec, err) = run_script(
        &ctl,
        &andy,
        "linux-01",
        "echo-arg",
        &[("text", hostile.as_str())],
    );
    assert!(st.success(), "echo-arg: {err}");
    assert_eq!(rec["params"]["text"], hostile.as_str());
    assert_eq!(
        rec["result"]["stdout_tail"],
        format!("{hostile}\n"),
        "{rec}"
    );
    assert!(!Path::new(&pwned).exists(), "{pwned} was created");

    // The timeout: reported as such, and nothing the script started is left.
    let out = slow.join().expect("slow run thread");
    let rec: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("slow: {e}: {out:?}\n{}", daemon.log()));
    assert!(!out.status.success(), "a timed-out run is not a success");
    assert_eq!(rec["status"], "timed_out", "{rec}");
    let r = &rec["result"];
    assert_eq!(r["timed_out"], true);
    assert_eq!(r["exit_code"], Value::Null, "killed, not exited: {rec}");
    assert_eq!(r["stdout_tail"], "started\n", "{rec}");
    let ms = r["duration_ms"].as_u64().expect("duration");
    assert!((2000..20_000).contains(&ms), "duration {ms} ms");
    let left = wait_until(
        "the slow script's processes to be gone",
        Duration::from_secs(5),
        || {
            let found = processes_with(&marker);
            found.is_empty().then_some(found)
        },
    );
    assert!(left.is_empty());

    // Revocation: the daemon's next request gets 401 and it exits 3; status shows it.
    let config: Value =
        serde_json::from_slice(&std::fs::read(linux_state.join("agent.json")).expect("agent.json"))
            .expect("agent JSON");
    let agent_token = config["agent_token"]
        .as_str()
        .expect("agent token")
        .to_string();
    let out = quiver(&[
        "agents",
        "revoke",
        "--config",
        &setup.config_str(),
        "linux-01",
    ]);
    assert!(out.status.success(), "revoke: {out:?}");
    let exit = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(exit.code(), Some(3), "{}", daemon.log());
    let r = client()
        .get(format!(
            "{}/v1/agents/linux-01/poll?after=0&wait=0s",
            ctl.url
        ))
        .bearer_auth(&agent_token)
        .send()
        .expect("poll");
    assert_eq!(r.status().as_u16(), 401);
    let out = agent(&["sync", "--state-dir", linux_state.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let status = ctl.status(&lena);
    let endpoint = status["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["id"] == "linux-01")
        .expect("linux-01")
        .clone();
    assert_eq!(endpoint["revoked"], true, "{endpoint}");
    assert_eq!(endpoint["sync_state"], "revoked", "{endpoint}");
    // The other endpoints are untouched.
    for e in status["endpoints"].as_array().expect("endpoints") {
        if e["id"] != "linux-01" {
            assert_eq!(e["revoked"], false, "{e}");
        }
    }

    let out = quiver(&["audit", "verify", setup.audit_log().to_str().expect("utf8")]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the test took {:?}",
        started.elapsed()
    );
}
