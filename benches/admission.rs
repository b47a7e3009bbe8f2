//! Admission on the request path (`src/bench/admission.rs`): rate limits, budget reserve and
//! settle, single node against a cluster node spending leases.

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "../src/bench/admission.rs"]
#[allow(dead_code, reason = "the bench's p99 timer is not used here")]
mod admission_setup;

use admission_setup::{admit_once, cluster_terms, governance};

fn admission(c: &mut Criterion) {
    let mut group = c.benchmark_group("admission (rate limits, budget reserve and settle)");
    for (name, terms) in [
        ("single node", None),
        ("cluster node, leased", Some(cluster_terms())),
    ] {
        let (limiter, budgets) = governance(terms);
        group.bench_function(name, |b| b.iter(|| admit_once(&limiter, &budgets)));
    }
    group.finish();
}

criterion_group!(benches, admission);
criterion_main!(benches);
