//! The version index against real repositories: incremental equals cold, the tree diff
//! agrees with git, the controller's view (approved state, blobs), rewrites, signatures
//! and pinned root approvers.

#[path = "../../../tests/repogen.rs"]
mod repogen;

use quiver_git::{Index, IndexConfig, Repo, State, TrustAnchor, detect_rewrite, diff_trees};
use repogen::{ALICE, BOB, CAROL, GenSpec, MEMBERS_TOML, TestRepo, generate};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn config(branch: &str) -> IndexConfig {
    IndexConfig {
        branch: branch.into(),
        ..Default::default()
    }
}

fn small_spec() -> GenSpec {
    GenSpec {
        scripts: 40,
        commits: 240,
        direct_every: 7,
        rename_every: 23,
        utf16_every: 5,
        seed: 3,
    }
}

#[test]
fn incremental_updates_equal_a_cold_index() {
    let tmp = tempfile::tempdir().expect("tmp");
    generate(tmp.path(), &small_spec());
    let repo = Repo::open(tmp.path()).expect("open");
    let mut cold = Index::new(config("main"));
    cold.update(&repo).expect("cold");
    // Index the same history in steps: a branch at 1/3, then 2/3, then main, persisting
    // and reloading the index between steps.
    let git = TestRepo {
        dir: tmp.path().to_path_buf(),
    };
    git.git(&["branch", "-f", "step", "main~160"]);
    let mut warm = Index::new(config("step"));
    warm.update(&repo).expect("first third");
    for target in ["main~80", "main"] {
        git.git(&["branch", "-f", "step", target]);
        let mut loaded = Index::from_json(&warm.to_json()).expect("reload");
        let report = loaded
            .update(&Repo::open(tmp.path()).expect("open"))
            .expect("step");
        assert!(report.commits > 0);
        warm = loaded;
    }
    assert_eq!(warm.last_commit, cold.last_commit);
    let a = serde_json::to_value(&warm.scripts).expect("json");
    let b = serde_json::to_value(&cold.scripts).expect("json");
    assert!(a == b, "incremental and cold indexes differ");
    assert_eq!(warm.policy, cold.policy);
    // The generated history has versions, drift and moves.
    let versions: usize = cold.scripts.values().map(|r| r.versions.len()).sum();
    assert!(versions > 100, "{versions}");
    assert!(cold.scripts.values().any(|r| r.state() == State::Drifted));
    assert!(cold.scripts.values().any(|r| !r.renamed_from.is_empty()));
}

