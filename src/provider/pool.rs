//! The per-worker keep-alive pool. One pool per worker thread, so no lock: a `RefCell` over a
//! map from upstream address to idle connections, newest first out (the one least likely to have
//! been closed by the peer). Connections idle longer than `pool_idle` are dropped rather than
//! reused; keep that shorter than the upstream's own keep-alive timeout.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::connect::IdleState;
use super::UpstreamConn;
use crate::runtime::poll_clock;

/// Idle connections kept per upstream and worker.
const MAX_IDLE_PER_UPSTREAM: usize = 128;

/// Idle upstream connections of one worker.
pub struct Pool {
    idle: RefCell<HashMap<usize, Vec<(UpstreamConn, Instant)>>>,
    max_idle: Duration,
}

impl Pool {
    pub fn new(max_idle: Duration) -> Self {
        Self {
            idle: RefCell::new(HashMap::new()),
            max_idle,
        }
    }

    /// A pooled connection to upstream number `upstream` (its index in the config) that has
    /// not idled too long and received nothing while idle, if any. A connection the upstream
    /// wrote to (or closed) while idle is closed, and `on_discard` called for each one that
    /// carried bytes.
    pub fn checkout(&self, upstream: usize, on_discard: impl Fn()) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&upstream)?;
        while let Some((conn, since)) = list.pop() {
            if poll_clock::now().saturating_duration_since(since) >= self.max_idle {
                continue;
            }
            match conn.idle_state() {
                IdleState::Quiet => return Some(conn),
                IdleState::Unsolicited => on_discard(),
                IdleState::Closed => {}
            }
        }
        None
    }

    /// Returns a connection whose last response was read completely, at `now` (its idle time
    /// starts there).
    pub fn checkin(&self, upstream: usize, conn: UpstreamConn, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(upstream).or_default();
        drop_expired(list, now, self.max_idle);
        if list.len() < MAX_IDLE_PER_UPSTREAM {
            list.push((conn, now));
        }
    }

    /// Closes the connections that have idled past `pool_idle` (a worker calls this every
    /// second, so an idle gateway's descriptors return to their baseline).
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        for list in idle.values_mut() {
            drop_expired(list, now, self.max_idle);
        }
        idle.retain(|_, list| !list.is_empty());
    }

    /// Number of idle connections held (all upstreams).
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }
}

/// Drops the entries that have idled `max_idle` or longer by `now`. A list is in check-in
/// order (pushed at the back, taken from the back), so those are a prefix of it: found by a
/// binary search, with one clock read per call rather than one per pooled connection.
fn drop_expired<T>(list: &mut Vec<(T, Instant)>, now: Instant, max_idle: Duration) {
    let expired =
        list.partition_point(|(_, since)| now.saturating_duration_since(*since) >= max_idle);
    list.drain(..expired);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_connections_idle_too_long_are_dropped_and_the_order_is_kept() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut list: Vec<(u32, Instant)> = (0..6).map(|i| (i, at(u64::from(i) * 100))).collect();
        drop_expired(&mut list, at(750), Duration::from_millis(400));
        // Idle at 750 ms: 750, 650, 550, 450 (dropped), 350, 250 ms (kept).
        assert_eq!(list.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [4, 5]);
        drop_expired(&mut list, at(750), Duration::from_millis(400));
        assert_eq!(list.len(), 2, "nothing more is due");
        drop_expired(&mut list, at(10_000), Duration::from_millis(400));
        assert!(list.is_empty());
    }
}
