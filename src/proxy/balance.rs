//! Load balancing, passive health and the retry budget, per worker (no locks: each worker
//! learns about upstreams from its own traffic, as nginx's `max_fails` does per worker).
//!
//! - **Order**: a route's first deployment is picked among the healthy ones by its strategy
//!   (weighted random, least in flight, power of two choices, or the first healthy one); the
//!   others follow in configured order as fallbacks, healthy before ejected.
//! - **Session affinity**: a request of a Claude Code session (on a route with affinity) takes
//!   the deployments in the session's own rendezvous-hash order (weighted), healthy before
//!   ejected — every worker and every node computes the same order with no shared state, so a
//!   session stays where its prompt cache is, moves to its next deployment while that one is
//!   down, and comes back once it recovers.
//! - **Health**: `eject_after_failures` consecutive failures (connect errors, timeouts, 429, 5xx,
//!   529) eject a deployment for `eject_base`, doubling per further ejection up to `eject_max`;
//!   a `retry-after` cools it for that long. After the pause it is tried again; one success
//!   clears its record.
//! - **Retry budget**: fallbacks may add at most `retry_budget_ratio` of the requests of the last
//!   10 s (at least `retry_budget_min_per_second`), so a failing upstream is not hammered.
#![allow(
    clippy::indexing_slicing,
    reason = "indexes come from the route's own deployment list (0..len), never from input"
)]

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use crate::config::routes::Deployment;
use crate::config::{Balance, Route, Routing};
use crate::runtime::poll_clock;

/// Deployment indices in the order to try them: held inline for up to 8 (no allocation per
/// request for any ordinary route).
pub type DeploymentOrder = smallvec::SmallVec<[usize; 8]>;

/// Weighted rendezvous score of `deployment` for a session: `-weight / ln(u)`, `u` uniform in
/// (0, 1) from the pair's hash — the highest score wins, each deployment with its weight's share.
fn rendezvous_score(session: u64, deployment: &Deployment) -> f64 {
    let mut pair = [0u8; 16];
    pair[..8].copy_from_slice(&session.to_le_bytes());
    pair[8..].copy_from_slice(&deployment.affinity_id.to_le_bytes());
    let mixed = crate::digest::hash64(&pair);
    let u = ((mixed >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(deployment.weight) / u.ln()
}

/// The budget's window.
const WINDOW: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Default)]
struct Health {
    consecutive_failures: u32,
    ejections: u32,
    unavailable_until: Option<Instant>,
    in_flight: u32,
}

#[derive(Debug)]
struct Budget {
    window_start: Instant,
    requests: u32,
    retries: u32,
}

/// One worker's view of its upstreams.
pub struct Balancer {
    settings: Routing,
    /// Active health, shared by all workers.
    board: std::sync::Arc<crate::provider::health::HealthBoard>,
    health: RefCell<Vec<Health>>,
    budget: RefCell<Budget>,
    rng: Cell<u64>,
}

impl Balancer {
    pub fn new(
        upstreams: usize,
        settings: Routing,
        board: std::sync::Arc<crate::provider::health::HealthBoard>,
        seed: u64,
    ) -> Self {
        Self {
            settings,
            board,
            health: RefCell::new(vec![Health::default(); upstreams]),
            budget: RefCell::new(Budget {
                window_start: Instant::now(),
                requests: 0,
                retries: 0,
            }),
            rng: Cell::new(seed | 1),
        }
    }

    /// The deployments of `route` to try, in order (indexes into `route.deployments`);
    /// `session`: the caller's session key, for a route with session affinity.
    pub fn order(&self, route: &Route, session: Option<&[u8]>) -> DeploymentOrder {
        let now = poll_clock::now();
        self.count_request(now);
        let health = self.health.borrow();
        let up = |d: usize| {
            let upstream = route.deployments[d].upstream;
            self.board.is_up(upstream)
                && health
                    .get(upstream)
                    .and_then(|h| h.unavailable_until)
                    .is_none_or(|until| until <= now)
        };
        let mut all: DeploymentOrder = (0..route.deployments.len()).collect();
        if let (true, Some(session)) = (route.session_affinity, session) {
            let session = crate::digest::hash64(session);
            let score = |d: usize| rendezvous_score(session, &route.deployments[d]);
            all.sort_by(|a, b| score(*b).total_cmp(&score(*a)));
            let mut order: DeploymentOrder = all.iter().copied().filter(|d| up(*d)).collect();
            order.extend(all.iter().copied().filter(|d| !up(*d)));
            order.truncate(route.max_attempts);
            return order;
        }
        let healthy: DeploymentOrder = all.iter().copied().filter(|d| up(*d)).collect();
        let pool = if healthy.is_empty() { &all } else { &healthy };
        let first = self.pick(route, pool, &health);
        let mut order = DeploymentOrder::new();
        order.push(first);
        order.extend(healthy.iter().copied().filter(|d| *d != first));
        order.extend(
            all.iter()
                .copied()
                .filter(|d| *d != first && !healthy.contains(d)),
        );
        order.truncate(route.max_attempts);
        order
    }