fn git_out(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("git");
    assert!(out.status.success(), "{args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tree_diff_agrees_with_git() {
    let tmp = tempfile::tempdir().expect("tmp");
    generate(tmp.path(), &small_spec());
    let repo = Repo::open(tmp.path()).expect("open");
    let commits = git_out(tmp.path(), &["rev-list", "--first-parent", "main"]);
    let mut renames = 0;
    for c in commits.lines().take(120) {
        let c = repo.resolve_commit(c).expect("commit");
        let commit = repo.git().find_commit(c).expect("commit");
        let Ok(p) = commit.parent_id(0) else { continue };
        let lib = |oid: git2::Oid| {
            repo.subtree(repo.git().find_commit(oid).expect("c").tree_id(), "library")
                .expect("lookup")
        };
        let ours = diff_trees(&repo, lib(p), lib(c)).expect("diff");
        // Without rename pairing, every change is a path added, deleted or modified.
        let mut mine = BTreeSet::new();
        for ch in &ours {
            match ch.status {
                'R' => {
                    renames += 1;
                    mine.insert(format!(
                        "D library/{}",
                        ch.old_path.as_deref().expect("old")
                    ));
                    mine.insert(format!(
                        "A library/{}",
                        ch.new_path.as_deref().expect("new")
                    ));
                }
                s => {
                    mine.insert(format!(
                        "{s} library/{}",
                        ch.new_path
                            .as_deref()
                            .or(ch.old_path.as_deref())
                            .expect("path")
                    ));
                }
            }
        }
        let theirs: BTreeSet<String> = git_out(
            tmp.path(),
            &[
                "diff-tree",
                "-r",
                "--no-renames",
                "--name-status",
                &p.to_string(),
                &c.to_string(),
                "--",
                "library",
            ],
        )
        .lines()
        .map(|l| l.replacen('\t', " ", 1))
        .collect();
        assert_eq!(mine, theirs, "commit {c}");
    }
    assert!(renames > 0, "the history has folder moves");
}

#[test]
fn approved_state_gives_manifests_and_exact_blobs() {
    let tmp = tempfile::tempdir().expect("tmp");
    generate(tmp.path(), &small_spec());
    let repo = Repo::open(tmp.path()).expect("open");
    let mut index = Index::new(config("main"));
    index.update(&repo).expect("index");
    let state = index.approved_state(&repo).expect("state");
    assert_eq!(state.policy_trust, "first-commit");
    assert_eq!(state.scripts.len(), 40);
    for s in &state.scripts {
        assert_eq!(s.manifest.name, s.name);
        for f in &s.version.files {
            let bytes = repo.blob(&f.blob).expect("blob");
            assert_eq!(hex::encode(Sha256::digest(&bytes)), f.sha256);
            assert_eq!(bytes.len() as u64, f.size);
        }
    }
    assert!(
        state
            .problems
            .iter()
            .all(|p| p.state != State::Approved && !p.reason.is_empty())
    );
    // Nothing new: well under 2 ms, even in a debug build.
    let t = Instant::now();
    for _ in 0..100 {
        index.update(&repo).expect("noop");
    }
    assert!(
        t.elapsed() / 100 < Duration::from_millis(2),
        "{:?}",
        t.elapsed() / 100
    );
}

#[test]
fn rewrite_is_detected_and_nothing_moves() {
    let tmp = tempfile::tempdir().expect("tmp");
    let r = TestRepo::init(tmp.path());
    r.write("policies/members.toml", MEMBERS_TOML);
    r.bash_script("ps", "ps -ef");
    r.commit(ALICE, "init");
    let v2 = r.pr(
        "v2",
        ALICE,
        |r| {
            r.bash_script("ps", "ps -e");
        },
        ALICE,
        &[BOB],
    );
    let repo = Repo::open(tmp.path()).expect("open");
    let mut index = Index::new(config("main"));
    index.update(&repo).expect("index");
    assert!(detect_rewrite(&repo, "main", &v2).is_ok());
    r.git(&["reset", "-q", "--hard", "HEAD~1"]);
    r.direct(
        CAROL,
        |r| {
            r.bash_script("ps", "ps aux");
        },
        "other",
    );
    match detect_rewrite(&repo, "main", &v2) {
        Err(quiver_git::Error::Rewrite(rw)) => {
            assert_eq!(rw.last, v2);
            assert_eq!(rw.head, r.head());
        }
        other => panic!("{other:?}"),
    }
    let before = serde_json::to_value(&index.scripts).expect("json");
    assert!(matches!(
        index.update(&repo),
        Err(quiver_git::Error::Rewrite(_))
    ));
    assert_eq!(serde_json::to_value(&index.scripts).expect("json"), before);
    assert_eq!(index.last_commit.as_deref(), Some(v2.as_str()));
}

#[test]
fn root_approvers_bootstrap_the_policy() {
    let tmp = tempfile::tempdir().expect("tmp");
    let r = TestRepo::init(tmp.path());
    r.write("README.md", "library\n");
    r.commit(ALICE, "init");
    // A direct push before any approved state: nothing is approved.
    r.direct(
        CAROL,
        |r| {
            r.bash_script("early", "true");
        },
        "direct",
    );
    // The bootstrap PR, approved by the pinned root approver.
    let boot = r.pr(
        "bootstrap",
        ALICE,
        |r| {
            r.write("policies/members.toml", MEMBERS_TOML);
            r.bash_script("ps", "ps -ef");
        },
        ALICE,
        &[BOB],
    );
    let repo = Repo::open(tmp.path()).expect("open");
    let mut index = Index::new(IndexConfig {
        trust: TrustAnchor::RootApprovers(vec!["bob@example.org".into()]),
        ..Default::default()
    });
    index.update(&repo).expect("index");
    assert_eq!(index.policy.trust, "root-approvers");
    assert_eq!(index.policy.commit.as_deref(), Some(boot.as_str()));
    let ps = index.script("ps").expect("ps");
    assert_eq!((ps.deployed, ps.state()), (Some(1), State::Approved));
    assert_eq!(ps.versions[0].approvers, ["bob@example.org"]);
    let early = index.script("early").expect("early");
    assert_eq!((early.deployed, early.state()), (None, State::Drifted));
    // From now on the library's own policy applies (one lead approval, not self).
    r.pr(
        "v2",
        ALICE,
        |r| {
            r.bash_script("ps", "ps -e");
        },
        ALICE,
        &[CAROL],
    );
    index.update(&repo).expect("update");
    assert_eq!(index.script("ps").expect("ps").deployed, Some(2));
}

fn ssh_keygen(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("pub");
    (key.display().to_string(), public.trim().to_string())
}

#[test]
fn signed_merges_are_verified_against_member_keys() {
    if Command::new("ssh-keygen").arg("-?").output().is_err() {
        eprintln!("ssh-keygen not installed; skipping");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let keys = tmp.path().join("keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    let (bob_key, bob_pub) = ssh_keygen(&keys, "bob");
    let (eve_key, _) = ssh_keygen(&keys, "eve");
    let r = TestRepo::init(&tmp.path().join("repo"));
    let members = MEMBERS_TOML.replace(
        "id = \"bob\"\nemails = [\"bob@example.org\"]",
        &format!("id = \"bob\"\nemails = [\"bob@example.org\"]\nsigning_keys = [\"{bob_pub}\"]"),
    );
    r.write("policies/members.toml", members);
    r.write(
        "policies/approvals.toml",
        "[[approval]]\nrequire_signature = true\n",
    );
    r.bash_script("ps", "ps -ef");
    r.commit(ALICE, "init");
    let signed_merge = |branch: &str, key: &str, body: &'static str| {
        r.git(&["checkout", "-q", "-b", branch, "main"]);
        r.bash_script("ps", body);
        r.commit(ALICE, branch);
        r.git(&["checkout", "-q", "main"]);
        r.git(&[
            "-c",
            "gpg.format=ssh",
            "-c",
            &format!("user.signingkey={key}"),
            "merge",
            "-q",
            "--no-ff",
            "-S",
            branch,
            "-m",
            "Merge\n\nApproved-by: Bob <bob@example.org>\n",
        ]);
    };
    let repo = Repo::open(&r.dir).expect("open");
    let mut index = Index::new(config("main"));
    // Signed by bob's key: approved.
    signed_merge("good", &bob_key, "ps -e");
    index.update(&repo).expect("index");
    assert_eq!(index.script("ps").expect("ps").deployed, Some(2));
    // Signed by a key of no member: not approved.
    signed_merge("eve", &eve_key, "ps aux");
    index.update(&repo).expect("index");
    let ps = index.script("ps").expect("ps");
    assert_eq!(ps.state(), State::Drifted);
    assert!(
        ps.reason()
            .expect("reason")
            .contains("belongs to no member"),
        "{:?}",
        ps.reason()
    );
    // Unsigned: not approved either (reason names it).
    r.direct(
        ALICE,
        |r| {
            r.bash_script("ps", "ps -e");
        },
        "back",
    );
    r.pr(
        "unsigned",
        ALICE,
        |r| {
            r.bash_script("ps", "ps -ef --forest");
        },
        ALICE,
        &[BOB],
    );
    index.update(&repo).expect("index");
    let ps = index.script("ps").expect("ps");
    assert_eq!(ps.state(), State::Drifted);
    assert!(
        ps.reason().expect("reason").contains("not signed"),
        "{:?}",
        ps.reason()
    );
}

#[test]
fn broken_manifest_is_refused_and_invalid_policy_keeps_the_old_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let r = TestRepo::init(tmp.path());
    r.write("policies/members.toml", MEMBERS_TOML);
    r.bash_script("ps", "ps -ef");
    r.bash_script("net", "ss -tn");
    let first = r.commit(ALICE, "init");
    // An approved change breaking one manifest: that script is refused, the other moves on.
    r.pr(
        "broken",
        ALICE,
        |r| {
            r.write(
                "library/ps/script.toml",
                "name = \"ps\"\nplatforms = [\"linux\"]\ncolour = 1\n",
            );
            r.bash_script("net", "ss -tunap");
        },
        ALICE,
        &[BOB],
    );
    // An approved policy change that does not load: the old policy stays in effect.
    let bad_policy = r.pr(
        "bad-policy",
        ALICE,
        |r| {
            r.write(
                "policies/approvals.toml",
                "[[approval]]\nmin_approvals = \"two\"\n",
            );
        },
        ALICE,
        &[BOB],
    );
    let repo = Repo::open(tmp.path()).expect("open");
    let mut index = Index::new(config("main"));
    index.update(&repo).expect("index");
    let ps = index.script("ps").expect("ps");
    assert_eq!((ps.deployed, ps.state()), (Some(1), State::Refused));
    let reason = ps.reason().expect("reason");
    assert!(
        reason.contains("manifest.invalid") && reason.contains("library/ps/script.toml:3"),
        "{reason}"
    );
    assert_eq!(index.script("net").expect("net").deployed, Some(2));
    assert_eq!(index.policy.commit.as_deref(), Some(first.as_str()));
    let err = index.policy.error.as_ref().expect("policy error");
    assert_eq!(err.commit, bad_policy);
    assert!(
        err.reason.contains("policies/approvals.toml:2"),
        "{}",
        err.reason
    );
    // A later approved fix on top of the invalid policy takes effect.
    let fix = r.pr(
        "fix-policy",
        ALICE,
        |r| {
            r.write(
                "policies/approvals.toml",
                "[[approval]]\nmin_approvals = 1\n",
            );
        },
        ALICE,
        &[BOB],
    );
    index.update(&repo).expect("update");
    assert_eq!(index.policy.commit.as_deref(), Some(fix.as_str()));
    assert!(index.policy.error.is_none());
}
