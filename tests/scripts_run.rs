//! The example library's scripts really run and really produce what their manifests say.
//!
//! For every folder under `example-library/` this test
//! - checks the `script.toml` manifest's shape with `toml::Value` (the typed parser lives in
//!   quiver-core; this is an independent guard on the example data): known fields only,
//!   `name` equal to the folder, `platforms` equal to the `[entry.*]` keys, every entry file
//!   present, parameter types and defaults consistent;
//! - checks every entry file's basics: shebang, LF line endings and `set -u` for shell
//!   scripts, `bash -n` / `zsh -n` where the interpreter is installed, ASCII-only and the
//!   strict-mode preamble for PowerShell;
//! - runs every script that has a Linux entry with its manifest interpreter, in a fresh
//!   empty working directory, with the default parameters passed the way the agent passes
//!   them (`--name value`, declared order), plus fixtures where a parameter is required or
//!   where the data may legitimately be absent on a bare host (a home folder with a shell
//!   history, a browser profile and an authorized_keys file; a folder for the timeline;
//!   this test's own pid for open-files). Each run must finish within 60 s, exit 0, print
//!   well-formed output in the format the description names (CSV with a header and rows of
//!   the same width, or JSON lines), find the fixture data, and leave the working
//!   directory empty;
//! - runs every Linux script once with an unknown parameter and expects a non-zero exit.
//!
//! Scripts run in parallel threads; all failures are collected and reported together.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A public ed25519 key (32 bytes 0x01..0x20) and the fingerprint `ssh-keygen -l` prints.
const FIXTURE_KEY_BLOB: &str =
    "AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g";
const FIXTURE_KEY_FINGERPRINT: &str = "SHA256:mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4";

fn library_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .join("example-library")
}

// ---------------------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Csv,
    JsonLines,
}

#[derive(Debug, Clone)]
struct Param {
    name: String,
    default: Option<String>,
    required: bool,
}

#[derive(Debug, Clone)]
struct Script {
    dir: PathBuf,
    name: String,
    format: Format,
    /// platform -> (file, interpreter)
    entries: BTreeMap<String, (String, String)>,
    params: Vec<Param>,
}

const TOP_LEVEL: &[&str] = &[
    "name",
    "description",
    "platforms",
    "risk",
    "tags",
    "timeout",
    "output_limit",
    "entry",
    "parameter",
];
const PLATFORMS: &[&str] = &["windows", "linux", "macos"];
const INTERPRETERS: &[&str] = &[
    "powershell",
    "pwsh",
    "bash",
    "sh",
    "zsh",
    "python3",
    "executable",
];
const PARAM_FIELDS: &[&str] = &[
    "name",
    "type",
    "required",
    "default",
    "description",
    "values",
];
const PARAM_TYPES: &[&str] = &["string", "int", "bool", "enum", "path"];

fn is_script_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn is_param_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// "30s", "5m", "1h 30m", "10min" - the humantime forms the library uses.
fn is_duration(s: &str) -> bool {
    let parts: Vec<&str> = s.split_whitespace().collect();
    !parts.is_empty()
        && parts.iter().all(|p| {
            let digits = p.chars().take_while(|c| c.is_ascii_digit()).count();
            let unit = &p[digits..];
            digits > 0
                && [
                    "s", "sec", "secs", "m", "min", "mins", "h", "hr", "hrs", "hour", "hours",
                ]
                .contains(&unit)
        })
}

/// "16 MiB", "512KiB", "1 GiB" or a plain integer of bytes.
fn is_size(v: &toml::Value) -> bool {
    match v {
        toml::Value::Integer(n) => *n > 0,
        toml::Value::String(s) => {
            let s = s.trim();
            let digits = s.chars().take_while(|c| c.is_ascii_digit()).count();
            let unit = s[digits..].trim();
            digits > 0 && ["", "B", "KiB", "MiB", "GiB"].contains(&unit)
        }
        _ => false,
    }
}

fn str_field<'a>(t: &'a toml::Table, key: &str, errs: &mut Vec<String>) -> Option<&'a str> {
    match t.get(key) {
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(s),
        Some(_) => {
            errs.push(format!("`{key}` must be a non-empty string"));
            None
        }
        None => {
            errs.push(format!("`{key}` is missing"));
            None
        }
    }
}