    fn pick(&self, route: &Route, pool: &[usize], health: &[Health]) -> usize {
        let in_flight = |d: usize| {
            health
                .get(route.deployments[d].upstream)
                .map_or(0, |h| h.in_flight)
        };
        match route.balance {
            Balance::Ordered => pool[0],
            Balance::LeastInFlight => pool
                .iter()
                .copied()
                .min_by_key(|d| in_flight(*d))
                .unwrap_or(pool[0]),
            Balance::PowerOfTwo => {
                let a = pool[self.random(pool.len())];
                let b = pool[self.random(pool.len())];
                if in_flight(b) < in_flight(a) {
                    b
                } else {
                    a
                }
            }
            Balance::Weighted => {
                let total: u64 = pool
                    .iter()
                    .map(|d| u64::from(route.deployments[*d].weight))
                    .sum();
                let mut ticket = self.next() % total.max(1);
                for d in pool {
                    let w = u64::from(route.deployments[*d].weight);
                    if ticket < w {
                        return *d;
                    }
                    ticket -= w;
                }
                pool[0]
            }
        }
    }

    /// Whether the budget allows one more fallback attempt (and spends it if so).
    pub fn allow_retry(&self) -> bool {
        let mut b = self.budget.borrow_mut();
        self.roll_window(&mut b, poll_clock::now());
        let floor = self
            .settings
            .retry_budget_min_per_second
            .saturating_mul(WINDOW.as_secs() as u32);
        let share = (f64::from(b.requests) * self.settings.retry_budget_ratio) as u32;
        if b.retries < share.max(floor) {
            b.retries += 1;
            true
        } else {
            false
        }
    }

    /// Marks a request as in flight to `upstream` until the guard is dropped.
    pub fn enter(&self, upstream: usize) -> InFlight<'_> {
        if let Some(h) = self.health.borrow_mut().get_mut(upstream) {
            h.in_flight += 1;
        }
        InFlight {
            balancer: self,
            upstream,
        }
    }

    /// The upstream answered acceptably.
    pub fn success(&self, upstream: usize) {
        if let Some(h) = self.health.borrow_mut().get_mut(upstream) {
            h.consecutive_failures = 0;
            h.ejections = 0;
            h.unavailable_until = None;
        }
    }

    /// The upstream failed; `retry_after` is how long it asked to be left alone.
    pub fn failure(&self, upstream: usize, retry_after: Option<Duration>) {
        let mut health = self.health.borrow_mut();
        let Some(h) = health.get_mut(upstream) else {
            return;
        };
        h.consecutive_failures += 1;
        let now = poll_clock::now();
        let mut pause = retry_after;
        if h.consecutive_failures >= self.settings.eject_after_failures {
            let backoff = self
                .settings
                .eject_base
                .saturating_mul(1u32 << h.ejections.min(16))
                .min(self.settings.eject_max);
            h.ejections += 1;
            h.consecutive_failures = 0;
            pause = Some(pause.map_or(backoff, |p| p.max(backoff)));
            tracing::warn!(
                upstream,
                ?backoff,
                "upstream ejected after consecutive failures"
            );
        }
        if let Some(p) = pause {
            h.unavailable_until = Some(now + p);
        }
    }

    /// Whether `upstream` is currently ejected or cooling down.
    pub fn is_available(&self, upstream: usize) -> bool {
        self.health
            .borrow()
            .get(upstream)
            .and_then(|h| h.unavailable_until)
            .is_none_or(|until| until <= poll_clock::now())
    }

    fn count_request(&self, now: Instant) {
        let mut b = self.budget.borrow_mut();
        self.roll_window(&mut b, now);
        b.requests += 1;
    }

    fn roll_window(&self, b: &mut Budget, now: Instant) {
        if now.saturating_duration_since(b.window_start) >= WINDOW {
            b.window_start = now;
            b.requests = 0;
            b.retries = 0;
        }
    }

    fn random(&self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// xorshift64: fast, and good enough to spread picks.
    fn next(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }
}

