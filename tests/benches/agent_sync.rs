//! Endpoint sync (issue 5): the release `quiver-agent` against a release `quiver controller`
//! on 127.0.0.1, each measurement in the same run as its anchor.
//!
//! (a) Cold sync of a 2,000-script, ~50 MB catalog (a fresh state directory, enrolled
//!     beforehand) against `curl` downloading the same blobs from the same server and
//!     `sha256sum -c` checking them: one `curl -K` process fetching the URLs one after
//!     another over one keep-alive connection, and the same with `curl --parallel` (50
//!     transfers at once). Interleaved, several times each.
//! (b) Warm sync with nothing new (`quiver-agent sync` on an up-to-date cache) against
//!     what it amounts to: one conditional `curl` of `timestamp.json` (304) and `sha256sum`
//!     over the cached files (the agent re-checks its cache on every sync).
//! (c) One process holding 1,000 long polls (`GET /v1/agents/{id}/poll?after=N&wait=30s`,
//!     one per enrolled agent id, tokio + reqwest) while another client measures the latency
//!     of `GET /v1/catalog.json` with and without `If-None-Match`; the same measurement
//!     without the polls is the anchor. Controller CPU time from `/proc/<pid>/stat`.
//!
//! Run: `cargo bench -p quiver-tests --bench agent_sync` (needs `git`, `curl`, `sha256sum`;
//! Linux, for `/proc`). Environment: `AGENT_BENCH_SCRIPTS` (2000), `AGENT_BENCH_FILE_KB`
//! (25), `AGENT_BENCH_REPS` (5), `AGENT_BENCH_POLLERS` (1000), `AGENT_BENCH_WINDOW_SECS`
//! (5, per latency phase), `AGENT_BENCH_ONLY` (`cold`, `warm` or `poll`), `AGENT_BENCH_DIR`
//! (keep the generated repository, controller and caches there instead of a temp dir).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn main() {
    let scripts: usize = env_or("AGENT_BENCH_SCRIPTS", 2000);
    let file_kb: usize = env_or("AGENT_BENCH_FILE_KB", 25);
    let reps: usize = env_or("AGENT_BENCH_REPS", 5);
    let pollers: usize = env_or("AGENT_BENCH_POLLERS", 1000);
    let window = Duration::from_secs(env_or("AGENT_BENCH_WINDOW_SECS", 5));
    let only = std::env::var("AGENT_BENCH_ONLY").ok();
    let wants = |what: &str| only.as_deref().is_none_or(|o| o == what);
    // (c) must finish its measurements while the polls are still held.
    assert!(
        window * 4 + Duration::from_secs(8) < Duration::from_secs(30),
        "AGENT_BENCH_WINDOW_SECS too long for 30 s polls"
    );

    let root = quiver_tests::workspace_root();
    let bin = build_release(&root);
    let quiver = bin.join("quiver");
    let agent = bin.join("quiver-agent");

    let (_tmp, dir) = match std::env::var_os("AGENT_BENCH_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            std::fs::create_dir_all(&d).expect("mkdir AGENT_BENCH_DIR");
            (None, d)
        }
        None => {
            let t = tempfile::tempdir().expect("temp dir");
            let d = t.path().to_path_buf();
            (Some(t), d)
        }
    };
    let repo = dir.join("repo");
    if !repo.join(".git").exists() {
        let t = Instant::now();
        let bytes = generate(&repo, scripts, file_kb * 1000);
        eprintln!(
            "generated {scripts} scripts, {:.1} MB, with the git CLI in {:.1?}",
            bytes as f64 / 1e6,
            t.elapsed()
        );
    }

    // A fresh controller state every run (the repository may be reused).
    let ctl_dir = dir.join("controller");
    let _ = std::fs::remove_dir_all(&ctl_dir);
    std::fs::create_dir_all(&ctl_dir).expect("mkdir");
    run_ok(
        Command::new(&quiver)
            .args(["keygen", "--out"])
            .arg(ctl_dir.join("keys")),
    );
    let first = git(&repo, &["rev-list", "--max-parents=0", "HEAD"]);
    std::fs::write(
        ctl_dir.join("quiver.toml"),
        format!(
            "[repository]\npath = \"{}\"\n\n[trust]\ncommit = \"{first}\"\n\n[signing]\nsecret_key = \"keys/quiver.key\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n",
            repo.display()
        ),
    )
    .expect("write config");
    let config = ctl_dir.join("quiver.toml");
    let started = Instant::now();
    let mut ctl = Controller::start(&quiver, &config, &ctl_dir.join("controller.log"));
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .expect("client");
    let serial = wait_ready(&http, &ctl.url);
    eprintln!(
        "controller {} ready at serial {serial} after {:.1?}",
        ctl.url,
        started.elapsed()
    );
    let catalog_bytes = http
        .get(format!("{}/v1/catalog.json", ctl.url))
        .send()
        .and_then(|r| r.bytes())
        .expect("catalog");
    let catalog: Value = serde_json::from_slice(&catalog_bytes).expect("catalog JSON");
    let blobs = catalog_blobs(&catalog);
    let blob_bytes: u64 = blobs.iter().map(|(_, s)| s).sum();
    eprintln!(
        "catalog: {} entries, {:.2} MB; {} blobs, {:.1} MB",
        catalog["entries"].as_array().map_or(0, Vec::len),
        catalog_bytes.len() as f64 / 1e6,
        blobs.len(),
        blob_bytes as f64 / 1e6
    );

    let token = stdout_of(
        Command::new(&quiver)
            .args(["token", "create", "--config"])
            .arg(&config)
            .args(["--enroll", "--uses"])
            .arg((reps + pollers + 10).to_string()),
    );
    let pubkey = ctl_dir.join("keys/quiver.pub");
    let agents = dir.join("agents");
    let _ = std::fs::remove_dir_all(&agents);
    std::fs::create_dir_all(&agents).expect("mkdir");
    let enroll = |name: &str| -> PathBuf {
        let state = agents.join(name);
        run_ok(
            Command::new(&agent)
                .args(["enroll", "--server", &ctl.url, "--token", &token])
                .args(["--device-id", name, "--platform", "linux"])
                .arg("--public-key")
                .arg(&pubkey)
                .arg("--state-dir")
                .arg(&state),
        );
        state
    };

    let mut last_state = None;
    if wants("cold") || wants("warm") {
        // The curl side: one config file listing every URL the agent fetches and where to
        // put it, and the digests `sha256sum -c` checks.
        let mut cfg = String::new();
        let mut sums = String::new();
        for doc in [
            "timestamp.json",
            "timestamp.json.minisig",
            "catalog.json",
            "catalog.json.minisig",
        ] {
            writeln!(cfg, "url = \"{}/v1/{doc}\"\noutput = \"{doc}\"", ctl.url).unwrap();
        }
        for (hex, _) in &blobs {
            writeln!(
                cfg,
                "url = \"{}/v1/blobs/sha256/{hex}\"\noutput = \"{hex}\"",
                ctl.url
            )
            .unwrap();
            writeln!(sums, "{hex}  {hex}").unwrap();
        }
        std::fs::write(dir.join("curl.cfg"), cfg).expect("write");
        std::fs::write(dir.join("sha256sums"), sums).expect("write");
        let curl = |parallel: bool, out: &Path| -> Command {
            let _ = std::fs::remove_dir_all(out);
            std::fs::create_dir_all(out).expect("mkdir");
            let mut c = Command::new("sh");
            c.current_dir(out).arg("-c").arg(format!(
                "curl -sS --no-progress-meter --fail {} -K ../curl.cfg && sha256sum -c --quiet ../sha256sums",
                if parallel { "--parallel" } else { "" }
            ));
            c
        };
        // Warm the server's caches and check the curl side works.
        timed(&mut curl(true, &dir.join("curl-warmup")));

        let mut rows: Vec<(&str, Vec<Timing>)> = vec![
            ("quiver-agent sync (cold)", vec![]),
            ("curl -K (one connection) + sha256sum -c", vec![]),
            ("curl --parallel -K (50 at once) + sha256sum -c", vec![]),
        ];
        for rep in 0..reps {
            let state = enroll(&format!("cold-{rep}"));
            let t = timed(
                Command::new(&agent)
                    .args(["sync", "--json", "--state-dir"])
                    .arg(&state),
            );
            check_cold(&t.stdout, scripts, blobs.len());
            rows[0].1.push(t);
            rows[1]
                .1
                .push(timed(&mut curl(false, &dir.join("curl-seq"))));
            rows[2]
                .1
                .push(timed(&mut curl(true, &dir.join("curl-par"))));
            eprintln!(
                "rep {rep}: agent {:.2} s, curl {:.2} s, curl --parallel {:.2} s",
                rows[0].1[rep].wall, rows[1].1[rep].wall, rows[2].1[rep].wall
            );
            if let Some(old) = last_state.replace(state) {
                let _ = std::fs::remove_dir_all(old);
            }
        }
        println!(
            "\n(a) cold sync: {scripts} scripts, {} blobs, {:.1} MB, median of {reps}",
            blobs.len(),
            blob_bytes as f64 / 1e6
        );
        print_rows(&rows);
        let agent_med = median(&rows[0].1, |t| t.wall);
        println!(
            "agent / curl (one connection) = {:.2}x; agent / curl --parallel = {:.2}x",
            agent_med / median(&rows[1].1, |t| t.wall),
            agent_med / median(&rows[2].1, |t| t.wall)
        );
    }

    if wants("warm") {
        let state = match &last_state {
            Some(s) => s.clone(),
            None => unreachable!("the cold phase ran"),
        };
        let snapshot = current_snapshot(&state);
        let etag = http
            .get(format!("{}/v1/timestamp.json", ctl.url))
            .send()
            .expect("timestamp")
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .expect("etag")
            .to_string();
        let anchor_script = format!(
            "test \"$(curl -sS -o /dev/null -w '%{{http_code}}' -H '{}' {}/v1/timestamp.json)\" = 304 \
             && find . -type f -not -path './.quiver/*' -print0 | xargs -0 sha256sum > /dev/null",
            format_args!("If-None-Match: {etag}"),
            ctl.url
        );
        let mut rows: Vec<(&str, Vec<Timing>)> = vec![
            ("quiver-agent sync (warm, nothing new)", vec![]),
            ("curl 304 + sha256sum over the cache", vec![]),
        ];
        for _ in 0..reps.max(3) {
            let t = timed(
                Command::new(&agent)
                    .args(["sync", "--json", "--state-dir"])
                    .arg(&state),
            );
            let report: Value = serde_json::from_slice(&t.stdout).expect("sync JSON");
            assert_eq!(report["report"]["switched"], false, "{report}");
            assert_eq!(report["report"]["blobs_fetched"], 0, "{report}");
            rows[0].1.push(t);
            rows[1].1.push(timed(
                Command::new("sh")
                    .current_dir(&snapshot)
                    .args(["-c", &anchor_script]),
            ));
        }
        println!(
            "\n(b) warm sync, nothing new, median of {}",
            rows[0].1.len()
        );
        print_rows(&rows);
    }

    if wants("poll") {
        println!("\n(c) {pollers} long polls held against one controller");
        long_polls(&ctl, &token, pollers, serial, window);
    }

    ctl.stop();
}