/// Parse and check one manifest; returns the script or the list of problems.
fn load_manifest(dir: &Path) -> Result<Script, Vec<String>> {
    let folder = dir.file_name().unwrap().to_string_lossy().to_string();
    let path = dir.join("script.toml");
    let text = fs::read_to_string(&path).map_err(|e| vec![format!("cannot read: {e}")])?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| vec![format!("not TOML: {e}")])?;
    let t = &table;
    let mut errs = Vec::new();

    for k in t.keys() {
        if !TOP_LEVEL.contains(&k.as_str()) {
            errs.push(format!("unknown field `{k}`"));
        }
    }
    let name = str_field(t, "name", &mut errs)
        .unwrap_or_default()
        .to_string();
    if !is_script_name(&name) {
        errs.push(format!(
            "name `{name}` has characters outside letters, digits, - _ ."
        ));
    }
    if name != folder {
        errs.push(format!("name `{name}` differs from the folder `{folder}`"));
    }
    let description = str_field(t, "description", &mut errs).unwrap_or_default();
    let format = if description.contains("JSON lines") {
        Format::JsonLines
    } else if description.contains("CSV") {
        Format::Csv
    } else {
        errs.push("description must say the output format (CSV or JSON lines)".into());
        Format::Csv
    };

    let risk = str_field(t, "risk", &mut errs).unwrap_or_default();
    if !["low", "high"].contains(&risk) {
        errs.push(format!("risk `{risk}` is not low or high"));
    }
    if name == "shell-history" && risk != "high" {
        errs.push("shell-history exposes typed secrets and must be risk = \"high\"".into());
    }
    match t.get("tags") {
        None => {}
        Some(toml::Value::Array(a))
            if a.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty())) => {}
        Some(_) => errs.push("tags must be an array of non-empty strings".into()),
    }
    match t.get("timeout") {
        None => {}
        Some(toml::Value::String(s)) if is_duration(s) => {}
        Some(v) => errs.push(format!("timeout {v} is not a duration like \"5m\"")),
    }
    if let Some(v) = t.get("output_limit")
        && !is_size(v)
    {
        errs.push(format!("output_limit {v} is not a size like \"16 MiB\""));
    }

    // platforms == entry keys, each entry a file next to the manifest
    let mut platforms = BTreeSet::new();
    match t.get("platforms") {
        Some(toml::Value::Array(a)) if !a.is_empty() => {
            for p in a {
                match p.as_str() {
                    Some(p) if PLATFORMS.contains(&p) => {
                        if !platforms.insert(p.to_string()) {
                            errs.push(format!("platform `{p}` listed twice"));
                        }
                    }
                    _ => errs.push(format!("unknown platform {p}")),
                }
            }
        }
        _ => errs.push("platforms must be a non-empty array".into()),
    }
    let mut entries = BTreeMap::new();
    match t.get("entry") {
        Some(toml::Value::Table(e)) => {
            for (platform, entry) in e {
                let Some(entry) = entry.as_table() else {
                    errs.push(format!("entry.{platform} is not a table"));
                    continue;
                };
                for k in entry.keys() {
                    if k != "file" && k != "interpreter" {
                        errs.push(format!("entry.{platform}: unknown field `{k}`"));
                    }
                }
                let file = entry
                    .get("file")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                let interpreter = entry
                    .get("interpreter")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                if file.is_empty() || file.contains("..") || file.starts_with('/') {
                    errs.push(format!(
                        "entry.{platform}: file `{file}` must be a plain relative name"
                    ));
                } else if !dir.join(file).is_file() {
                    errs.push(format!("entry.{platform}: file `{file}` does not exist"));
                }
                if !INTERPRETERS.contains(&interpreter) {
                    errs.push(format!(
                        "entry.{platform}: unknown interpreter `{interpreter}`"
                    ));
                }
                entries.insert(
                    platform.clone(),
                    (file.to_string(), interpreter.to_string()),
                );
            }
        }
        _ => errs.push("[entry.*] tables are missing".into()),
    }
    let entry_keys: BTreeSet<String> = entries.keys().cloned().collect();
    if entry_keys != platforms {
        errs.push(format!(
            "platforms {platforms:?} differ from the entry keys {entry_keys:?}"
        ));
    }

    let mut params = Vec::new();
    let mut seen = BTreeSet::new();
    match t.get("parameter") {
        None => {}
        Some(toml::Value::Array(a)) => {
            for p in a {
                let Some(p) = p.as_table() else {
                    errs.push("[[parameter]] is not a table".into());
                    continue;
                };
                let mut perrs = Vec::new();
                for k in p.keys() {
                    if !PARAM_FIELDS.contains(&k.as_str()) {
                        perrs.push(format!("unknown field `{k}`"));
                    }
                }
                let pname = str_field(p, "name", &mut perrs)
                    .unwrap_or_default()
                    .to_string();
                if !is_param_name(&pname) {
                    perrs.push("name must match [A-Za-z][A-Za-z0-9_]*".into());
                }
                if !seen.insert(pname.clone()) {
                    perrs.push("declared twice".into());
                }
                let ptype = str_field(p, "type", &mut perrs)
                    .unwrap_or_default()
                    .to_string();
                if !PARAM_TYPES.contains(&ptype.as_str()) {
                    perrs.push(format!("unknown type `{ptype}`"));
                }
                str_field(p, "description", &mut perrs);
                let required = match p.get("required") {
                    Some(toml::Value::Boolean(b)) => *b,
                    None => false,
                    Some(_) => {
                        perrs.push("required must be a boolean".into());
                        false
                    }
                };
                let values: Option<Vec<String>> = match p.get("values") {
                    None => None,
                    Some(toml::Value::Array(a)) => Some(
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect(),
                    ),
                    Some(_) => {
                        perrs.push("values must be an array of strings".into());
                        None
                    }
                };
                if (ptype == "enum") != values.is_some() {
                    perrs.push(
                        "values is required for, and only allowed with, type = \"enum\"".into(),
                    );
                }
                let default = match p.get("default") {
                    None => None,
                    Some(toml::Value::String(s)) => {
                        let ok = match ptype.as_str() {
                            "int" => s.parse::<i64>().is_ok(),
                            "bool" => s == "true" || s == "false",
                            "enum" => values.as_ref().is_some_and(|v| v.contains(s)),
                            _ => true,
                        };
                        if !ok {
                            perrs.push(format!("default `{s}` is not a valid {ptype}"));
                        }
                        Some(s.clone())
                    }
                    Some(v) => {
                        perrs.push(format!("default {v} must be a string"));
                        None
                    }
                };
                errs.extend(
                    perrs
                        .into_iter()
                        .map(|e| format!("parameter `{pname}`: {e}")),
                );
                params.push(Param {
                    name: pname,
                    default,
                    required,
                });
            }
        }
        Some(_) => errs.push("parameter must be an array of tables ([[parameter]])".into()),
    }

    if errs.is_empty() {
        Ok(Script {
            dir: dir.to_path_buf(),
            name,
            format,
            entries,
            params,
        })
    } else {
        Err(errs)
    }
}