/// A request in flight to one upstream.
pub struct InFlight<'a> {
    balancer: &'a Balancer,
    upstream: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.balancer.health.borrow_mut().get_mut(self.upstream) {
            h.in_flight = h.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Deployment, ModelPattern};

    fn settings() -> Routing {
        Routing {
            eject_after_failures: 3,
            eject_base: Duration::from_secs(1),
            eject_max: Duration::from_secs(8),
            retry_budget_ratio: 0.2,
            retry_budget_min_per_second: 1,
        }
    }

    fn route(balance: Balance, weights: &[u32]) -> Route {
        Route {
            pattern: ModelPattern::Any,
            deployments: weights
                .iter()
                .enumerate()
                .map(|(i, w)| Deployment {
                    upstream: i,
                    upstream_model: None,
                    weight: *w,
                    provider_model: None,
                    affinity_id: i as u64 + 1,
                })
                .collect(),
            balance,
            max_attempts: 3,
            session_affinity: true,
        }
    }

    #[test]
    fn weights_share_first_picks() {
        let b = Balancer::new(
            2,
            settings(),
            crate::provider::health::HealthBoard::new(2),
            42,
        );
        let r = route(Balance::Weighted, &[3, 1]);
        let firsts = (0..4000).filter(|_| b.order(&r, None)[0] == 0).count();
        assert!((2800..3200).contains(&firsts), "{firsts}");
        assert_eq!(b.order(&r, None).len(), 2);
    }

    #[test]
    fn failures_eject_then_a_success_restores() {
        let b = Balancer::new(
            2,
            settings(),
            crate::provider::health::HealthBoard::new(2),
            7,
        );
        let r = route(Balance::Ordered, &[1, 1]);
        for _ in 0..3 {
            b.failure(0, None);
        }
        assert!(!b.is_available(0));
        assert_eq!(
            b.order(&r, None).to_vec(),
            vec![1, 0],
            "the ejected deployment goes last"
        );
        b.success(0);
        assert_eq!(b.order(&r, None).to_vec(), vec![0, 1]);
    }

    #[test]
    fn a_session_keeps_its_deployment_moves_while_it_is_down_and_sessions_spread_by_weight() {
        let board = crate::provider::health::HealthBoard::new(3);
        let b = Balancer::new(3, settings(), board, 7);
        let r = route(Balance::Weighted, &[1, 1, 2]);
        let key = |n: u32| format!("key:k\0session-{n}").into_bytes();
        let home = b.order(&r, Some(&key(1)));
        for _ in 0..20 {
            assert_eq!(
                b.order(&r, Some(&key(1))),
                home,
                "every request of the session"
            );
        }
        // Another balancer (another worker, another node) computes the same order.
        let other = Balancer::new(
            3,
            settings(),
            crate::provider::health::HealthBoard::new(3),
            99,
        );
        assert_eq!(other.order(&r, Some(&key(1))), home);
        for _ in 0..3 {
            b.failure(r.deployments[home[0]].upstream, None);
        }
        let moved = b.order(&r, Some(&key(1)));
        assert_eq!(moved[0], home[1], "to the next in its own order");
        assert_eq!(*moved.last().unwrap(), home[0]);
        b.success(r.deployments[home[0]].upstream);
        assert_eq!(b.order(&r, Some(&key(1))), home, "back once it recovers");
        let mut firsts = [0u32; 3];
        for n in 0..4000 {
            firsts[b.order(&r, Some(&key(n)))[0]] += 1;
        }
        // Weights 1:1:2 → about 1000, 1000, 2000 sessions.
        assert!(
            firsts.iter().take(2).all(|f| (800..1200).contains(f)),
            "{firsts:?}"
        );
        assert!((1800..2200).contains(&firsts[2]), "{firsts:?}");
    }

    #[test]
    fn retry_after_cools_a_deployment() {
        let b = Balancer::new(
            2,
            settings(),
            crate::provider::health::HealthBoard::new(2),
            7,
        );
        b.failure(0, Some(Duration::from_secs(30)));
        assert_eq!(b.order(&route(Balance::Ordered, &[1, 1]), None)[0], 1);
    }

    #[test]
    fn least_in_flight_avoids_the_busy_one() {
        let b = Balancer::new(
            2,
            settings(),
            crate::provider::health::HealthBoard::new(2),
            7,
        );
        let r = route(Balance::LeastInFlight, &[1, 1]);
        let _busy = b.enter(0);
        assert_eq!(b.order(&r, None)[0], 1);
        drop(_busy);
        assert_eq!(b.order(&r, None)[0], 0);
    }

    #[test]
    fn the_retry_budget_runs_out() {
        let b = Balancer::new(
            1,
            settings(),
            crate::provider::health::HealthBoard::new(1),
            7,
        );
        let r = route(Balance::Ordered, &[1]);
        for _ in 0..10 {
            b.order(&r, None);
        }
        // 10 s × 1/s floor = 10 retries, more than 20 % of 10 requests.
        let allowed = (0..20).filter(|_| b.allow_retry()).count();
        assert_eq!(allowed, 10);
    }
}
