//! Rate limits per key, user and team: requests per minute, tokens (input + output) per minute
//! and concurrent streams. Exact across all worker threads of a node without a lock: every
//! limited entity gets its counters when the config is built, and each per-minute counter is one
//! `AtomicU64` holding (minute, count), updated by compare-and-swap, so a new minute and the
//! count move together. Requests are counted at admission; tokens when the usage is known (a
//! request is refused while the minute's tokens are spent).
//!
//! In a cluster the requests and tokens of a minute are shared buckets too: a node admits from
//! its lease on them ([`lease`]), as budgets do, and the concurrent-streams limit holds per node.

pub mod budget;
mod by_scope;
pub mod lease;
pub mod session_budget;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use smallvec::SmallVec;

use by_scope::ByScope;
use lease::{LeaseCell, LeaseMode, LeaseTerms, LeaseWait, LeasedBucket};

/// What is limited, for one entity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitSpec {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub max_streams: Option<u32>,
}

impl LimitSpec {
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.max_streams.is_none()
    }
}

/// Who a limit applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Key,
    User,
    Team,
}

impl Scope {
    pub fn label(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::User => "user",
            Scope::Team => "team",
        }
    }
}

#[derive(Debug, Default)]
struct Counter {
    /// (minute << 32) | requests in that minute.
    requests: AtomicU64,
    /// (minute << 32) | tokens in that minute (saturating at 2³² − 1).
    tokens: AtomicU64,
    streams: AtomicU32,
    /// In a cluster: this node's leases on the minute's shared requests and tokens.
    requests_lease: Arc<LeaseCell>,
    tokens_lease: Arc<LeaseCell>,
}

/// Every limited entity's counters.
#[derive(Debug, Default, Clone)]
pub struct RateLimiter {
    index: ByScope<usize>,
    specs: Vec<LimitSpec>,
    /// Shared with the same entity's limits in the next config after a reload.
    counters: Vec<std::sync::Arc<Counter>>,
    /// In a cluster: requests and tokens per minute are admitted from leases.
    lease: Option<Arc<LeaseTerms>>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// e.g. `requests per minute for team platform`.
    pub which: String,
    /// Whole seconds until the limit has room again.
    pub retry_after: u64,
    /// In a cluster: this node's lease was empty and more was asked of the store — worth
    /// waiting for ([`RateLimiter::lease_headroom`]) and trying once more.
    pub awaiting_lease: bool,
}

/// The headers describing the most restrictive request limit that applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    /// RFC 3339 time the window resets.
    pub reset: compact_str::CompactString,
}

/// A request admitted under the limits; releases its stream slots when dropped.
#[derive(Debug)]
pub struct Admission<'a> {
    limiter: &'a RateLimiter,
    /// The limited entities (a request names at most key, user and team): inline, no
    /// allocation per request.
    entities: SmallVec<[usize; 3]>,
    streams: SmallVec<[usize; 3]>,
    pub quota: Option<Quota>,
}

impl RateLimiter {
    /// Adds an entity (config build time only).
    pub fn add(&mut self, scope: Scope, name: &str, spec: LimitSpec) {
        if spec.is_empty() {
            return;
        }
        self.index.insert(scope, name, self.specs.len());
        self.specs.push(spec);
        self.counters.push(std::sync::Arc::default());
    }

