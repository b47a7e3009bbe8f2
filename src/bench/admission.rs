//! Admission on the request path in isolation: the rate-limit check and the budget reservation
//! with its settlement, for a single node (counters against the limits) and a cluster node
//! (counters against leases granted from the shared buckets), with the bench's governance
//! (key and team limits, a team budget). `sluice bench --cluster` times each call for the p99;
//! the criterion bench `admission` includes this file for its mean.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::config::cluster::{ClusterSettings, RedisFailure};
use sluice::limits::budget::{BudgetSpec, Budgets, Period};
use sluice::limits::lease::LeaseTerms;
use sluice::limits::{LimitSpec, RateLimiter, Scope};

const ENTITIES: [(Scope, Option<&str>); 2] = [(Scope::Key, Some("k")), (Scope::Team, Some("t"))];

/// Lease terms as a cluster node holds them once its leases are renewed.
pub fn cluster_terms() -> Arc<LeaseTerms> {
    let cluster = ClusterSettings {
        node_id: "bench".into(),
        nodes: 3,
        postgres: String::new(),
        redis: String::new(),
        on_redis_failure: RedisFailure::StaticShare,
        lease_window: Duration::from_secs(2),
        lease_ttl: Duration::from_secs(10),
        outbox_max: 1,
    };
    let terms = LeaseTerms::new(&cluster);
    terms.renewed(Duration::from_secs(24 * 3600));
    terms
}

/// The bench's limits and budget; with `terms`, leased, each lease holding half its cap (what
/// a renewer would have granted: the hot path never waits).
pub fn governance(terms: Option<Arc<LeaseTerms>>) -> (RateLimiter, Arc<Budgets>) {
    let mut limiter = RateLimiter::default();
    let limit = LimitSpec {
        rpm: Some(4_000_000_000),
        tpm: Some(1_000_000_000_000),
        max_streams: None,
    };
    limiter.add(Scope::Key, "k", limit);
    limiter.add(Scope::Team, "t", limit);
    let mut budgets = Budgets::default();
    let spec = BudgetSpec {
        limit_usd: 280_000.0,
        soft_usd: None,
        period: Period::Total,
    };
    budgets.add(Scope::Team, "t", spec);
    if let Some(terms) = terms {
        limiter.lease_with(Arc::clone(&terms));
        budgets.lease_with(terms);
        for bucket in limiter.leased().into_iter().chain(budgets.leased()) {
            bucket.cell.grant(bucket.window, bucket.cap / 2);
        }
    }
    (limiter, Arc::new(budgets))
}

/// One request's admission: admit, reserve, settle both. Whether it was admitted.
pub fn admit_once(limiter: &RateLimiter, budgets: &Arc<Budgets>) -> bool {
    let admitted = limiter.admit(&ENTITIES, false).ok();
    if let Ok(reservation) = budgets.reserve(&ENTITIES, None, 1_000_000) {
        reservation.settle(500_000);
    }
    if let Some(admission) = &admitted {
        admission.settle(100);
    }
    admitted.is_some()
}

/// p50 and p99 of one admission, in ns, for (single node, cluster node): `count` calls each,
/// timed one by one in alternating blocks.
pub fn percentiles_ns(count: usize) -> [(u64, u64); 2] {
    let single = governance(None);
    let cluster = governance(Some(cluster_terms()));
    let mut histograms = [
        hdrhistogram::Histogram::<u64>::new(3),
        hdrhistogram::Histogram::<u64>::new(3),
    ];
    let block = 10_000.min(count.max(1));
    let mut done = 0;
    while done < count {
        for ((limiter, budgets), histogram) in [&single, &cluster].into_iter().zip(&mut histograms)
        {
            for _ in 0..block {
                let started = Instant::now();
                std::hint::black_box(admit_once(limiter, budgets));
                if let Ok(h) = histogram {
                    let _ = h.record(started.elapsed().as_nanos() as u64);
                }
            }
        }
        done += block;
    }
    histograms.map(|h| {
        h.map_or((0, 0), |h| {
            (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
        })
    })
}
