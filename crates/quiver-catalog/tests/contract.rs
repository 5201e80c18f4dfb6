//! Behaviour of the controller↔agent contract, including hostile inputs that must not verify.

use std::collections::BTreeMap;
use std::time::Duration;

use quiver_catalog::*;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-12-01 12:00:00 UTC);

fn file(path: &str, content: &[u8]) -> FileEntry {
    FileEntry {
        path: RelPath::new(path).unwrap(),
        sha256: sha256_hex(content),
        size: content.len() as u64,
        mode: 0o644,
    }
}

fn param(name: &str, r#type: ParamType, required: bool, default: Option<&str>) -> Parameter {
    Parameter {
        name: name.into(),
        r#type,
        required,
        default: default.map(Into::into),
        values: if r#type == ParamType::Enum {
            vec!["fast".into(), "full".into()]
        } else {
            vec![]
        },
        description: String::new(),
    }
}

fn entry(name: &str, platform: Platform, groups: &[&str]) -> Entry {
    let launch = Launch {
        file: RelPath::new("run.ps1").unwrap(),
        interpreter: Interpreter::Pwsh,
    };
    Entry {
        script: ScriptName::new(name).unwrap(),
        version: 3,
        commit: "c0ffee".into(),
        description: "clean up".into(),
        risk: Risk::Low,
        platforms: BTreeMap::from([(platform, launch)]),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        parameters: vec![
            param("Mode", ParamType::Enum, false, Some("fast")),
            param("Days", ParamType::Int, true, None),
            param("Force", ParamType::Bool, false, None),
            param("Note", ParamType::String, false, None),
        ],
        timeout_secs: 60,
        output_limit: 65536,
        files: vec![
            file("run.ps1", b"Write-Output hi"),
            file("lib/a.psm1", b"# lib"),
        ],
    }
}

