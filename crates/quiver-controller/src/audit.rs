//! The audit log: append-only JSON lines, each record chained to the one before by hash.
//!
//! A record is
//! `{seq, time, kind, actors, subject, details, details_sha256, prev, hash}`. `hash` is the
//! SHA-256 of the canonical JSON of the record *without* `hash` and with `details` left out
//! (its digest `details_sha256` stands in for it). That split is what lets retention prune a
//! payload: `details` becomes `null`, the digest stays, and the chain still verifies, so an
//! auditor can still prove nothing was edited, removed or reordered.
//!
//! Invariants:
//! - `seq` starts at 1 and grows by one per line; `prev` of record 1 is 64 zeros.
//! - Appends are serialised by the caller (the state store's write transaction), written in
//!   one `write` and `fsync`ed before the caller commits what it audited.
//! - Nothing but [`AuditLog::prune_payloads`] ever rewrites a line, and it only replaces
//!   `details` with `null`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Something that happened, before it gets its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Event kind, e.g. `version.approved` (see `docs/audit.md`).
    pub kind: String,
    /// Who did it (member ids, emails, agent ids, `controller`).
    pub actors: Vec<String>,
    /// What it is about, e.g. `process-list@v3`, `agent:host-1`, `snapshot:12`.
    pub subject: String,
    /// Kind-specific payload.
    pub details: Value,
}

impl AuditEvent {
    /// A new event.
    pub fn new(
        kind: &str,
        actors: Vec<String>,
        subject: impl Into<String>,
        details: Value,
    ) -> AuditEvent {
        AuditEvent {
            kind: kind.to_string(),
            actors,
            subject: subject.into(),
            details,
        }
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When it was recorded (RFC 3339, UTC).
    pub time: String,
    /// Event kind.
    pub kind: String,
    /// Who did it.
    pub actors: Vec<String>,
    /// What it is about.
    pub subject: String,
    /// Payload; `null` once retention pruned it.
    pub details: Value,
    /// SHA-256 of the canonical JSON of the original `details`.
    pub details_sha256: String,
    /// `hash` of the record before (64 zeros for the first).
    pub prev: String,
    /// SHA-256 over the record without `hash` and without `details`.
    pub hash: String,
}

/// The hashed part of a record; field order is the canonical order.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    time: &'a str,
    kind: &'a str,
    actors: &'a [String],
    subject: &'a str,
    details_sha256: &'a str,
    prev: &'a str,
}

impl AuditRecord {
    /// The hash this record should carry.
    pub fn compute_hash(&self) -> String {
        let hashed = Hashed {
            seq: self.seq,
            time: &self.time,
            kind: &self.kind,
            actors: &self.actors,
            subject: &self.subject,
            details_sha256: &self.details_sha256,
            prev: &self.prev,
        };
        let bytes = serde_json::to_vec(&hashed).expect("strings and integers serialize");
        hex::encode(Sha256::digest(bytes))
    }

    fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("records serialize");
        s.push('\n');
        s
    }
}

/// The digest of a payload: SHA-256 of its compact JSON. `serde_json::Value` keeps object
/// keys sorted, so the same payload always gives the same digest.
pub fn details_digest(details: &Value) -> String {
    let bytes = serde_json::to_vec(details).expect("values serialize");
    hex::encode(Sha256::digest(bytes))
}

/// Why the log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The log is not a valid chain.
    #[error("{path}: {broken}")]
    Broken {
        /// The log file.
        path: PathBuf,
        /// The first bad record.
        broken: Broken,
    },
    /// The log does not end with the record this controller last wrote: records were
    /// removed from its end, or the file was replaced or deleted, outside quiver.
    #[error(
        "{path} does not end where the controller last wrote it (record {}, hash {}), it ends {}: records were removed or changed outside quiver; keep the file as evidence, move it aside and start a new chain with `quiver audit new-chain --config … --reason …`",
        expected.seq,
        short(&expected.hash),
        found.as_ref().map_or("with no record".to_string(), |f| format!("at record {} (hash {})", f.seq, short(&f.hash)))
    )]
    Diverged {
        /// The log file.
        path: PathBuf,
        /// The last record the controller wrote.
        expected: Tip,
        /// The last record in the file (`None`: empty or missing).
        found: Option<Tip>,
    },
}

/// The last record of a chain, as the controller remembers it (in its state database)
/// to notice a log that was cut short or swapped: every record in it can verify and the
/// chain still be missing its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tip {
    /// `seq` of the last record.
    pub seq: u64,
    /// `hash` of the last record.
    pub hash: String,
}

