//! Merge-to-published-snapshot latency by webhook, for a large library.
//!
//! Builds a repository with `--scripts` scripts (default 2,000) with the git CLI, starts the
//! controller in-process on a loopback port (real HTTP, real git, real disk; fs notification
//! off, so only the webhook triggers), then `--merges` times (default 50): merges an
//! approved change to one script (`git merge --no-ff` with an `Approved-by:` trailer), sends
//! a signed GitHub webhook, and measures until `GET /v1/timestamp.json` serves the next
//! serial. Prints p50/p90/p99/max.
//!
//! ```text
//! cargo bench -p quiver-controller --bench publish_latency -- --scripts 2000 --merges 50
//! cargo bench -p quiver-controller --bench publish_latency -- --keep /tmp/qbench --serve
//! ```
//! `--keep DIR` builds in DIR and keeps it; with `--serve` the controller keeps running after
//! the merges (for the wrk comparison in docs/benchmarks.md) until ctrl-c.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use quiver_controller::config::Config;
use quiver_controller::controller::Controller;
use quiver_controller::gitsource::GitSource;

const POLICY: &str = r#"
[[member]]
id = "alice"
emails = ["alice@example.org"]
roles = ["author"]

[[member]]
id = "bob"
emails = ["bob@example.org"]
roles = ["approver"]

[[role]]
id = "author"
permissions = ["author"]

[[role]]
id = "approver"
permissions = ["approve"]

[[approval]]
min_approvals = 1