fn all_scripts() -> Vec<Script> {
    let lib = library_dir();
    let mut dirs: Vec<PathBuf> = fs::read_dir(&lib)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", lib.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut scripts = Vec::new();
    let mut problems = Vec::new();
    for dir in dirs {
        if !dir.join("script.toml").is_file() {
            problems.push(format!("{}: folder without script.toml", dir.display()));
            continue;
        }
        match load_manifest(&dir) {
            Ok(s) => scripts.push(s),
            Err(errs) => {
                for e in errs {
                    problems.push(format!("{}/script.toml: {e}", dir.display()));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "manifest problems:\n{}",
        problems.join("\n")
    );
    scripts
}

// ---------------------------------------------------------------------------------------
// Output formats
// ---------------------------------------------------------------------------------------

/// RFC 4180 records: quoted fields may hold commas, doubled quotes and newlines.
fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                    if !matches!(chars.peek(), None | Some(',') | Some('\n') | Some('\r')) {
                        return Err(format!(
                            "record {}: text after a closing quote",
                            records.len() + 1
                        ));
                    }
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                in_quotes = true;
                at_field_start = false;
            }
            '"' => {
                return Err(format!(
                    "record {}: stray quote inside an unquoted field",
                    records.len() + 1
                ));
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                at_field_start = true;
            }
            _ => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if in_quotes {
        return Err("unterminated quoted field at end of output".into());
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

/// Checks the output; returns the data rows (CSV) or objects (JSON lines) as strings for
/// content checks, or a description of what is wrong.
fn check_output(
    format: Format,
    stdout: &str,
    require_rows: bool,
) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    match format {
        Format::Csv => {
            let records = parse_csv(stdout)?;
            let Some(header) = records.first() else {
                return Err("empty output: no CSV header".into());
            };
            if header.iter().any(|h| h.is_empty()) {
                return Err(format!("CSV header has an empty column name: {header:?}"));
            }
            let unique: BTreeSet<&String> = header.iter().collect();
            if unique.len() != header.len() {
                return Err(format!("CSV header repeats a column: {header:?}"));
            }
            for (i, r) in records.iter().enumerate().skip(1) {
                if r.len() != header.len() {
                    return Err(format!(
                        "CSV record {} has {} fields, the header has {}: {r:?}",
                        i + 1,
                        r.len(),
                        header.len()
                    ));
                }
            }
            if require_rows && records.len() < 2 {
                return Err("CSV has a header but no rows".into());
            }
            Ok((header.clone(), records[1..].to_vec()))
        }
        Format::JsonLines => {
            let mut objects = Vec::new();
            for (i, line) in stdout.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(line)
                    .map_err(|e| format!("line {} is not JSON ({e}): {line}", i + 1))?;
                if !v.is_object() {
                    return Err(format!("line {} is JSON but not an object: {line}", i + 1));
                }
                objects.push(vec![line.to_string()]);
            }
            if require_rows && objects.is_empty() {
                return Err("no JSON lines".into());
            }
            Ok((Vec::new(), objects))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------

struct RunOutput {
    status: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs `interpreter file args...` in `cwd` with a hard timeout; stdout and stderr are
/// drained on threads so a chatty script cannot block on a full pipe.
fn run(
    interpreter: &str,
    file: &Path,
    args: &[String],
    cwd: &Path,
    env: &[(&str, &Path)],
) -> Result<RunOutput, String> {
    let mut cmd = Command::new(interpreter);
    cmd.arg(file)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {interpreter}: {e}"))?;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > RUN_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {RUN_TIMEOUT:?}"));
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("wait failed: {e}")),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(RunOutput {
        status: status.code(),
        // Paths and history lines may carry bytes that are not UTF-8; the format checks
        // are about structure, so decode lossily.
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        elapsed: start.elapsed(),
    })
}

/// Fixture data shared by all runs.
struct Fixtures {
    _root: tempfile::TempDir,
    home: PathBuf,
    timeline: PathBuf,
    tmp: PathBuf,
}

fn write(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn fixtures() -> Fixtures {
    let root = tempfile::tempdir().expect("temp dir");
    let home = root.path().join("home");
    write(
        &home.join(".bash_history"),
        "#1700000000\necho fixture-history-marker\nls -la /tmp\n",
    );
    write(
        &home.join(".zsh_history"),
        ": 1700000001:0;echo zsh-fixture\n",
    );
    let ext = home
        .join(".config/google-chrome/Default/Extensions/abcdefghijklmnopabcdefghijklmnop/1.2.3_0");
    write(
        &ext.join("manifest.json"),
        r#"{
  "manifest_version": 3,
  "name": "__MSG_extName__",
  "default_locale": "en",
  "version": "1.2.3",
  "permissions": ["storage", "tabs"],
  "host_permissions": ["<all_urls>"]
}
"#,
    );
    write(
        &ext.join("_locales/en/messages.json"),
        r#"{"extName": {"message": "Fixture Extension, \"quoted\""}}"#,
    );
    write(
        &home.join(".mozilla/firefox/abcd.default/extensions.json"),
        r#"{"schemaVersion":35,"addons":[{"id":"fixture@example.org","version":"4.5","type":"extension","defaultLocale":{"name":"Fixture Fox"},"active":true,"installDate":1700000000000,"path":"/nowhere/fixture.xpi","userPermissions":{"permissions":["dns"],"origins":["<all_urls>"]}}]}"#,
    );
    write(
        &home.join(".ssh/authorized_keys"),
        &format!(
            "# fixture\nssh-ed25519 {FIXTURE_KEY_BLOB} fixture@example\ncommand=\"echo hi there\",no-pty ssh-ed25519 {FIXTURE_KEY_BLOB} forced\n"
        ),
    );

    let timeline = root.path().join("timeline");
    write(&timeline.join("a.txt"), "alpha\n");
    write(&timeline.join("sub dir/b,comma.txt"), "beta\n");
    write(&timeline.join("sub dir/deeper/c.bin"), "gamma\n");

    // temp-executables looks at $TMPDIR first: give it a fresh executable script there.
    let tmp = root.path().join("tmp");
    write(&tmp.join("dropper.sh"), "#!/bin/sh\necho fixture\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp.join("dropper.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    }
    Fixtures {
        _root: root,
        home,
        timeline,
        tmp,
    }
}

/// Parameter values the test supplies instead of (or in the absence of) defaults.
fn fixture_value(script: &str, param: &str, fx: &Fixtures) -> Option<String> {
    match (script, param) {
        ("file-timeline", "path") => Some(fx.timeline.display().to_string()),
        ("open-files", "pid") => Some(std::process::id().to_string()),
        (_, "user_home") => Some(fx.home.display().to_string()),
        _ => None,
    }
}

/// What each fixture-backed run must find in its output.
fn expected_content(script: &str, fx: &Fixtures) -> Vec<String> {
    match script {
        "file-timeline" => vec![
            "b,comma.txt".into(),
            "c.bin".into(),
            fx.timeline.display().to_string(),
        ],
        "shell-history" => vec![
            "echo fixture-history-marker".into(),
            "2023-11-14T22:13:20Z".into(),
            "zsh-fixture".into(),
        ],
        "browser-extensions" => vec![
            "Fixture Extension, \"quoted\"".into(),
            "abcdefghijklmnopabcdefghijklmnop".into(),
            "Fixture Fox".into(),
        ],
        "ssh-authorized-keys" => vec![
            FIXTURE_KEY_FINGERPRINT.into(),
            "command=\"echo hi there\",no-pty".into(),
        ],
        "temp-executables" => vec![fx.tmp.join("dropper.sh").display().to_string()],
        _ => Vec::new(),
    }
}

/// Arguments as the agent builds them: declared order, `--name value`, only parameters
/// that were given or have a default.
fn build_args(script: &Script, fx: Option<&Fixtures>) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    for p in &script.params {
        let value = fx
            .and_then(|fx| fixture_value(&script.name, &p.name, fx))
            .or_else(|| p.default.clone());
        match value {
            Some(v) => {
                args.push(format!("--{}", p.name));
                args.push(v);
            }
            None if p.required => {
                return Err(format!(
                    "no fixture value for required parameter `{}`",
                    p.name
                ));
            }
            None => {}
        }
    }
    Ok(args)
}

fn check_run(script: &Script, fx: &Fixtures, with_fixtures: bool) -> Result<(), String> {
    let (file, interpreter) = &script.entries["linux"];
    let path = script.dir.join(file);
    let args = build_args(script, with_fixtures.then_some(fx))?;
    let cwd = tempfile::tempdir().map_err(|e| e.to_string())?;
    let env: Vec<(&str, &Path)> = if script.name == "temp-executables" {
        vec![("TMPDIR", fx.tmp.as_path())]
    } else {
        vec![]
    };
    let out = run(interpreter, &path, &args, cwd.path(), &env)?;
    let ctx = |msg: String| {
        format!(
            "{msg}\n  args: {args:?}\n  elapsed: {:?}\n  stderr: {}\n  stdout (first 1500 bytes): {}",
            out.elapsed,
            out.stderr.trim(),
            out.stdout.chars().take(1500).collect::<String>()
        )
    };
    if out.status != Some(0) {
        return Err(ctx(format!("exit status {:?}, expected 0", out.status)));
    }
    // A script whose data may be absent on a bare host (no browsers, no history, no keys)
    // may print only its header when run without the fixture home.
    let may_be_empty = !with_fixtures;
    if out.stdout.trim().is_empty() && !(may_be_empty && script.format == Format::JsonLines) {
        return Err(ctx("stdout is empty".into()));
    }
    let (header, rows) = check_output(script.format, &out.stdout, !may_be_empty).map_err(ctx)?;
    if script.name == "file-timeline" {
        for col in ["path", "size", "mtime", "ctime", "atime", "mode", "owner"] {
            if !header.iter().any(|h| h == col) {
                return Err(ctx(format!(
                    "file-timeline header lacks `{col}`: {header:?}"
                )));
            }
        }
    }
    if script.name == "triage-bundle" {
        let sections: BTreeSet<String> = rows
            .iter()
            .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r[0]).ok())
            .filter_map(|v| v.get("section").and_then(|s| s.as_str()).map(String::from))
            .collect();
        if rows.iter().any(|r| !r[0].contains("\"section\":")) {
            return Err(ctx("every triage-bundle line needs a section field".into()));
        }
        for s in ["host", "process"] {
            if !sections.contains(s) {
                return Err(ctx(format!(
                    "triage-bundle has no `{s}` section (got {sections:?})"
                )));
            }
        }
    }
    if with_fixtures {
        let haystack: String = match script.format {
            Format::Csv => rows
                .iter()
                .map(|r| r.join("\u{1f}"))
                .collect::<Vec<_>>()
                .join("\n"),
            Format::JsonLines => rows
                .iter()
                .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r[0]).ok())
                .map(|v| v.to_string() + &flatten_strings(&v))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        for needle in expected_content(&script.name, fx) {
            if !haystack.contains(&needle) {
                return Err(ctx(format!(
                    "output does not contain the fixture data `{needle}`"
                )));
            }
        }
    }
    let leftovers: Vec<_> = fs::read_dir(cwd.path())
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    if !leftovers.is_empty() {
        return Err(ctx(format!(
            "the script wrote into its working directory: {leftovers:?}"
        )));
    }
    Ok(())
}