impl Tip {
    /// `seq:hash`, as stored.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.seq, self.hash)
    }

    /// Reads [`Tip::encode`]'s form.
    pub fn decode(s: &str) -> Option<Tip> {
        let (seq, hash) = s.split_once(':')?;
        Some(Tip {
            seq: seq.parse().ok()?,
            hash: hash.to_string(),
        })
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The first record that breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    /// The record's `seq` if it could be read, else its line number.
    pub record: u64,
    /// 1-based line in the file.
    pub line: u64,
    /// What is wrong.
    pub problem: Problem,
}

/// What is wrong with a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// The line is not a record.
    Malformed {
        /// The parser's complaint.
        reason: String,
    },
    /// `seq` is not one more than the record before.
    SequenceGap {
        /// The `seq` that should be here.
        expected: u64,
    },
    /// `prev` is not the hash of the record before.
    PrevMismatch {
        /// The `seq` of the record before.
        previous: u64,
    },
    /// `details` does not match `details_sha256`.
    DetailsMismatch,
    /// `hash` is not the hash of the record.
    HashMismatch,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {} (line {}): ", self.record, self.line)?;
        match &self.problem {
            Problem::Malformed { reason } => write!(f, "not a valid record ({reason})"),
            Problem::SequenceGap { expected } => {
                write!(f, "sequence gap (expected seq {expected})")
            }
            Problem::PrevMismatch { previous } => {
                write!(f, "prev does not match record {previous}")
            }
            Problem::DetailsMismatch => f.write_str("details do not match details_sha256"),
            Problem::HashMismatch => f.write_str("hash mismatch"),
        }
    }
}

/// A log that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// Number of records.
    pub records: u64,
    /// `seq` of the last record.
    #[serde(skip)]
    pub head_seq: u64,
    /// `hash` of the last record (the chain head to compare with a copy kept elsewhere).
    #[serde(skip)]
    pub head_hash: String,
}

impl Verified {
    /// The last record (`None` for an empty log).
    pub fn tip(&self) -> Option<Tip> {
        (self.head_seq > 0).then(|| Tip {
            seq: self.head_seq,
            hash: self.head_hash.clone(),
        })
    }
}

/// Checks the whole chain: sequence, links, payload digests and hashes. Returns the first
/// broken record. This is what `quiver audit verify` runs.
pub fn verify(path: &Path) -> Result<Verified, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut reader = BufReader::new(file);
    let mut prev_hash = GENESIS.to_string();
    let mut prev_seq = 0u64;
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let broken = |record: u64, problem: Problem| AuditError::Broken {
            path: path.to_owned(),
            broken: Broken {
                record,
                line: line_no,
                problem,
            },
        };
        if buf.last() != Some(&b'\n') {
            return Err(broken(
                line_no,
                Problem::Malformed {
                    reason: "incomplete last line".into(),
                },
            ));
        }
        let rec: AuditRecord = serde_json::from_slice(&buf).map_err(|e| {
            broken(
                line_no,
                Problem::Malformed {
                    reason: e.to_string(),
                },
            )
        })?;
        if rec.seq != prev_seq + 1 {
            return Err(broken(
                rec.seq,
                Problem::SequenceGap {
                    expected: prev_seq + 1,
                },
            ));
        }
        if rec.prev != prev_hash {
            return Err(broken(
                rec.seq,
                Problem::PrevMismatch { previous: prev_seq },
            ));
        }
        if !rec.details.is_null() && details_digest(&rec.details) != rec.details_sha256 {
            return Err(broken(rec.seq, Problem::DetailsMismatch));
        }
        if rec.compute_hash() != rec.hash {
            return Err(broken(rec.seq, Problem::HashMismatch));
        }
        prev_seq = rec.seq;
        prev_hash = rec.hash;
    }
    Ok(Verified {
        records: line_no,
        head_seq: prev_seq,
        head_hash: if prev_seq == 0 {
            String::new()
        } else {
            prev_hash
        },
    })
}

