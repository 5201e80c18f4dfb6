//! Crash safety: `quiver-agent sync` is SIGKILLed at random moments while it downloads,
//! stages and switches. After every kill, `current.json` must name a complete snapshot whose
//! files all verify (the old one or the new one), and a later sync must finish the job.
#![cfg(unix)]

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Eight scripts of two files each, all new for every serial, so every sync has work in every
/// phase: 16 downloads, staging, the switch, garbage collection.
fn scripts(serial: u64) -> Vec<Script> {
    (0..8)
        .map(|i| {
            script(
                &format!("s{i}"),
                serial as u32,
                &format!("echo {serial} {i}\n"),
            )
            .with_file(
                "data/blob.txt",
                format!("{serial}-{i}\n").repeat(200).as_bytes(),
            )
        })
        .collect()
}

#[test]
fn sigkill_at_any_moment_leaves_a_complete_verified_snapshot() {
    let p = Publisher::new();
    p.publish(1, &scripts(1));
    let dev = enrolled(&p, &[]);
    // Make downloads slowish so kills land in every phase.
    let slow = |p: &Publisher, serial: u64| {
        let s = p.publish(serial, &scripts(serial));
        for b in &s.blobs {
            let path = quiver_catalog::blob_rel_path(&quiver_catalog::sha256_hex(b));
            p.server.set(
                &path,
                Resource {
                    body: b.clone(),
                    trickle: None,
                    delay: Some(Duration::from_millis(3)),
                },
            );
        }
    };
    slow(&p, 1);
    let started = Instant::now();
    dev.sync_ok();
    let full = started.elapsed();
    dev.assert_current(&p.keys.public, 1);

    // 50 rounds: publish a new serial, SIGKILL a sync of it at a random moment (on every
    // other round a second one too, over the first one's debris), check that `current`
    // is the old or the new snapshot and verifies, then check the next sync completes.
    let mut last = 1;
    let mut kills = 0;
    let mut completed_before_kill = 0;
    let mut serial = 1;
    for round in 0..50 {
        serial += 1;
        slow(&p, serial);
        for _ in 0..(1 + usize::from(round % 2 == 0)) {
            let mut child = dev
                .cmd(&["sync"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let at = full.mul_f64(rand::random::<f64>() * 1.3);
            std::thread::sleep(at);
            // SAFETY: SIGKILL to the child we spawned (it may have exited already: harmless).
            unsafe {
                libc::kill(child.id() as i32, libc::SIGKILL);
            }
            let _ = child.wait();
            kills += 1;
            let now = verify_current(&dev.state(), &p.keys.public, &dev.labels)
                .expect("current.json exists once a sync has completed");
            assert!(now >= last, "serial went back from {last} to {now}");
            assert!(now == serial || now == last, "{now} is neither old nor new");
            if now == serial {
                completed_before_kill += 1;
            }
            last = now;
        }
        // The next sync after a kill completes, whatever the kill left behind.
        dev.sync_ok();
        dev.assert_current(&p.keys.public, serial);
        last = serial;
    }
    assert_eq!(kills, 75);
    eprintln!(
        "{kills} kills: {completed_before_kill} syncs had completed before theirs, the rest were killed mid-way"
    );
    // A final uninterrupted sync completes and cleans up.
    dev.sync_ok();
    dev.assert_current(&p.keys.public, serial);
    assert!(
        std::fs::read_dir(dev.state().join("tmp"))
            .unwrap()
            .next()
            .is_none()
    );
    let snapshots = std::fs::read_dir(dev.state().join("snapshots"))
        .unwrap()
        .count();
    assert!(snapshots <= 4, "{snapshots} snapshot dirs left");
}