/// One timed command.
struct Timing {
    wall: f64,
    cpu: f64,
    stdout: Vec<u8>,
}

/// Runs `cmd` to completion (it must succeed); wall clock and CPU (user + sys of the
/// process and its children, from `getrusage(RUSAGE_CHILDREN)` deltas).
fn timed(cmd: &mut Command) -> Timing {
    let before = children_cpu();
    let t = Instant::now();
    let out = cmd.stderr(Stdio::inherit()).output().expect("run command");
    let wall = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "{cmd:?} failed: {out:?}");
    Timing {
        wall,
        cpu: children_cpu() - before,
        stdout: out.stdout,
    }
}

fn children_cpu() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn check_cold(stdout: &[u8], scripts: usize, blobs: usize) {
    let v: Value = serde_json::from_slice(stdout).expect("sync JSON");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["report"]["switched"], true, "{v}");
    assert_eq!(v["report"]["scripts"], scripts, "{v}");
    assert_eq!(v["report"]["blobs_fetched"], blobs, "{v}");
}

fn print_rows(rows: &[(&str, Vec<Timing>)]) {
    println!(
        "| {:<48} | {:>9} | {:>9} | runs (s) |",
        "command", "wall", "CPU"
    );
    println!("|{:-<50}|{:->11}|{:->11}|---|", "", "", "");
    for (name, ts) in rows {
        let runs: Vec<String> = ts.iter().map(|t| format!("{:.2}", t.wall)).collect();
        println!(
            "| {:<48} | {:>7.3} s | {:>7.3} s | {} |",
            name,
            median(ts, |t| t.wall),
            median(ts, |t| t.cpu),
            runs.join(" ")
        );
    }
}