    /// Takes over the counters of the entities `old` also limits, so a config reload does not
    /// hand out a fresh minute or forget the streams in flight.
    pub fn adopt(&mut self, old: &RateLimiter) {
        for (scope, name, &i) in self.index.iter() {
            let Some(&j) = old.index.get(scope, name) else {
                continue;
            };
            if let (Some(slot), Some(counter)) = (self.counters.get_mut(i), old.counters.get(j)) {
                *slot = std::sync::Arc::clone(counter);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Admits a request from the named entities (any may be absent or unlimited).
    pub fn admit(
        &self,
        entities: &[(Scope, Option<&str>)],
        streaming: bool,
    ) -> Result<Admission<'_>, Refusal> {
        let minute = now_minute();
        let mut admission = Admission {
            limiter: self,
            entities: SmallVec::new(),
            streams: SmallVec::new(),
            quota: None,
        };
        for (scope, name) in entities {
            let Some(i) = name.and_then(|n| self.index.get(*scope, n)).copied() else {
                continue;
            };
            let spec = self.specs[i];
            let counter = &self.counters[i];
            let who =
                |what: &str| format!("{what} for {} {}", scope.label(), name.unwrap_or_default());
            if let Some(tpm) = spec.tpm {
                self.admit_tokens(counter, tpm, minute)
                    .map_err(|awaiting_lease| Refusal {
                        which: who("tokens per minute"),
                        retry_after: seconds_to_next_minute(),
                        awaiting_lease,
                    })?;
            }
            if let Some(rpm) = spec.rpm {
                let used = self
                    .count_request(counter, u64::from(rpm), minute)
                    .map_err(|awaiting_lease| Refusal {
                        which: who("requests per minute"),
                        retry_after: seconds_to_next_minute(),
                        awaiting_lease,
                    })?;
                let remaining = u64::from(rpm).saturating_sub(used);
                if admission
                    .quota
                    .as_ref()
                    .is_none_or(|q| remaining < q.remaining)
                {
                    admission.quota = Some(Quota {
                        limit: u64::from(rpm),
                        remaining,
                        reset: next_minute_rfc3339(minute),
                    });
                }
            }
            if let (Some(max), true) = (spec.max_streams, streaming) {
                let held = counter.streams.fetch_add(1, Ordering::AcqRel) + 1;
                if held > max {
                    counter.streams.fetch_sub(1, Ordering::AcqRel);
                    return Err(Refusal {
                        which: who("concurrent streams"),
                        retry_after: 1,
                        awaiting_lease: false,
                    });
                }
                admission.streams.push(i);
            }
            admission.entities.push(i);
        }
        Ok(admission)
    }
}

impl Admission<'_> {
    /// Counts the tokens the request used against each entity's minute.
    pub fn settle(&self, tokens: u64) {
        let minute = now_minute();
        let mode = self.limiter.lease.as_ref().map(|t| t.mode());
        for i in &self.entities {
            if self.limiter.specs[*i].tpm.is_some() {
                let counter = &self.limiter.counters[*i];
                add(&counter.tokens, minute, tokens);
                match mode {
                    Some(LeaseMode::Leases) => counter.tokens_lease.settle(minute, 0, tokens),
                    Some(_) => counter.tokens_lease.spent_unleased(minute, tokens),
                    None => {}
                }
            }
        }
    }
}

impl RateLimiter {
    /// Whether the minute's tokens leave room: against the limit on one node; in a cluster
    /// against the node's lease (`Err(true)`: it is empty and more was asked for), its
    /// static share, or not at all, as the store's state says.
    fn admit_tokens(&self, counter: &Counter, tpm: u64, minute: u64) -> Result<(), bool> {
        let limit = match self.lease.as_ref().map(|t| (t.mode(), t)) {
            None => tpm,
            Some((LeaseMode::Leases, terms)) => {
                match terms.ask_for(&counter.tokens_lease, minute, 1) {
                    LeaseWait::Ready => return Ok(()),
                    LeaseWait::Asked => return Err(true),
                    LeaseWait::Exhausted => return Err(false),
                    LeaseWait::Unreachable => unleased_limit(terms.failure_mode(), tpm, terms)?,
                }
            }
            Some((mode, terms)) => unleased_limit(mode, tpm, terms)?,
        };
        if count_in(&counter.tokens, minute) >= limit {
            return Err(false);
        }
        Ok(())
    }

