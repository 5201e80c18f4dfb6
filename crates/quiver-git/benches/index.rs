//! Version index benchmark: cold index of a generated repository against
//! `git log --first-parent --raw -M` on the same repository, an update for one new merge,
//! and an update with nothing new.
//!
//! ```text
//! cargo bench -p quiver-git --bench index                      # 20,000 commits × 2,000 scripts
//! QUIVER_BENCH_COMMITS=2000 QUIVER_BENCH_SCRIPTS=200 cargo bench -p quiver-git --bench index
//! QUIVER_BENCH_DIR=/tmp/qb cargo bench -p quiver-git --bench index   # keep/reuse the repo
//! ```

#[path = "../../../tests/repogen.rs"]
mod repogen;

use quiver_git::{Index, IndexConfig, Repo};
use repogen::{ALICE, BOB, GenSpec, TestRepo};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        last = Some(v);
    }
    (best, last.expect("at least one run"))
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let commits = env_usize("QUIVER_BENCH_COMMITS", 20_000);
    let scripts = env_usize("QUIVER_BENCH_SCRIPTS", 2_000);
    let runs = env_usize("QUIVER_BENCH_RUNS", 3);
    let (dir, _tmp) = match std::env::var("QUIVER_BENCH_DIR") {
        Ok(d) => (PathBuf::from(d), None),
        Err(_) => {
            let t = std::env::temp_dir().join(format!("quiver-bench-{}", std::process::id()));
            (t.clone(), Some(TempDir(t)))
        }
    };
    let spec = GenSpec {
        scripts,
        commits,
        direct_every: 10,
        rename_every: 500,
        utf16_every: 7,
        seed: 7,
    };
    if !dir.join(".git").exists() {
        let t = Instant::now();
        let stats = repogen::generate(&dir, &spec);
        eprintln!(
            "generated {} ({commits} first-parent commits: {} merges, {} direct, {} moves; {scripts} scripts) in {:.1?}",
            dir.display(),
            stats.merges,
            stats.direct,
            stats.renames,
            t.elapsed()
        );
        let mut gc = Command::new("git");
        gc.current_dir(&dir).args(["gc", "-q", "--aggressive"]);
        let _ = gc.status();
    }
    if std::env::var("QUIVER_BENCH_ONLY").as_deref() == Ok("cold") {
        let t = Instant::now();
        let repo = Repo::open(&dir).expect("open");
        let mut index = Index::new(IndexConfig::default());
        index.update(&repo).expect("index");
        println!("cold index: {:.2?}", t.elapsed());
        return;
    }
    let (git_log, _) = best(runs, || {
        let status = Command::new("git")
            .current_dir(&dir)
            .args(["log", "--first-parent", "--raw", "-M", "main"])
            .stdout(Stdio::null())
            .status()
            .expect("git log");
        assert!(status.success());
    });
    let (cold, index) = best(runs, || {
        let repo = Repo::open(&dir).expect("open");
        let mut index = Index::new(IndexConfig::default());
        index.update(&repo).expect("index");
        index
    });
    let versions: usize = index.scripts.values().map(|r| r.versions.len()).sum();
    let json = index.to_json();
    // Nothing new: a persisted index loaded once, then updated repeatedly.
    let repo = Repo::open(&dir).expect("open");
    let mut loaded = Index::from_json(&json).expect("load");
    loaded.update(&repo).expect("first update");
    let n = 1000;
    let t = Instant::now();
    for _ in 0..n {
        loaded.update(&repo).expect("noop update");
    }
    let noop = t.elapsed() / n;
    let (load, _) = best(runs, || Index::from_json(&json).expect("load"));
    // One new merge.
    let test_repo = TestRepo { dir: dir.clone() };
    test_repo.git(&["checkout", "-q", "-f", "main"]);
    let branch = format!("bench-{}", std::process::id());
    test_repo.pr(
        &branch,
        ALICE,
        |r| {
            r.write(
                "library/s00000/s00000.sh",
                format!("#!/bin/bash\necho {branch}\n"),
            );
        },
        ALICE,
        &[BOB],
    );
    let mut fresh = Index::from_json(&json).expect("load");
    let t = Instant::now();
    let report = fresh.update(&repo).expect("incremental update");
    let one_merge = t.elapsed();
    assert_eq!(report.commits, 1);
    // The approved state: first call on a loaded index (reads every deployed manifest),
    // then what a controller pays per reconcile when nothing was committed (update +
    // approved state, average of 1,000), then after one more merge (update + rebuild
    // with the other manifests cached).
    let mut state_index = Index::from_json(&json).expect("load");
    state_index.update(&repo).expect("update");
    let t = Instant::now();
    let state = state_index.approved_state(&repo).expect("approved state");
    let first_state = t.elapsed();
    let t = Instant::now();
    for _ in 0..n {
        state_index.update(&repo).expect("noop update");
        let again = state_index.approved_state(&repo).expect("approved state");
        assert_eq!(again.scripts.len(), state.scripts.len());
    }
    let status_noop = t.elapsed() / n;
    let branch2 = format!("bench2-{}", std::process::id());
    test_repo.pr(
        &branch2,
        ALICE,
        |r| {
            r.write(
                "library/s00001/s00001.sh",
                format!("#!/bin/bash\necho {branch2}\n"),
            );
        },
        ALICE,
        &[BOB],
    );
    let t = Instant::now();
    let report = state_index
        .update(&repo)
        .expect("update for the second merge");
    let after = state_index.approved_state(&repo).expect("approved state");
    let merge_state = t.elapsed();
    assert_eq!(report.commits, 1);
    assert!(
        !Arc::ptr_eq(&after, &state),
        "a new commit rebuilds the state"
    );

    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| repository | {commits} first-parent commits, {scripts} scripts ({} versions indexed) |",
        versions
    );
    println!(
        "| `git log --first-parent --raw -M main` | {:.2?} |",
        git_log
    );
    println!(
        "| cold index (`Index::update` from empty) | {:.2?} ({:.2}× git log) |",
        cold,
        cold.as_secs_f64() / git_log.as_secs_f64()
    );
    println!(
        "| index JSON size | {:.1} MiB |",
        json.len() as f64 / 1048576.0
    );
    println!(
        "| load persisted index (`Index::from_json`) | {:.2?} |",
        load
    );
    println!("| update with nothing new | {:.2?} |", noop);
    println!("| update for one new merge | {:.2?} |", one_merge);
    println!(
        "| `approved_state`, first call on a loaded index | {:.2?} ({} scripts) |",
        first_state,
        state.scripts.len()
    );
    println!(
        "| status when nothing changed (`update` + `approved_state`) | {:.2?} |",
        status_noop
    );
    println!(
        "| one new merge: `update` + `approved_state` | {:.2?} |",
        merge_state
    );
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