fn median<T>(v: &[T], f: impl Fn(&T) -> f64) -> f64 {
    let mut xs: Vec<f64> = v.iter().map(f).collect();
    xs.sort_by(f64::total_cmp);
    if xs.is_empty() {
        return f64::NAN;
    }
    xs[xs.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// (c): enroll `n` agent ids, hold one long poll per id, and measure catalog latency and
/// controller CPU with and without them.
fn long_polls(ctl: &Controller, token: &str, n: usize, serial: u64, window: Duration) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(n + 10)
        .build()
        .expect("client");
    let url = ctl.url.clone();

    // Enrollment, 16 at a time.
    let t = Instant::now();
    let tokens: Vec<(String, String)> = rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(16));
        let mut tasks = Vec::new();
        for i in 0..n {
            let (client, url, token, sem) =
                (client.clone(), url.clone(), token.to_string(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await.expect("semaphore");
                let id = format!("poller-{i:04}");
                let r = client
                    .post(format!("{url}/v1/enroll"))
                    .json(&json!({"token": token, "device_id": id, "platform": "linux"}))
                    .send()
                    .await
                    .expect("enroll");
                assert_eq!(r.status().as_u16(), 201, "enroll {id}");
                let v: Value = r.json().await.expect("enroll JSON");
                (
                    id,
                    v["agent_token"].as_str().expect("agent token").to_string(),
                )
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    });
    println!("enrolled {n} agent ids in {:.1?}", t.elapsed());

    let catalog_url = format!("{url}/v1/catalog.json");
    let lat = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let etag = lat
        .get(&catalog_url)
        .send()
        .expect("catalog")
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag")
        .to_string();
    let pid = ctl.pid;
    let mut table = Vec::new();
    let measure = |label: &str, table: &mut Vec<String>| {
        for conditional in [true, false] {
            let cpu0 = proc_cpu(pid);
            let t0 = Instant::now();
            let mut lats = Vec::new();
            while t0.elapsed() < window {
                let mut req = lat.get(&catalog_url);
                if conditional {
                    req = req.header("If-None-Match", &etag);
                }
                let s = Instant::now();
                let r = req.send().expect("catalog GET");
                let status = r.status().as_u16();
                let _ = r.bytes().expect("body");
                lats.push(s.elapsed());
                assert_eq!(status, if conditional { 304 } else { 200 });
            }
            let secs = t0.elapsed().as_secs_f64();
            let cpu = proc_cpu(pid) - cpu0;
            lats.sort();
            table.push(format!(
                "| {label} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.0}% |",
                if conditional {
                    "304 (If-None-Match)"
                } else {
                    "200"
                },
                lats.len(),
                lats.len() as f64 / secs,
                percentile(&lats, 0.5).as_secs_f64() * 1e3,
                percentile(&lats, 0.99).as_secs_f64() * 1e3,
                lats.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
                cpu / secs * 100.0
            ));
        }
    };

    // Warm up the latency client's connection and the controller's paths.
    for _ in 0..200 {
        let _ = lat.get(&catalog_url).send().and_then(|r| r.bytes());
    }

    // Anchor: no polls held.
    let idle_cpu0 = proc_cpu(pid);
    std::thread::sleep(Duration::from_secs(2));
    let idle_cpu = (proc_cpu(pid) - idle_cpu0) / 2.0;
    measure("no polls", &mut table);

    // Hold one poll per agent id, each on a connection of its own (a client that has none
    // open yet, so the controller's socket count says when they are all held).
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(n + 10)
        .build()
        .expect("client");
    let fds_before = fd_count(pid);
    let done = Arc::new(AtomicUsize::new(0));
    let cpu_ramp0 = proc_cpu(pid);
    let t_ramp = Instant::now();
    let polls: Vec<_> = tokens
        .into_iter()
        .map(|(id, agent_token)| {
            let (client, url, done) = (client.clone(), url.clone(), done.clone());
            rt.spawn(async move {
                let s = Instant::now();
                let r = client
                    .get(format!("{url}/v1/agents/{id}/poll?after={serial}&wait=30s"))
                    .bearer_auth(agent_token)
                    .send()
                    .await
                    .expect("poll");
                let status = r.status().as_u16();
                let v: Value = r.json().await.expect("poll JSON");
                done.fetch_add(1, Ordering::SeqCst);
                (status, v, s.elapsed())
            })
        })
        .collect();
    // Held once the controller has a socket for each (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(15);
    while fd_count(pid) < fds_before + n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let fds_held = fd_count(pid) - fds_before;
    std::thread::sleep(Duration::from_millis(500));
    let ramp = t_ramp.elapsed();
    let ramp_cpu = proc_cpu(pid) - cpu_ramp0;
    let hold_cpu0 = proc_cpu(pid);
    std::thread::sleep(Duration::from_secs(2));
    let hold_cpu = (proc_cpu(pid) - hold_cpu0) / 2.0;
    measure(&format!("{n} polls held"), &mut table);
    let measured_by = t_ramp.elapsed();
    let early = done.load(Ordering::SeqCst);

    // The polls end by themselves at their 30 s wait, with nothing new.
    let results = rt.block_on(async {
        let mut out = Vec::new();
        for p in polls {
            out.push(p.await.expect("poll task"));
        }
        out
    });
    let ok = results
        .iter()
        .filter(|(s, v, _)| *s == 200 && v["serial"].is_null())
        .count();
    let mut waited: Vec<Duration> = results.iter().map(|(_, _, d)| *d).collect();
    waited.sort();

    println!(
        "controller sockets held: {fds_held} (+{n} expected) within {:.2?}; ramp CPU {:.2} s",
        ramp, ramp_cpu
    );
    println!(
        "controller CPU: idle {:.1}%, holding {n} polls with no other traffic {:.1}%",
        idle_cpu * 100.0,
        hold_cpu * 100.0
    );
    println!(
        "polls answered before the measurements ended ({:.1?} after the first was sent): {}",
        measured_by, early
    );
    println!(
        "polls answered 200 with serial null: {ok}/{n}; waited {:.1?} (min) to {:.1?} (max)",
        waited.first().copied().unwrap_or_default(),
        waited.last().copied().unwrap_or_default()
    );
    println!(
        "\n| load | catalog.json | requests | req/s | p50 | p99 | max | controller CPU |\n|---|---|---:|---:|---:|---:|---:|---:|"
    );
    for row in table {
        println!("{row}");
    }
    assert_eq!(ok, n, "every poll answers 200 with nothing new");
    assert_eq!(early, 0, "no poll returned early");
}

/// User + system CPU seconds of a process, from `/proc/<pid>/stat`.
fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime) are 12 and 13 after the state field (3).
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The controller process.
struct Controller {
    child: Child,
    pid: u32,
    url: String,
}