[[group]]
id = "linux"
platform = "linux"
scripts = ["*"]
"#;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write(p: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, bytes).expect("write");
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scripts: usize = arg(&args, "--scripts", 2000);
    let merges: usize = arg(&args, "--merges", 50);
    let serve = args.iter().any(|a| a == "--serve");
    let keep: Option<PathBuf> = args
        .iter()
        .position(|a| a == "--keep")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let _tmp;
    let root = match keep {
        Some(p) => {
            std::fs::create_dir_all(&p).expect("mkdir");
            p
        }
        None => {
            _tmp = tempfile::tempdir().expect("tmp");
            _tmp.path().to_path_buf()
        }
    };
    let repo = root.join("repo");
    let t = Instant::now();
    if !repo.join(".git").exists() {
        std::fs::create_dir_all(&repo).expect("mkdir");
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["config", "user.name", "Alice"]);
        git(&repo, &["config", "user.email", "alice@example.org"]);
        write(&repo.join("policies/members.toml"), POLICY.as_bytes());
        for i in 0..scripts {
            let name = format!("s{i:05}");
            let dir = repo.join("library").join(&name);
            write(
                &dir.join("script.toml"),
                format!(
                    "name = \"{name}\"\ndescription = \"collects thing {i}\"\nplatforms = [\"linux\"]\ntimeout = \"5m\"\n\n[entry.linux]\nfile = \"run.sh\"\ninterpreter = \"bash\"\n\n[[parameter]]\nname = \"verbose\"\ntype = \"bool\"\ndefault = \"false\"\n"
                )
                .as_bytes(),
            );
            write(
                &dir.join("run.sh"),
                format!(
                    "#!/bin/bash\n# collector {i}\nset -eu\nuname -a\nps -ef | head -n {}\n",
                    10 + i % 50
                )
                .as_bytes(),
            );
        }
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "library"]);
        eprintln!("built a {scripts}-script repository in {:?}", t.elapsed());
    }
    let first = git(&repo, &["rev-list", "--max-parents=0", "HEAD"]);
    let keys = root.join("keys");
    if !keys.join("quiver.key").exists() {
        let kp = quiver_catalog::KeyPair::generate().expect("keys");
        std::fs::create_dir_all(&keys).expect("mkdir");
        kp.write(&keys.join("quiver.key"), &keys.join("quiver.pub"))
            .expect("write keys");
    }
    std::fs::write(root.join("gh.secret"), "bench-secret").expect("secret");
    // A free port (or 8080 with --serve, for wrk).
    let addr = std::net::TcpListener::bind(if serve {
        "127.0.0.1:8080"
    } else {
        "127.0.0.1:0"
    })
    .and_then(|l| l.local_addr())
    .expect("bind");
    let config_text = format!(
        "[repository]\npath = \"{}\"\n[trust]\ncommit = \"{first}\"\n[signing]\nsecret_key = \"keys/quiver.key\"\n[server]\nlisten = \"{addr}\"\n[watch]\npoll_interval = \"1h\"\nfs_notify = false\n[webhooks]\ngithub_secret_file = \"gh.secret\"\n",
        repo.display()
    );
    std::fs::write(root.join("quiver.toml"), config_text).expect("config");
    let config = Config::load(&root.join("quiver.toml")).expect("config");
    let source = GitSource::new(&config);
    let controller = Controller::open(config, Box::new(source)).expect("open");
    let t = Instant::now();
    let first_report = controller.reconcile_blocking();
    eprintln!(
        "first reconcile ({scripts} scripts, whole history): {:?} -> {} serial {:?}",
        t.elapsed(),
        first_report.outcome,
        first_report.serial
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt.spawn(quiver_controller::serve::run(controller.clone(), async {
        let _ = tokio::signal::ctrl_c().await;
    }));
    let url = format!("http://{addr}");
    let client = reqwest::blocking::Client::new();
    let serial = || -> Option<u64> {
        let v: serde_json::Value = client
            .get(format!("{url}/v1/timestamp.json"))
            .send()
            .ok()?
            .json()
            .ok()?;
        v["serial"].as_u64()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut current = loop {
        if let Some(s) = serial()
            && controller.shared.readiness().is_ok()
        {
            break s;
        }
        assert!(Instant::now() < deadline, "controller did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    };
    let body = br#"{"ref":"refs/heads/main"}"#;
    let sig = format!(
        "sha256={}",
        quiver_controller::webhook::sign("bench-secret", body)
    );
    let mut latencies = Vec::with_capacity(merges);
    for m in 0..merges {
        let name = format!("s{:05}", (m * 37) % scripts);
        let branch = format!("change-{m}-{}", std::process::id());
        git(&repo, &["checkout", "-q", "-b", &branch]);
        write(
            &repo.join("library").join(&name).join("run.sh"),
            format!(
                "#!/bin/bash\n# collector {name}, change {m} of run {}\nset -eu\nuname -a\n",
                std::process::id()
            )
            .as_bytes(),
        );
        git(&repo, &["commit", "-q", "-am", &format!("change {m}")]);
        git(&repo, &["checkout", "-q", "main"]);
        git(
            &repo,
            &[
                "-c",
                "user.name=Bob",
                "-c",
                "user.email=bob@example.org",
                "merge",
                "-q",
                "--no-ff",
                "-m",
                &format!("Merge {branch}\n\nApproved-by: Bob <bob@example.org>"),
                &branch,
            ],
        );
        let start = Instant::now();
        let status = client
            .post(format!("{url}/v1/webhooks/github"))
            .header("X-Hub-Signature-256", &sig)
            .body(body.to_vec())
            .send()
            .expect("webhook")
            .status();
        assert_eq!(status.as_u16(), 202);
        loop {
            if serial().is_some_and(|s| s > current) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "merge {m} not published"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        latencies.push(start.elapsed());
        current += 1;
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "merge-to-published by webhook, {scripts} scripts, {merges} merges: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms (debounce {} ms included)",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.90)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1]),
        controller.shared.config.watch.debounce.as_millis()
    );
    let catalog_len = std::fs::metadata(root.join("publish/catalog.json"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "catalog.json: {catalog_len} bytes; publish dir: {}",
        root.join("publish").display()
    );
    if serve {
        eprintln!("serving on {url}; ctrl-c to stop");
        let _ = rt.block_on(server);
    } else {
        controller.shared.shutdown.send_replace(true);
        server.abort();
    }
}
