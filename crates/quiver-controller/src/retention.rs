//! Retention: pruning what the policy in effect says to keep only for a while.
//!
//! - run output (`retention.execution_output`): the captured tails are cleared, the digest
//!   and size stay;
//! - run records (`retention.execution_records`): deleted;
//! - audit payloads (`retention.audit_payloads`): `details` becomes `null`, `details_sha256`
//!   stays, so the hash chain still verifies.
//!
//! Each pruning that removed something is itself recorded as `retention.pruned`.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::audit::AuditEvent;
use crate::controller::Shared;
use crate::state::StateError;

/// How often the retention task runs.
pub const INTERVAL: Duration = Duration::from_secs(3600);

/// What one pass pruned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Runs whose output was cleared.
    pub outputs: u64,
    /// Run records deleted.
    pub runs: u64,
    /// Audit payloads pruned.
    pub audit_payloads: u64,
}

fn ago(now: OffsetDateTime, d: Duration) -> OffsetDateTime {
    now - time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// Runs one retention pass with the policy in effect.
pub fn run_once(shared: &Shared, now: OffsetDateTime) -> Result<Pruned, StateError> {
    let r = shared.policy().retention.clone();
    let (outputs, runs) = shared
        .store()
        .prune_runs(ago(now, r.execution_output), ago(now, r.execution_records))?;
    if outputs + runs > 0 {
        shared.audit(vec![(
            None,
            AuditEvent::new(
                "retention.pruned",
                vec!["controller".into()],
                "runs",
                json!({"what": "runs", "outputs_cleared": outputs, "records_deleted": runs,
                       "execution_output_secs": r.execution_output.as_secs(),
                       "execution_records_secs": r.execution_records.as_secs()}),
            ),
        )])?;
    }
    let audit_payloads =
        shared
            .store()
            .prune_audit(&shared.audit, ago(now, r.audit_payloads), now)?;
    Ok(Pruned {
        outputs,
        runs,
        audit_payloads,
    })
}