impl Controller {
    fn start(quiver: &Path, config: &Path, log: &Path) -> Controller {
        let mut child = Command::new(quiver)
            .arg("controller")
            .arg("--config")
            .arg(config)
            .env("QUIVER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log"))
            .spawn()
            .expect("start controller");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read stdout");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("controller did not start: {line:?}"))
            .to_string();
        Controller {
            pid: child.id(),
            child,
            url,
        }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn wait_ready(http: &reqwest::blocking::Client, url: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(r) = http.get(format!("{url}/readyz")).send()
            && r.status().is_success()
            && let Ok(v) = r.json::<Value>()
            && let Some(s) = v["serial"].as_u64()
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the controller never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Unique blobs of every entry: (sha256, size).
fn catalog_blobs(catalog: &Value) -> Vec<(String, u64)> {
    let mut seen = std::collections::BTreeMap::new();
    for e in catalog["entries"].as_array().expect("entries") {
        for f in e["files"].as_array().expect("files") {
            seen.insert(
                f["sha256"].as_str().expect("sha256").to_string(),
                f["size"].as_u64().expect("size"),
            );
        }
    }
    seen.into_iter().collect()
}

fn current_snapshot(state: &Path) -> PathBuf {
    let p: Value =
        serde_json::from_slice(&std::fs::read(state.join("current.json")).expect("current.json"))
            .expect("pointer");
    state.join(p["dir"].as_str().expect("dir"))
}

/// The release binaries' folder, built here so the numbers never come from a debug build.
fn build_release(root: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--quiet",
            "--bin",
            "quiver",
            "--bin",
            "quiver-agent",
        ])
        .status()
        .expect("cargo build --release");
    assert!(status.success(), "building the release binaries failed");
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("release")
}