    /// Counts one request in the minute unless that passes the limit (on one node, or the
    /// cluster's as above); returns this node's count.
    fn count_request(&self, counter: &Counter, rpm: u64, minute: u64) -> Result<u64, bool> {
        let Some(terms) = &self.lease else {
            return increment(&counter.requests, minute, rpm).ok_or(false);
        };
        let mode = match terms.mode() {
            LeaseMode::Leases if counter.requests_lease.take(minute, 1) => {
                counter.requests_lease.settle(minute, 1, 1);
                return increment(&counter.requests, minute, u64::MAX).ok_or(false);
            }
            LeaseMode::Leases => match terms.ask_for(&counter.requests_lease, minute, 1) {
                LeaseWait::Unreachable => terms.failure_mode(),
                wait => return Err(wait != LeaseWait::Exhausted),
            },
            mode => mode,
        };
        let used =
            increment(&counter.requests, minute, unleased_limit(mode, rpm, terms)?).ok_or(false)?;
        counter.requests_lease.spent_unleased(minute, 1);
        Ok(used)
    }

    /// Admits requests and tokens per minute from leases on the cluster's shared buckets.
    pub fn lease_with(&mut self, terms: Arc<LeaseTerms>) {
        self.lease = Some(terms);
    }

    pub fn lease_terms(&self) -> Option<&Arc<LeaseTerms>> {
        self.lease.as_ref()
    }

    /// Whether every requests- and tokens-per-minute lease of the named entities has room now
    /// (what a refused request waits for); asks the renewer for each that has none.
    pub fn lease_headroom(&self, entities: &[(Scope, Option<&str>)]) -> LeaseWait {
        let Some(terms) = &self.lease else {
            return LeaseWait::Ready;
        };
        let minute = now_minute();
        let mut wait = LeaseWait::Ready;
        let indices = entities
            .iter()
            .filter_map(|(scope, name)| name.and_then(|n| self.index.get(*scope, n)));
        for &i in indices {
            let (spec, counter) = (&self.specs[i], &self.counters[i]);
            let limited = [
                (spec.rpm.is_some(), &counter.requests_lease),
                (spec.tpm.is_some(), &counter.tokens_lease),
            ];
            for (_, cell) in limited.iter().filter(|(on, _)| *on) {
                wait = wait.and(terms.ask_for(cell, minute, 1));
            }
        }
        wait
    }