/// RFC 3339 in UTC at millisecond precision, the one spelling of times in the log.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t
        .replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// The audit log file.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    /// The log at `path` (created on first append).
    pub fn new(path: impl Into<PathBuf>) -> AuditLog {
        AuditLog { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self) -> impl Fn(std::io::Error) -> AuditError + '_ {
        move |source| AuditError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The last record, read from the end of the file. A torn last line (a crash during an
    /// append that was never acknowledged) is cut off so the chain continues from the last
    /// complete record.
    fn tail(&self, file: &mut File) -> Result<Option<AuditRecord>, AuditError> {
        let len = file.metadata().map_err(self.io())?.len();
        if len == 0 {
            return Ok(None);
        }
        let mut last_byte = [0u8];
        file.seek(SeekFrom::Start(len - 1)).map_err(self.io())?;
        file.read_exact(&mut last_byte).map_err(self.io())?;
        // Read backwards in chunks until the newline before the last line.
        let mut chunk = 4096u64;
        let (start, bytes) = loop {
            let start = len.saturating_sub(chunk);
            file.seek(SeekFrom::Start(start)).map_err(self.io())?;
            let mut bytes = vec![0u8; (len - start) as usize];
            file.read_exact(&mut bytes).map_err(self.io())?;
            let body = &bytes[..bytes.len() - usize::from(last_byte[0] == b'\n')];
            if let Some(i) = body.iter().rposition(|b| *b == b'\n') {
                break (start + i as u64 + 1, bytes[i + 1..].to_vec());
            }
            if start == 0 {
                break (0, bytes);
            }
            chunk *= 2;
        };
        if last_byte[0] != b'\n' {
            tracing::warn!(path = %self.path.display(), "audit log ends in an incomplete record (crash during append); cutting it off");
            file.set_len(start).map_err(self.io())?;
            file.sync_all().map_err(self.io())?;
            if start == 0 {
                return Ok(None);
            }
            return self.tail(file);
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            (self.io())(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("last audit record is unreadable ({e}); run `quiver audit verify`"),
            ))
        })
    }

    /// Appends events as chained records and fsyncs. The caller must hold the audit write
    /// lock (see [`crate::state::Store::audit`]) so that two writers never pick the same `seq`.
    /// With `expected`, the file must end with that record (else [`AuditError::Diverged`]
    /// and nothing is written): a chain is never continued from a log cut short.
    pub fn append_locked(
        &self,
        events: &[AuditEvent],
        now: OffsetDateTime,
        expected: Option<&Tip>,
    ) -> Result<Vec<AuditRecord>, AuditError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(self.io())?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(self.io())?;
        let last = self.tail(&mut file)?;
        if let Some(expected) = expected {
            let found = last.as_ref().map(|r| Tip {
                seq: r.seq,
                hash: r.hash.clone(),
            });
            if found.as_ref() != Some(expected) {
                return Err(AuditError::Diverged {
                    path: self.path.clone(),
                    expected: expected.clone(),
                    found,
                });
            }
        }
        let (mut seq, mut prev) = last.map_or((0, GENESIS.to_string()), |r| (r.seq, r.hash));
        let time = format_time(now);
        let mut out = Vec::with_capacity(events.len());
        let mut text = String::new();
        for e in events {
            seq += 1;
            let mut rec = AuditRecord {
                seq,
                time: time.clone(),
                kind: e.kind.clone(),
                actors: e.actors.clone(),
                subject: e.subject.clone(),
                details_sha256: details_digest(&e.details),
                details: e.details.clone(),
                prev: prev.clone(),
                hash: String::new(),
            };
            rec.hash = rec.compute_hash();
            prev = rec.hash.clone();
            text.push_str(&rec.to_line());
            out.push(rec);
        }
        file.write_all(text.as_bytes()).map_err(self.io())?;
        file.sync_data().map_err(self.io())?;
        Ok(out)
    }

    /// Records with `seq > after`, at most `limit`, in order.
    pub fn read_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err((self.io())(e)),
        };
        let mut out = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            if out.len() >= limit {
                break;
            }
            // seq == line number in a valid log; skip without parsing.
            if (i as u64) < after {
                continue;
            }
            let line = line.map_err(self.io())?;
            if let Ok(rec) = serde_json::from_str::<AuditRecord>(&line)
                && rec.seq > after
            {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Replaces `details` with `null` in every record older than `before`, keeping
    /// `details_sha256`, so the chain still verifies. Returns how many payloads were pruned
    /// and the `seq` range they span. Caller holds the audit write lock.
    pub fn prune_payloads(
        &self,
        before: OffsetDateTime,
    ) -> Result<(u64, Option<(u64, u64)>), AuditError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, None)),
            Err(e) => return Err((self.io())(e)),
        };
        let mut pruned = 0u64;
        let mut range: Option<(u64, u64)> = None;
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            let rec = serde_json::from_str::<AuditRecord>(line.trim_end())
                .ok()
                .filter(|r| !r.details.is_null())
                .filter(|r| OffsetDateTime::parse(&r.time, &Rfc3339).is_ok_and(|t| t < before));
            match rec {
                Some(mut r) => {
                    r.details = Value::Null;
                    pruned += 1;
                    range = Some(range.map_or((r.seq, r.seq), |(a, _)| (a, r.seq)));
                    out.push_str(&r.to_line());
                }
                None => out.push_str(line),
            }
        }
        if pruned == 0 {
            return Ok((0, None));
        }
        let tmp = self.path.with_extension("jsonl.prune");
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(out.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        result.map_err(self.io())?;
        Ok((pruned, range))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write_log(dir: &Path, n: usize) -> AuditLog {
        let log = AuditLog::new(dir.join("audit.jsonl"));
        let now = OffsetDateTime::now_utc();
        for i in 0..n {
            let e = AuditEvent::new(
                "run.requested",
                vec!["alice".into()],
                format!("run:{i}"),
                json!({"i": i, "z": "last", "a": [1, 2]}),
            );
            log.append_locked(&[e], now, None).expect("append");
        }
        log
    }

    fn broken(path: &Path) -> String {
        match verify(path) {
            Err(AuditError::Broken { broken, .. }) => broken.to_string(),
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[test]
    fn a_fresh_log_verifies_and_tampering_is_found() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = write_log(dir.path(), 5);
        assert_eq!(verify(log.path()).expect("ok").records, 5);
        let text = std::fs::read_to_string(log.path()).expect("read");
        let lines: Vec<&str> = text.lines().collect();

        // An edited payload.
        let edited = text.replacen("\"last\"", "\"lost\"", 3);
        std::fs::write(log.path(), &edited).expect("write");
        assert_eq!(
            broken(log.path()),
            "record 1 (line 1): details do not match details_sha256"
        );

        // An edited subject.
        let edited = text.replace("run:2", "run:9");
        std::fs::write(log.path(), &edited).expect("write");
        assert_eq!(broken(log.path()), "record 3 (line 3): hash mismatch");

        // A removed line.
        let removed = [&lines[..2], &lines[3..]].concat().join("\n") + "\n";
        std::fs::write(log.path(), &removed).expect("write");
        assert_eq!(
            broken(log.path()),
            "record 4 (line 3): sequence gap (expected seq 3)"
        );

        // Two lines swapped.
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        std::fs::write(log.path(), swapped.join("\n") + "\n").expect("write");
        assert_eq!(
            broken(log.path()),
            "record 3 (line 2): sequence gap (expected seq 2)"
        );
    }

    #[test]
    fn pruning_keeps_the_chain_and_appends_continue() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = write_log(dir.path(), 3);
        let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let (n, range) = log.prune_payloads(later).expect("prune");
        assert_eq!((n, range), (3, Some((1, 3))));
        assert_eq!(verify(log.path()).expect("ok").records, 3);
        let recs = log.read_after(1, 10).expect("read");
        assert_eq!(recs.len(), 2);
        assert!(recs[0].details.is_null());
        log.append_locked(
            &[AuditEvent::new(
                "retention.pruned",
                vec![],
                "audit",
                json!({"n": 3}),
            )],
            OffsetDateTime::now_utc(),
            None,
        )
        .expect("append");
        assert_eq!(verify(log.path()).expect("ok").records, 4);
    }

    #[test]
    fn a_torn_last_line_is_cut_off_before_appending() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = write_log(dir.path(), 2);
        let mut f = OpenOptions::new()
            .append(true)
            .open(log.path())
            .expect("open");
        f.write_all(b"{\"seq\":3,\"ti").expect("write");
        drop(f);
        assert!(broken(log.path()).contains("incomplete last line"));
        log.append_locked(
            &[AuditEvent::new("x", vec![], "y", Value::Null)],
            OffsetDateTime::now_utc(),
            None,
        )
        .expect("append");
        assert_eq!(verify(log.path()).expect("ok").records, 3);
    }

    #[test]
    fn an_anchored_append_refuses_a_log_cut_short() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = write_log(dir.path(), 3);
        let tip = verify(log.path()).expect("ok").tip().expect("tip");
        assert_eq!(tip.seq, 3);
        let e = || [AuditEvent::new("x", vec![], "y", Value::Null)];
        let now = OffsetDateTime::now_utc();
        // The file ends where expected: the append goes on.
        let recs = log.append_locked(&e(), now, Some(&tip)).expect("append");
        let tip = Tip {
            seq: recs[0].seq,
            hash: recs[0].hash.clone(),
        };
        assert_eq!(Tip::decode(&tip.encode()), Some(tip.clone()));
        // The last record removed: every record left verifies, but the append is refused
        // and writes nothing.
        let text = std::fs::read_to_string(log.path()).expect("read");
        let cut: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
        std::fs::write(log.path(), &cut).expect("write");
        assert_eq!(verify(log.path()).expect("ok").records, 3);
        let err = log.append_locked(&e(), now, Some(&tip)).unwrap_err();
        assert!(matches!(err, AuditError::Diverged { .. }), "{err}");
        assert!(err.to_string().contains("ends at record 3"), "{err}");
        assert_eq!(std::fs::read_to_string(log.path()).expect("read"), cut);
        // An emptied file likewise.
        std::fs::write(log.path(), "").expect("write");
        let err = log.append_locked(&e(), now, Some(&tip)).unwrap_err();
        assert!(err.to_string().contains("with no record"), "{err}");
    }
}
