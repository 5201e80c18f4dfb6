//! Enrollment: the agent token is stored privately and the controller key is pinned, refusing
//! a controller that presents another key than the operator gave before the token is sent.

mod common;

use common::*;
use quiver_catalog::{KeyPair, PublicKey};
use serde_json::{Value, json};

fn enroll_args<'a>(p: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "enroll",
        "--json",
        "--server",
        p,
        "--token",
        TOKEN,
        "--device-id",
        DEVICE,
        "--label",
        "role=web",
    ];
    a.extend_from_slice(extra);
    a
}

/// Serves `GET /v1/key` as the controller does, with `key`.
fn serve_key(p: &Publisher, key: &PublicKey) {
    p.server.put(
        "key",
        json!({"public_key": key.to_base64(), "fingerprint": key.fingerprint()}).to_string(),
    );
}

fn enroll_posts(p: &Publisher) -> usize {
    p.server
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/enroll")
        .count()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn device() -> Device {
    Device {
        dir: tempfile::tempdir().unwrap(),
        labels: vec![("role".into(), "web".into())],
    }
}

#[test]
fn enroll_pins_the_given_key_and_stores_a_private_config() {
    let p = Publisher::new();
    let dev = device();
    let url = p.server.url();
    let key = p.keys.public.to_base64();
    serve_key(&p, &p.keys.public);
    let out = dev.run(&enroll_args(&url, &["--public-key", &key]));
    assert!(out.status.success(), "{}", stderr(&out));
    let paths: Vec<String> = p.server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/v1/key", "/v1/enroll"], "the key is checked first");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["fingerprint"], p.keys.public.fingerprint());
    assert_eq!(v["pinned_out_of_band"], true);
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(dev.state().join("agent.json")).unwrap()).unwrap();
    assert_eq!(cfg["agent_token"], AGENT_TOKEN);
    assert_eq!(cfg["public_key"], key);
    assert_eq!(cfg["labels"]["role"], "web");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode();
        assert_eq!(mode(dev.state().join("agent.json")) & 0o777, 0o600);
        assert_eq!(mode(dev.state()) & 0o077, 0, "state dir is private");
    }
    let req = p.server.wait_for(std::time::Duration::from_secs(1), |r| {
        r.path == "/v1/enroll"
    });
    assert_eq!(req.json()["platform"], "linux");

    // Enrolling again needs --force.
    let out = dev.run(&enroll_args(&url, &[]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
}

#[test]
fn enroll_refuses_a_controller_presenting_another_key() {
    let p = Publisher::new();
    let dev = device();
    let url = p.server.url();
    serve_key(&p, &p.keys.public);
    let other = KeyPair::generate().unwrap();
    let pub_file = dev.dir.path().join("controller.pub");
    std::fs::write(&pub_file, other.public.file_contents()).unwrap();
    let out = dev.run(&enroll_args(
        &url,
        &["--public-key", pub_file.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "the controller's public key {} is not the pinned key {}",
            p.keys.public.fingerprint(),
            other.public.fingerprint()
        )),
        "{err}"
    );
    assert!(err.contains("the enrollment token was not sent"), "{err}");
    // The token never left the device, and nothing was written.
    assert_eq!(enroll_posts(&p), 0);
    assert!(!dev.state().exists());
}

#[test]
fn enroll_with_a_pinned_key_refuses_a_controller_that_does_not_serve_its_key() {
    let p = Publisher::new();
    let dev = device();
    let key = p.keys.public.to_base64();
    let out = dev.run(&enroll_args(&p.server.url(), &["--public-key", &key]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot be checked against --public-key"),
        "{}",
        stderr(&out)
    );
    assert_eq!(enroll_posts(&p), 0);
}

#[test]
fn a_missing_or_secret_key_file_is_named() {
    let p = Publisher::new();
    serve_key(&p, &p.keys.public);
    let dev = device();
    let url = p.server.url();

    let missing = dev.dir.path().join("keys/quiver.pub");
    let out = dev.run(&enroll_args(
        &url,
        &["--public-key", missing.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("--public-key {}: no such file", missing.display())),
        "{err}"
    );
    assert!(!err.contains("Invalid encoding"), "{err}");

    let secret = dev.dir.path().join("quiver.key");
    std::fs::write(&secret, p.keys.secret_key_file_contents()).unwrap();
    let out = dev.run(&enroll_args(
        &url,
        &["--public-key", secret.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "--public-key {}: this is a minisign secret key",
            secret.display()
        )),
        "{err}"
    );

    // A mistyped key line is called a bad key, not a missing file.
    let mut typo = p.keys.public.to_base64();
    typo.truncate(typo.len() - 4);
    let out = dev.run(&enroll_args(&url, &["--public-key", &typo]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a valid minisign public key"),
        "{}",
        stderr(&out)
    );
    assert!(p.server.requests().is_empty(), "nothing was sent");
}

#[test]
fn enroll_without_a_key_pins_on_first_use_and_a_bad_token_is_refused() {
    let p = Publisher::new();
    let dev = device();
    let url = p.server.url();
    let out = dev.run(&[
        "enroll",
        "--server",
        &url,
        "--token",
        "wrong",
        "--device-id",
        DEVICE,
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("enrollment refused by"),
        "{}",
        stderr(&out)
    );
    let out = dev.run(&enroll_args(&url, &[]));
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pinned_out_of_band"], false);
    let text = dev.run(&[
        "enroll",
        "--server",
        &url,
        "--token",
        TOKEN,
        "--device-id",
        DEVICE,
        "--force",
    ]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("out of band"));
}
