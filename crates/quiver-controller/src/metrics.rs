//! Prometheus metrics. Telemetry stays out of the decisions: the reconcile loop touches
//! these in two places (a duration observation and an error count by reason), the HTTP
//! layer in one (a request counter by route and status).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncState {
    sync_state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    route: String,
    status: u16,
}

/// Script states always exported (0 when none), so dashboards see every series.
pub const SCRIPT_STATES: &[&str] = &["approved", "drifted", "refused", "held", "removed"];
/// Agent sync states always exported.
pub const SYNC_STATES: &[&str] = &["in_sync", "behind", "error", "never", "revoked"];

/// The controller's metrics.
pub struct Metrics {
    registry: Registry,
    reconcile_duration: Histogram,
    reconcile_errors: Family<Reason, Counter>,
    snapshot_serial: Gauge,
    scripts: Family<State, Gauge>,
    agents: Family<SyncState, Gauge>,
    http: Family<Request, Counter>,
    /// Counter handles by status and route, so counting a request allocates nothing.
    http_cache: RwLock<HashMap<u16, HashMap<String, Counter>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let reconcile_errors = Family::<Reason, Counter>::default();
        let snapshot_serial = Gauge::default();
        let scripts = Family::<State, Gauge>::default();
        let agents = Family::<SyncState, Gauge>::default();
        let http = Family::<Request, Counter>::default();
        registry.register(
            "quiver_reconcile_duration_seconds",
            "Time taken by one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "quiver_reconcile_errors",
            "Reconciles that failed or left the controller degraded, by reason",
            reconcile_errors.clone(),
        );
        registry.register(
            "quiver_snapshot_serial",
            "Serial of the snapshot being served",
            snapshot_serial.clone(),
        );
        registry.register("quiver_scripts", "Scripts by state", scripts.clone());
        registry.register(
            "quiver_agents",
            "Enrolled agents by sync state",
            agents.clone(),
        );
        registry.register(
            "quiver_http_requests",
            "HTTP requests by route and status",
            http.clone(),
        );
        for s in SCRIPT_STATES {
            scripts
                .get_or_create(&State {
                    state: s.to_string(),
                })
                .set(0);
        }
        for s in SYNC_STATES {
            agents
                .get_or_create(&SyncState {
                    sync_state: s.to_string(),
                })
                .set(0);
        }
        Metrics {
            registry,
            reconcile_duration,
            reconcile_errors,
            snapshot_serial,
            scripts,
            agents,
            http,
            http_cache: RwLock::new(HashMap::new()),
        }
    }

    /// Records a reconcile's duration.
    pub fn observe_reconcile(&self, seconds: f64) {
        self.reconcile_duration.observe(seconds);
    }

    /// Counts a reconcile error by reason (`fetch`, `git`, `policy`, `rewrite`, `publish`, …).
    pub fn reconcile_error(&self, reason: &str) {
        self.reconcile_errors
            .get_or_create(&Reason {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Sets the served serial.
    pub fn set_serial(&self, serial: u64) {
        self.snapshot_serial.set(serial as i64);
    }

    /// Sets the script counts by state.
    pub fn set_scripts(&self, counts: &BTreeMap<String, u64>) {
        for s in SCRIPT_STATES {
            let n = counts.get(*s).copied().unwrap_or(0);
            self.scripts
                .get_or_create(&State {
                    state: s.to_string(),
                })
                .set(n as i64);
        }
    }

    /// Sets the agent counts by sync state.
    pub fn set_agents(&self, counts: &BTreeMap<&str, u64>) {
        for s in SYNC_STATES {
            let n = counts.get(*s).copied().unwrap_or(0);
            self.agents
                .get_or_create(&SyncState {
                    sync_state: s.to_string(),
                })
                .set(n as i64);
        }
    }

    /// Counts an HTTP request.
    pub fn http_request(&self, route: &str, status: u16) {
        if let Ok(cache) = self.http_cache.read()
            && let Some(c) = cache.get(&status).and_then(|m| m.get(route))
        {
            c.inc();
            return;
        }
        let counter = self
            .http
            .get_or_create(&Request {
                route: route.to_string(),
                status,
            })
            .clone();
        counter.inc();
        if let Ok(mut cache) = self.http_cache.write() {
            cache
                .entry(status)
                .or_default()
                .insert(route.to_string(), counter);
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_series_is_exported() {
        let m = Metrics::new();
        m.observe_reconcile(0.01);
        m.reconcile_error("fetch");
        m.set_serial(7);
        m.http_request("/v1/catalog.json", 200);
        let text = m.encode();
        for needle in [
            "quiver_reconcile_duration_seconds_bucket",
            "quiver_reconcile_errors_total{reason=\"fetch\"} 1",
            "quiver_snapshot_serial 7",
            "quiver_scripts{state=\"drifted\"} 0",
            "quiver_agents{sync_state=\"revoked\"} 0",
            "quiver_http_requests_total{route=\"/v1/catalog.json\",status=\"200\"} 1",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }
}