    /// The requests- and tokens-per-minute buckets of the current minute (named
    /// `rpm:<scope>:<name>` and `tpm:<scope>:<name>`), as the lease renewer sees them.
    pub fn leased(&self) -> Vec<LeasedBucket> {
        let minute = now_minute();
        let mut buckets = Vec::new();
        for (scope, name, &i) in self.index.iter() {
            let (spec, counter) = (&self.specs[i], &self.counters[i]);
            let limits = [
                ("rpm", spec.rpm.map(u64::from), &counter.requests_lease),
                ("tpm", spec.tpm, &counter.tokens_lease),
            ];
            for (kind, cap, cell) in limits {
                if let Some(cap) = cap {
                    buckets.push(LeasedBucket {
                        name: format!("{kind}:{}:{name}", scope.label()),
                        window: minute,
                        cap,
                        ttl_secs: 120,
                        cell: Arc::clone(cell),
                        spend: None,
                    });
                }
            }
        }
        buckets
    }
}

/// A per-minute limit without a lease: this node's static share of it, or a refusal.
fn unleased_limit(mode: LeaseMode, limit: u64, terms: &LeaseTerms) -> Result<u64, bool> {
    match mode {
        LeaseMode::Refuse => Err(false),
        _ => Ok(limit / u64::from(terms.nodes.max(1))),
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        for i in &self.streams {
            self.limiter.counters[*i]
                .streams
                .fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn now_minute() -> u64 {
    crate::runtime::poll_clock::unix_secs() / 60
}

fn seconds_to_next_minute() -> u64 {
    let secs = crate::runtime::poll_clock::unix_secs();
    (60 - secs % 60).max(1)
}

/// The start of the minute after `minute` (minutes since the epoch), as `2026-12-02T19:58:00Z`:
/// 20 characters, held inline (no allocation per request).
fn next_minute_rfc3339(minute: u64) -> compact_str::CompactString {
    let t = UNIX_EPOCH + std::time::Duration::from_secs((minute + 1) * 60);
    compact_str::format_compact!("{}", humantime::format_rfc3339_seconds(t))
}

fn unpack(v: u64) -> (u64, u64) {
    (v >> 32, v & 0xffff_ffff)
}

fn pack(minute: u64, count: u64) -> u64 {
    ((minute & 0xffff_ffff) << 32) | count.min(0xffff_ffff)
}

/// The count of `minute` in `slot` (0 if the slot holds an older minute).
fn count_in(slot: &AtomicU64, minute: u64) -> u64 {
    let (m, c) = unpack(slot.load(Ordering::Acquire));
    if m == minute & 0xffff_ffff {
        c
    } else {
        0
    }
}

/// Adds one if the minute's count is below `limit`; returns the new count.
fn increment(slot: &AtomicU64, minute: u64, limit: u64) -> Option<u64> {
    let mut current = slot.load(Ordering::Acquire);
    loop {
        let (m, c) = unpack(current);
        let used = if m == minute & 0xffff_ffff { c } else { 0 };
        if used >= limit {
            return None;
        }
        match slot.compare_exchange_weak(
            current,
            pack(minute, used + 1),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return Some(used + 1),
            Err(actual) => current = actual,
        }
    }
}

fn add(slot: &AtomicU64, minute: u64, amount: u64) {
    let mut current = slot.load(Ordering::Acquire);
    loop {
        let (m, c) = unpack(current);
        let used = if m == minute & 0xffff_ffff { c } else { 0 };
        match slot.compare_exchange_weak(
            current,
            pack(minute, used.saturating_add(amount)),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_per_minute_are_exact_across_threads() {
        let mut l = RateLimiter::default();
        l.add(
            Scope::Team,
            "t",
            LimitSpec {
                rpm: Some(1000),
                ..LimitSpec::default()
            },
        );
        let l = std::sync::Arc::new(l);
        let admitted = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (l, admitted) = (l.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        if l.admit(&[(Scope::Team, Some("t"))], false).is_ok() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // 4000 attempts in (almost surely) one minute: exactly the limit got through, unless
        // the minute turned during the run, when at most twice the limit could.
        let n = admitted.load(Ordering::Relaxed);
        assert!(n == 1000 || (1000..=2000).contains(&n), "{n}");
    }

    #[test]
    fn streams_are_released_when_the_admission_ends() {
        let mut l = RateLimiter::default();
        l.add(
            Scope::Key,
            "k",
            LimitSpec {
                max_streams: Some(1),
                ..LimitSpec::default()
            },
        );
        let first = l.admit(&[(Scope::Key, Some("k"))], true).unwrap();
        let refused = l.admit(&[(Scope::Key, Some("k"))], true).unwrap_err();
        assert!(refused.which.contains("concurrent streams"));
        assert!(
            l.admit(&[(Scope::Key, Some("k"))], false).is_ok(),
            "non-streaming requests are not streams"
        );
        drop(first);
        assert!(l.admit(&[(Scope::Key, Some("k"))], true).is_ok());
    }

    #[test]
    fn spent_tokens_refuse_until_the_minute_turns() {
        let mut l = RateLimiter::default();
        l.add(
            Scope::User,
            "u",
            LimitSpec {
                tpm: Some(100),
                ..LimitSpec::default()
            },
        );
        let a = l.admit(&[(Scope::User, Some("u"))], false).unwrap();
        a.settle(150);
        let refused = l.admit(&[(Scope::User, Some("u"))], false).unwrap_err();
        assert!(
            refused.which.contains("tokens per minute") && (1..=60).contains(&refused.retry_after)
        );
    }
}