const POLICY: &str = r#"[[member]]
id = "lena"
emails = ["lena@corp.example"]
roles = ["lead"]

[[member]]
id = "sam"
emails = ["sam@corp.example"]
roles = ["author"]

[[role]]
id = "lead"
permissions = ["author", "approve", "execute", "audit"]

[[role]]
id = "author"
permissions = ["author"]

[[approval]]
scripts = ["*"]
min_approvals = 1

[[group]]
id = "linux"
platform = "linux"
scripts = ["*"]
"#;

/// A repository of `n` bash scripts of about `size` bytes each (a manifest and one `.sh`
/// per folder), committed on `main`, then one change merged with `--no-ff` and an
/// `Approved-by:` trailer. Returns the bytes of script files written.
fn generate(repo: &Path, n: usize, size: usize) -> u64 {
    std::fs::create_dir_all(repo.join("policies")).expect("mkdir");
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["config", "user.name", "Sam"]);
    git(repo, &["config", "user.email", "sam@corp.example"]);
    git(repo, &["config", "commit.gpgsign", "false"]);
    std::fs::write(repo.join("policies/team.toml"), POLICY).expect("write");
    let mut total = 0u64;
    for i in 0..n {
        let name = format!("collect-{i:04}");
        let dir = repo.join("library").join(&name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let manifest = format!(
            "name = \"{name}\"\ndescription = \"Collects section files {i} (text).\"\nplatforms = [\"linux\"]\ntimeout = \"5m\"\n\n[entry.linux]\nfile = \"{name}.sh\"\ninterpreter = \"bash\"\n\n[[parameter]]\nname = \"Depth\"\ntype = \"int\"\ndefault = \"3\"\n"
        );
        let script = bash_script(i, size);
        total += (manifest.len() + script.len()) as u64;
        std::fs::write(dir.join("script.toml"), manifest).expect("write");
        std::fs::write(dir.join(format!("{name}.sh")), script).expect("write");
    }
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "initial library"]);
    git(repo, &["checkout", "-q", "-b", "tweak"]);
    let f = repo.join("library/collect-0000/collect-0000.sh");
    let mut text = std::fs::read_to_string(&f).expect("read");
    text.push_str("echo \"done\"\n");
    std::fs::write(&f, text).expect("write");
    git(
        repo,
        &["commit", "-q", "-am", "collect-0000: say when done"],
    );
    git(repo, &["checkout", "-q", "main"]);
    git(
        repo,
        &[
            "-c",
            "user.name=Lena",
            "-c",
            "user.email=lena@corp.example",
            "merge",
            "-q",
            "--no-ff",
            "-m",
            "Merge #1 tweak\n\nApproved-by: Lena <lena@corp.example>",
            "tweak",
        ],
    );
    total
}

