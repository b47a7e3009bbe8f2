//! The per-worker keep-alive pool. One pool per worker thread, so no lock: a `RefCell` over a
//! map from upstream address to idle connections, newest first out (the one least likely to have
//! been closed by the peer). Connections idle longer than `pool_idle` are dropped rather than
//! reused; keep that shorter than the upstream's own keep-alive timeout.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::connect::IdleState;
use super::UpstreamConn;

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
            if since.elapsed() >= self.max_idle {
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

    /// Returns a connection whose last response was read completely.
    pub fn checkin(&self, upstream: usize, conn: UpstreamConn) {
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(upstream).or_default();
        list.retain(|(_, since)| since.elapsed() < self.max_idle);
        if list.len() < MAX_IDLE_PER_UPSTREAM {
            list.push((conn, Instant::now()));
        }
    }

    /// Closes the connections that have idled past `pool_idle` (a worker calls this every
    /// second, so an idle gateway's descriptors return to their baseline).
    pub fn sweep(&self) {
        let mut idle = self.idle.borrow_mut();
        for list in idle.values_mut() {
            list.retain(|(_, since)| since.elapsed() < self.max_idle);
        }
        idle.retain(|_, list| !list.is_empty());
    }

    /// Number of idle connections held (all upstreams).
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }
}