fn group(id: &str, platform: Option<Platform>, labels: &[(&str, &str)]) -> Group {
    Group {
        id: id.into(),
        platform,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn catalog() -> Catalog {
    Catalog::new(
        5,
        "src1".into(),
        "pol1".into(),
        vec![
            group("win-kiosks", Some(Platform::Windows), &[("role", "kiosk")]),
            group("all", None, &[]),
        ],
        vec![
            entry("disk-cleanup", Platform::Windows, &["win-kiosks"]),
            entry("b-linux", Platform::Linux, &["all", "all"]),
            entry("a-kiosk-only", Platform::Windows, &["win-kiosks"]),
        ],
    )
}

struct Published {
    keys: KeyPair,
    cat: Vec<u8>,
    cat_sig: String,
    ts: Vec<u8>,
    ts_sig: String,
}

fn publish(c: &Catalog) -> Published {
    let keys = KeyPair::generate().unwrap();
    let cat = c.to_canonical_bytes();
    let ts = Timestamp::new(&cat, c.serial, NOW, Duration::from_secs(3600)).to_canonical_bytes();
    let cat_sig = keys.signing.sign(&cat, "catalog").unwrap();
    let ts_sig = keys.signing.sign(&ts, "timestamp").unwrap();
    Published {
        keys,
        cat,
        cat_sig,
        ts,
        ts_sig,
    }
}

fn sync(p: &Published, applied: Option<u64>, now: OffsetDateTime) -> Result<Catalog, VerifyError> {
    let limits = Limits::default();
    let ts = verify_timestamp(&p.keys.public, &p.ts, &p.ts_sig, now, applied, &limits)?;
    verify_catalog(&p.keys.public, &p.cat, &p.cat_sig, &ts, &limits)
}

#[test]
fn canonical_bytes_ignore_insertion_order_and_survive_round_trip() {
    let a = catalog();
    let mut b = catalog();
    b.entries.reverse();
    b.groups.reverse();
    b.entries[0].files.reverse();
    assert_eq!(a.to_canonical_bytes(), b.to_canonical_bytes());
    let bytes = a.to_canonical_bytes();
    assert!(bytes.ends_with(b"\n") && !bytes[..bytes.len() - 1].contains(&b'\n'));
    let parsed = Catalog::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(parsed.to_canonical_bytes(), bytes);
    // Parameters keep their declared order: it is the argument order.
    let e = parsed.entry("disk-cleanup").unwrap();
    assert_eq!(e.parameters[0].name, "Mode");
    assert_eq!(parsed.entry("b-linux").unwrap().groups, ["all"]);

    let ts = Timestamp::new(&bytes, 5, NOW, Duration::from_secs(60));
    let ts_bytes = ts.to_canonical_bytes();
    assert_eq!(Timestamp::parse(&ts_bytes, 1 << 16).unwrap(), ts);
}

#[test]
fn signed_snapshot_verifies() {
    let p = publish(&catalog());
    let got = sync(&p, Some(5), NOW).unwrap();
    let mut expected = catalog();
    expected.normalize();
    assert_eq!(got, expected);
    assert_eq!(p.keys.public.fingerprint().len(), 16);
    let decoded = PublicKey::decode(&p.keys.public_key_file_contents()).unwrap();
    assert_eq!(
        decoded,
        PublicKey::decode(&p.keys.public.to_base64()).unwrap()
    );
    decoded.verify(&p.cat, &p.cat_sig).unwrap();
}

#[test]
fn one_flipped_byte_in_document_or_signature_fails() {
    let p = publish(&catalog());
    let pk = &p.keys.public;
    // Why: a document altered in transit must never be accepted.
    let mut doc = p.cat.clone();
    doc[10] ^= 1;
    assert!(matches!(
        pk.verify(&doc, &p.cat_sig),
        Err(VerifyError::BadSignature { .. })
    ));
    // Why: a corrupted signature proves nothing.
    let lines: Vec<&str> = p.cat_sig.lines().collect();
    let mut sig_line = lines[1].as_bytes().to_vec();
    sig_line[20] = if sig_line[20] == b'A' { b'B' } else { b'A' };
    let sig = format!(
        "{}\n{}\n{}\n{}\n",
        lines[0],
        String::from_utf8(sig_line).unwrap(),
        lines[2],
        lines[3]
    );
    assert!(pk.verify(&p.cat, &sig).is_err());
    // Why: the trusted comment is signed too.
    let sig = p
        .cat_sig
        .replace("trusted comment: catalog", "trusted comment: catalog!");
    assert!(pk.verify(&p.cat, &sig).is_err());
}

#[test]
fn signature_by_another_key_fails() {
    // Why: only the pinned controller key may publish; any other key is an attacker's.
    let p = publish(&catalog());
    let other = KeyPair::generate().unwrap();
    let forged = other.signing.sign(&p.ts, "timestamp").unwrap();
    let err = verify_timestamp(
        &p.keys.public,
        &p.ts,
        &forged,
        NOW,
        None,
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(err.reason_code(), "bad-signature");
}

#[test]
fn rollback_freeze_and_mix_and_match_are_refused() {
    let p = publish(&catalog());
    // Rollback: the agent already applied serial 6; serial 5 is older.
    let err = sync(&p, Some(6), NOW).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Rollback {
            applied: 6,
            offered: 5
        }
    );
    assert_eq!(err.reason_code(), "rollback");
    // Freeze: an hour and a second later the timestamp has expired.
    let err = sync(&p, None, NOW + time::Duration::seconds(3601)).unwrap_err();
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");
    assert_eq!(err.reason_code(), "freeze");
    // Mix-and-match: a validly signed catalog that is not the one the timestamp names.
    let mut newer = catalog();
    newer.serial = 6;
    newer.policy_commit = "pol2".into();
    let other_cat = newer.to_canonical_bytes();
    let sig = p.keys.signing.sign(&other_cat, "catalog").unwrap();
    let ts = verify_timestamp(
        &p.keys.public,
        &p.ts,
        &p.ts_sig,
        NOW,
        None,
        &Limits::default(),
    )
    .unwrap();
    let err =
        verify_catalog(&p.keys.public, &other_cat, &sig, &ts, &Limits::default()).unwrap_err();
    assert!(
        matches!(err, VerifyError::MixAndMatch { what: "sha256", .. }),
        "{err}"
    );
    assert_eq!(err.reason_code(), "mix-and-match");
    // A signed timestamp naming the right bytes but another serial.
    let ts_bad = Timestamp::new(&p.cat, 9, NOW, Duration::from_secs(60));
    let err = verify_catalog(
        &p.keys.public,
        &p.cat,
        &p.cat_sig,
        &ts_bad,
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::SerialMismatch {
            timestamp: 9,
            catalog: 5
        }
    );
}

#[test]
fn oversize_is_refused_before_parsing() {
    // Why: a server streaming garbage must not be parsed (or even signature-checked) at all.
    let p = publish(&catalog());
    let limits = Limits {
        max_timestamp_bytes: 10,
        max_catalog_bytes: 10,
        ..Limits::default()
    };
    let err =
        verify_timestamp(&p.keys.public, &p.ts, "not a signature", NOW, None, &limits).unwrap_err();
    assert_eq!(err.reason_code(), "too-large");
    let junk = vec![b'{'; 100];
    assert!(matches!(
        Catalog::parse(&junk, &limits),
        Err(CatalogError::TooLarge {
            size: 100,
            limit: 10
        })
    ));
}

#[test]
fn blobs_are_checked_by_size_then_digest() {
    let f = file("run.ps1", b"Write-Output hi");
    verify_blob(b"Write-Output hi", &f).unwrap();
    assert_eq!(
        verify_blob(b"Write-Output hi!", &f)
            .unwrap_err()
            .reason_code(),
        "blob-size"
    );
    assert_eq!(
        verify_blob(b"Write-Output HI", &f)
            .unwrap_err()
            .reason_code(),
        "blob-digest"
    );
    assert_eq!(
        blob_rel_path(&f.sha256),
        format!("blobs/sha256/{}", f.sha256)
    );
}

type Mutation = fn(&mut serde_json::Value);

fn parse_json(v: &serde_json::Value) -> Result<Catalog, CatalogError> {
    Catalog::parse(&serde_json::to_vec(v).unwrap(), &Limits::default())
}

#[test]
fn hostile_catalogs_do_not_parse() {
    let good: serde_json::Value = serde_json::from_slice(&catalog().to_canonical_bytes()).unwrap();
    parse_json(&good).unwrap();
    // Why: each of these paths would escape the cache or misbehave on Windows.
    for bad in [
        "../x",
        "/etc/passwd",
        "C:\\x",
        "a\\..\\b",
        "con.txt",
        "a/./b",
    ] {
        assert!(RelPath::new(bad).is_err(), "{bad}");
        let mut v = good.clone();
        v["entries"][0]["files"][0]["path"] = bad.into();
        assert!(
            matches!(parse_json(&v), Err(CatalogError::Json(_))),
            "{bad}"
        );
    }
    let cases: Vec<(&str, Mutation)> = vec![
        ("unknown field", |v| {
            v["entries"][0]["hook"] = "curl x | sh".into()
        }),
        ("unknown top field", |v| v["extra"] = 1.into()),
        ("wrong type", |v| v["type"] = "timestamp".into()),
        ("future format", |v| v["format"] = 2.into()),
        ("duplicate script", |v| {
            let e = v["entries"][0].clone();
            v["entries"].as_array_mut().unwrap().push(e);
        }),
        ("case-insensitive duplicate file", |v| {
            let mut f = v["entries"][0]["files"][0].clone();
            f["path"] = f["path"].as_str().unwrap().to_uppercase().into();
            v["entries"][0]["files"].as_array_mut().unwrap().push(f);
        }),
        ("launch file missing", |v| {
            v["entries"][0]["files"]
                .as_array_mut()
                .unwrap()
                .retain(|f| f["path"] != "run.ps1")
        }),
        ("unknown group", |v| {
            v["entries"][0]["groups"][0] = "nobody".into()
        }),
        ("bad param name", |v| {
            v["entries"][0]["parameters"][0]["name"] = "1x; rm".into()
        }),
        ("bad default", |v| {
            v["entries"][0]["parameters"][0]["default"] = "slow".into()
        }),
        ("bad mode", |v| {
            v["entries"][0]["files"][0]["mode"] = 0o4755.into()
        }),
        ("float", |v| v["serial"] = 5.5.into()),
    ];
    for (why, mutate) in cases {
        let mut v = good.clone();
        mutate(&mut v);
        assert!(parse_json(&v).is_err(), "{why} must be refused");
    }
    let tiny = Limits {
        max_files: 3,
        ..Limits::default()
    };
    assert!(Catalog::parse(&catalog().to_canonical_bytes(), &tiny).is_err());
}

#[test]
fn params_are_type_checked_not_interpreted() {
    let e = entry("x", Platform::Windows, &[]);
    let given = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let hostile = "$(rm -rf /); `reboot` | del *.* & \"'";
    let out = e
        .check_params(&given(&[("Days", "7"), ("Note", hostile)]))
        .unwrap();
    let expected = [("Mode", "fast"), ("Days", "7"), ("Note", hostile)];
    assert_eq!(out, expected.map(|(k, v)| (k.to_string(), v.to_string())));
    assert_eq!(
        e.check_params(&given(&[("Days", "1"), ("Evil", "x")])),
        Err(ParamError::Unknown("Evil".into()))
    );
    assert_eq!(
        e.check_params(&given(&[])),
        Err(ParamError::Missing("Days".into()))
    );
    for (k, v) in [
        ("Days", "7d"),
        ("Days", "99999999999999999999"),
        ("Mode", "slow"),
        ("Force", "yes"),
        ("Note", "a\0b"),
    ] {
        let err = e
            .check_params(&given(&[("Days", "1"), (k, v)]))
            .unwrap_err();
        assert!(matches!(err, ParamError::Invalid { .. }), "{k}={v:?}");
    }
    assert!(
        e.check_params(&given(&[
            ("Days", "-3"),
            ("Force", "true"),
            ("Mode", "full")
        ]))
        .is_ok()
    );
}

#[test]
fn for_device_selects_by_platform_and_labels() {
    let c = catalog();
    let names = |platform, labels: &[(&str, &str)]| -> Vec<String> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        c.for_device(platform, &labels)
            .iter()
            .map(|e| e.script.to_string())
            .collect()
    };
    assert_eq!(
        names(Platform::Windows, &[("role", "kiosk"), ("site", "x")]),
        ["disk-cleanup", "a-kiosk-only"]
    );
    assert!(names(Platform::Windows, &[("role", "desk")]).is_empty());
    assert!(names(Platform::Macos, &[("role", "kiosk")]).is_empty());
    assert_eq!(names(Platform::Linux, &[]), ["b-linux"]);
}

#[test]
fn secret_key_file_is_private_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, pk) = (dir.path().join("quiver.key"), dir.path().join("quiver.pub"));
    let keys = KeyPair::generate().unwrap();
    keys.write(&sk, &pk).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&sk).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // Refuse to clobber an existing key.
    assert!(matches!(keys.write(&sk, &pk), Err(SignError::Exists(_))));
    let loaded = SigningKey::from_file(&sk).unwrap();
    let public = PublicKey::decode(&std::fs::read_to_string(&pk).unwrap()).unwrap();
    assert_eq!(public, keys.public);
    assert_eq!(loaded.public_key(), keys.public);
    let sig = loaded.sign(b"hello", "t").unwrap();
    public.verify(b"hello", &sig).unwrap();
    assert!(matches!(
        loaded.sign(b"x", "a\nb"),
        Err(SignError::BadComment)
    ));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sk, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SigningKey::from_file(&sk).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}

#[test]
fn api_bodies_are_forward_compatible() {
    let body = r#"{"platform":"linux","applied_serial":4,"agent_version":"0.1.0","new_field":1}"#;
    let req: api::CheckinRequest = serde_json::from_str(body).unwrap();
    assert!(req.scripts.is_empty() && req.labels.is_empty());
    let rec = api::RunRecord {
        id: "r1".into(),
        device: "d1".into(),
        script: "disk-cleanup".into(),
        version: Some(3),
        params: BTreeMap::new(),
        requested_by: "ann".into(),
        status: api::RunStatus::TimedOut,
        requested_at: NOW,
        finished_at: None,
        result: None,
    };
    let json = serde_json::to_string(&rec).unwrap();
    assert!(
        json.contains(r#""status":"timed_out""#) && json.contains("2026-12-01T12:00:00Z"),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<api::RunRecord>(&json).unwrap(), rec);
}