/// Plausible collection code, unique per script, about `size` bytes.
fn bash_script(i: usize, size: usize) -> String {
    let mut s = format!(
        "#!/usr/bin/env bash\n# collect-{i:04}: gathers files and command output into sections.\nset -u\ndepth=3\nwhile [ $# -gt 0 ]; do\n    case \"$1\" in\n        --Depth) depth=\"$2\"; shift 2 ;;\n        *) shift ;;\n    esac\ndone\nout=\"${{TMPDIR:-/tmp}}/collect-{i:04}\"\nmkdir -p \"$out\"\n\n"
    );
    let dirs = [
        "/etc/cron.d",
        "/etc/systemd/system",
        "/var/log",
        "/home",
        "/tmp",
        "/etc/ssh",
    ];
    let mut j = 0;
    while s.len() < size {
        let d = dirs[j % dirs.len()];
        write!(
            s,
            "section_{i}_{j}() {{\n    local f=\"$out/section-{j}.txt\"\n    echo \"== section {j} of collect-{i:04}: {d} ==\" >> \"$f\"\n    find {d} -maxdepth \"$depth\" -type f -newer /etc/hostname 2>/dev/null | head -n {} >> \"$f\" || true\n    stat -c '%n %s %Y' {d} >> \"$f\" 2>/dev/null || true\n}}\nsection_{i}_{j}\n\n",
            10 + j % 50
        )
        .unwrap();
        j += 1;
    }
    s
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