/// All string values of a JSON document, unescaped, so content checks can match text
/// exactly as the user typed it.
fn flatten_strings(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("\u{1f}{s}"),
        serde_json::Value::Array(a) => a.iter().map(flatten_strings).collect(),
        serde_json::Value::Object(o) => o.values().map(flatten_strings).collect(),
        _ => String::new(),
    }
}

fn check_bad_parameter(script: &Script) -> Result<(), String> {
    let (file, interpreter) = &script.entries["linux"];
    let cwd = tempfile::tempdir().map_err(|e| e.to_string())?;
    let args = vec!["--no_such_parameter".to_string(), "1".to_string()];
    let out = run(interpreter, &script.dir.join(file), &args, cwd.path(), &[])?;
    match out.status {
        Some(0) => Err(format!(
            "an unknown parameter was accepted (exit 0); stdout: {}",
            out.stdout.trim()
        )),
        Some(_) if out.stderr.trim().is_empty() => {
            Err("an unknown parameter was refused without a message on stderr".into())
        }
        Some(_) => Ok(()),
        None => Err("killed by a signal on an unknown parameter".into()),
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn every_manifest_has_the_documented_shape() {
    let scripts = all_scripts();
    assert!(
        scripts.len() >= 13,
        "the example library should hold at least 13 scripts, found {}",
        scripts.len()
    );
    for required in [
        "process-list",
        "network-connections",
        "persistence",
        "user-logons",
        "installed-software",
        "dns-cache",
        "shell-history",
        "browser-extensions",
        "file-timeline",
        "triage-bundle",
    ] {
        assert!(
            scripts.iter().any(|s| s.name == required),
            "the example library lacks `{required}`"
        );
    }
    let timeline = scripts.iter().find(|s| s.name == "file-timeline").unwrap();
    let shape: Vec<(&str, Option<&str>, bool)> = timeline
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.default.as_deref(), p.required))
        .collect();
    assert_eq!(
        shape,
        vec![
            ("path", None, true),
            ("max_depth", Some("3"), false),
            ("hash", Some("false"), false)
        ],
        "file-timeline parameters"
    );
}

