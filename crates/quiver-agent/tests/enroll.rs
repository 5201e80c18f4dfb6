//! Enrollment: the agent token is stored privately and the controller key is pinned, refusing
//! a controller that presents another key than the operator gave.

mod common;

use common::*;
use quiver_catalog::KeyPair;
use serde_json::Value;

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
    let out = dev.run(&enroll_args(&url, &["--public-key", &key]));
    assert!(out.status.success());
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
    let other = KeyPair::generate().unwrap();
    let pub_file = dev.dir.path().join("controller.pub");
    std::fs::write(&pub_file, other.public.file_contents()).unwrap();
    let out = dev.run(&enroll_args(
        &url,
        &["--public-key", pub_file.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the pinned key"));
    assert!(!dev.state().join("agent.json").exists());
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
