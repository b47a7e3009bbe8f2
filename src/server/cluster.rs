//! A cluster node's side threads: the outbox shipping the local ledger to PostgreSQL, and the
//! lease renewer keeping this node's share of every budget topped up from Redis. Budgets start
//! from what every node spent (PostgreSQL) when their bucket is new to Redis.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::config::cluster::ClusterSettings;
use crate::limits::lease::{self, LeaseTerms, Renewer, SpendKey, SpendSource};
use crate::state::live::Live;
use crate::store::outbox::{self, Outbox, OutboxError, OutboxStatus};
use crate::store::postgres;

/// How long shutdown waits for the outbox to ship what is left.
pub const DRAIN: Duration = Duration::from_secs(3);

/// The running cluster threads.
pub struct ClusterNode {
    outbox: Outbox,
    leases: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    pub status: Arc<ClusterStatus>,
}

/// What `/healthz` and `/metrics` show of the cluster.
#[derive(Debug)]
pub struct ClusterStatus {
    pub node: String,
    pub outbox: Arc<OutboxStatus>,
    /// The lease terms (`None`: no budget to lease).
    pub leases: Option<Arc<LeaseTerms>>,
}

impl ClusterStatus {
    pub fn gauges(&self) -> crate::metrics::ClusterGauges {
        use std::sync::atomic::Ordering::Relaxed;
        crate::metrics::ClusterGauges {
            outbox_pending: self.outbox.pending.load(Relaxed),
            outbox_shipped: self.outbox.shipped.load(Relaxed),
            postgres_up: self.outbox.postgres_up.load(Relaxed),
            redis_up: self.leases.as_ref().map(|t| t.redis_up.load(Relaxed)),
            redis_calls: self
                .leases
                .as_ref()
                .map_or(0, |t| t.redis_calls.load(Relaxed)),
            postgres_calls: self.outbox.batches.load(Relaxed),
        }
    }

    /// `/healthz`'s detail: the node and how its shared stores are doing.
    pub fn health_json(&self) -> serde_json::Value {
        let g = self.gauges();
        let up = |b: bool| if b { "up" } else { "down" };
        serde_json::json!({
            "node": self.node,
            "postgres": up(g.postgres_up),
            "redis": g.redis_up.map(up),
            "outbox_pending": g.outbox_pending,
            "budgets": self.leases.as_ref().map(|t| match t.mode() {
                crate::limits::lease::LeaseMode::Leases => "leases",
                crate::limits::lease::LeaseMode::StaticShare => "static_share",
                crate::limits::lease::LeaseMode::Refuse => "refuse",
            }),
        })
    }
}

impl ClusterNode {
    /// Stops leasing, then ships what the ledger committed (for at most [`DRAIN`]).
    pub fn stop(self) {
        if let Some((stop, thread)) = self.leases {
            stop.store(true, std::sync::atomic::Ordering::Release);
            let _ = thread.join();
        }
        self.outbox.stop(DRAIN);
    }
}

/// Starts the outbox on `ledger_path` and, when budgets are leased, the renewer.
pub fn start(
    cluster: &ClusterSettings,
    ledger_path: &Path,
    live: &Arc<Live>,
) -> Result<ClusterNode, OutboxError> {
    let outbox = outbox::start(
        ledger_path,
        &cluster.postgres,
        &cluster.node_id,
        cluster.outbox_max,
    )?;
    let terms = live.load().state.budgets.lease_terms().cloned();
    let leases = match &terms {
        Some(terms) => {
            let renewer = Renewer {
                terms: Arc::clone(terms),
                redis_url: cluster.redis.clone(),
                lease_window: cluster.lease_window,
                lease_ttl: cluster.lease_ttl,
                spent: spend_source(cluster.postgres.clone()),
            };
            let stop = Arc::new(AtomicBool::new(false));
            let source = Arc::clone(live);
            let thread = lease::start(
                renewer,
                move || {
                    let snapshot = source.load();
                    let mut buckets = snapshot.state.budgets.leased();
                    buckets.extend(snapshot.state.limiter.leased());
                    buckets
                },
                Arc::clone(&stop),
            )
            .map_err(OutboxError::Thread)?;
            Some((stop, thread))
        }
        None => None,
    };
    Ok(ClusterNode {
        status: Arc::new(ClusterStatus {
            node: cluster.node_id.clone(),
            outbox: outbox.status(),
            leases: terms,
        }),
        outbox,
        leases,
    })
}

/// Reads a budget's spend of record from PostgreSQL (on the renewer's thread, once per bucket
/// and window), connecting when first needed and again after a failure.
fn spend_source(conninfo: String) -> SpendSource {
    let mut client: Option<::postgres::Client> = None;
    Box::new(move |spend: &SpendKey| {
        let c = match client.take() {
            Some(c) => c,
            None => match postgres::connect(&conninfo) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the cluster's spend: a budget new to Redis starts from what this node saw");
                    return None;
                }
            },
        };
        let c = client.insert(c);
        match postgres::spent_since(c, spend.scope, &spend.key, &spend.since) {
            Ok(pico) => Some(crate::limits::budget::pico_to_nano(pico)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a budget's cluster spend");
                client = None;
                None
            }
        }
    })
}