#[test]
fn every_entry_file_passes_basic_hygiene() {
    let have = |tool: &str| {
        Command::new(tool)
            .arg("-c")
            .arg("exit 0")
            .status()
            .is_ok_and(|s| s.success())
    };
    let (have_bash, have_zsh) = (have("bash"), have("zsh"));
    if !have_zsh {
        eprintln!("zsh is not installed: macOS entries are not syntax-checked");
    }
    let mut problems = Vec::new();
    for script in all_scripts() {
        for (platform, (file, interpreter)) in &script.entries {
            let path = script.dir.join(file);
            let bytes = fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            let at = format!("{}/{file} ({platform})", script.name);
            match interpreter.as_str() {
                "bash" | "sh" | "zsh" => {
                    let expected = if interpreter == "zsh" {
                        "#!/bin/zsh\n"
                    } else {
                        "#!/usr/bin/env bash\n"
                    };
                    if interpreter != "sh" && !text.starts_with(expected) {
                        problems.push(format!("{at}: must start with `{}`", expected.trim()));
                    }
                    if bytes.contains(&b'\r') {
                        problems.push(format!(
                            "{at}: CR found; shell scripts need LF line endings"
                        ));
                    }
                    if !text.lines().any(|l| l.trim() == "set -u") {
                        problems.push(format!("{at}: no `set -u`"));
                    }
                    if text.lines().any(|l| l.trim_start().starts_with("set -e")) {
                        problems.push(format!("{at}: `set -e` aborts on the first missing source"));
                    }
                    if text
                        .lines()
                        .any(|l| !l.trim_start().starts_with('#') && l.contains("eval "))
                    {
                        problems.push(format!("{at}: eval is not allowed in a collector"));
                    }
                    let checker = if interpreter == "zsh" {
                        have_zsh.then_some("zsh")
                    } else {
                        have_bash.then_some("bash")
                    };
                    if let Some(checker) = checker {
                        let out = Command::new(checker).arg("-n").arg(&path).output().unwrap();
                        if !out.status.success() {
                            problems.push(format!(
                                "{at}: `{checker} -n` failed: {}",
                                String::from_utf8_lossy(&out.stderr)
                            ));
                        }
                    }
                }
                "powershell" | "pwsh" => {
                    let has_bom = bytes.starts_with(&[0xEF, 0xBB, 0xBF]);
                    if !has_bom && !bytes.is_ascii() {
                        problems.push(format!(
                            "{at}: non-ASCII bytes without a UTF-8 BOM break Windows PowerShell 5.1"
                        ));
                    }
                    for needle in [
                        "[CmdletBinding()]",
                        "Set-StrictMode -Version 2",
                        "$ErrorActionPreference = 'Continue'",
                    ] {
                        if !text.contains(needle) {
                            problems.push(format!("{at}: missing `{needle}`"));
                        }
                    }
                    for (bad, why) in [
                        ("Invoke-Expression", "evaluates strings"),
                        ("DownloadString", "downloads code"),
                        ("Invoke-WebRequest", "uses the network"),
                        ("EncodedCommand", "hides code"),
                        ("Set-MpPreference", "changes Defender"),
                        (" && ", "is PowerShell 7 only"),
                        (" ?? ", "is PowerShell 7 only"),
                    ] {
                        if text.contains(bad) {
                            problems.push(format!("{at}: `{}` {why}", bad.trim()));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "entry file problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_linux_script_runs_and_prints_well_formed_output() {
    let scripts: Vec<Script> = all_scripts()
        .into_iter()
        .filter(|s| s.entries.contains_key("linux"))
        .collect();
    assert!(!scripts.is_empty(), "no script has a linux entry");
    let fx = fixtures();
    let fx = &fx;
    let failures: Vec<String> = thread::scope(|scope| {
        let handles: Vec<_> = scripts
            .iter()
            .map(|script| {
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    if let Err(e) = check_run(script, fx, true) {
                        failures.push(format!("{} (defaults + fixtures): {e}", script.name));
                    }
                    // Scripts with a user_home fixture also run over the real accounts.
                    if script.params.iter().any(|p| p.name == "user_home")
                        && let Err(e) = check_run(script, fx, false)
                    {
                        failures.push(format!("{} (defaults only): {e}", script.name));
                    }
                    if let Err(e) = check_bad_parameter(script) {
                        failures.push(format!("{} (unknown parameter): {e}", script.name));
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("script check thread panicked"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} problem(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn csv_reader_used_by_these_tests_handles_quoting() {
    let rows = parse_csv("a,b,c\n\"x,1\",\"say \"\"hi\"\"\",\"two\nlines\"\n,,\n").unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1], vec!["x,1", "say \"hi\"", "two\nlines"]);
    assert_eq!(rows[2], vec!["", "", ""]);
    assert!(parse_csv("a\n\"open\n").is_err());
    assert!(check_output(Format::Csv, "a,b\n1\n", true).is_err());
    assert!(check_output(Format::Csv, "a,b\n", true).is_err());
    assert!(check_output(Format::JsonLines, "{\"a\":1}\nnot json\n", true).is_err());
}
