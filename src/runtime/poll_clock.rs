//! The time of a connection task's current poll. When a request's head arrives, several phases
//! read the clock in the same poll of its task — the record's times, the rate limits' minute,
//! the budgets' day, the token checks' second, the balancer's health, the pool's idle times —
//! and nothing they decide changes in the microseconds between them, so they share one read
//! of each clock (monotonic and wall). A poll ends at the task's next wait, and the next poll
//! reads afresh.
//!
//! The sharing holds only while a connection task is being polled ([`PollScope`], entered by
//! [`super::panic_guard::CatchPanic`]); anywhere else — tests, background tasks, other
//! threads — each call reads the clock. A request's start reads the clock afresh and makes
//! that the poll's time ([`now_fresh`]); times that measure sluice's own work further on (the
//! body complete, the request sent upstream, a response head passed on) read the clock
//! themselves, not through here.

use std::cell::Cell;
use std::time::{Instant, SystemTime};

thread_local! {
    static POLL: PollTimes = const { PollTimes::new() };
}

/// The current poll's clock reads, once made.
struct PollTimes {
    in_poll: Cell<bool>,
    monotonic: Cell<Option<Instant>>,
    wall: Cell<Option<SystemTime>>,
}

impl PollTimes {
    const fn new() -> Self {
        Self {
            in_poll: Cell::new(false),
            monotonic: Cell::new(None),
            wall: Cell::new(None),
        }
    }

    fn forget(&self) {
        self.monotonic.set(None);
        self.wall.set(None);
    }
}

/// The monotonic time of the current poll (read now when outside a connection task's poll).
pub fn now() -> Instant {
    POLL.with(|p| shared(p, &p.monotonic, Instant::now))
}

/// The wall-clock time of the current poll (read now when outside a connection task's poll).
pub fn wall_now() -> SystemTime {
    POLL.with(|p| shared(p, &p.wall, SystemTime::now))
}

/// Seconds since the Unix epoch, by [`wall_now`] (0 for a clock set before 1970).
pub fn unix_secs() -> u64 {
    wall_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads the monotonic clock and makes that the current poll's time for the reads after it:
/// for a time that starts a measurement (a request's start), which must not be an earlier
/// read of the same poll (a pipelined request behind another).
pub fn now_fresh() -> Instant {
    POLL.with(|p| fresh(p, &p.monotonic, Instant::now))
}

/// [`now_fresh`] for the wall clock.
pub fn wall_now_fresh() -> SystemTime {
    POLL.with(|p| fresh(p, &p.wall, SystemTime::now))
}

fn fresh<T: Copy>(p: &PollTimes, cached: &Cell<Option<T>>, read: impl FnOnce() -> T) -> T {
    let t = read();
    if p.in_poll.get() {
        cached.set(Some(t));
    }
    t
}

fn shared<T: Copy>(p: &PollTimes, cached: &Cell<Option<T>>, read: impl FnOnce() -> T) -> T {
    if !p.in_poll.get() {
        return read();
    }
    match cached.get() {
        Some(t) => t,
        None => {
            let t = read();
            cached.set(Some(t));
            t
        }
    }
}

/// One poll of a connection task: clock reads through this module share their values until
/// it is dropped.
pub struct PollScope {
    /// Whether a poll was already under way (a scope inside another keeps the outer's reads).
    nested: bool,
}

impl PollScope {
    pub fn enter() -> Self {
        POLL.with(|p| {
            let nested = p.in_poll.replace(true);
            if !nested {
                p.forget();
            }
            Self { nested }
        })
    }
}

impl Drop for PollScope {
    fn drop(&mut self) {
        if !self.nested {
            POLL.with(|p| {
                p.in_poll.set(false);
                p.forget();
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reads_in_one_poll_share_a_value_and_the_next_poll_reads_afresh() {
        let (first, first_wall) = {
            let _poll = PollScope::enter();
            let (t, w) = (now(), wall_now());
            std::hint::black_box(busy_for(Duration::from_millis(2)));
            assert_eq!(now(), t, "the same poll: the same time");
            assert_eq!(wall_now(), w);
            (t, w)
        };
        let _poll = PollScope::enter();
        assert!(now() > first, "a new poll reads the clock again");
        assert!(wall_now() > first_wall);
    }

    #[test]
    fn outside_a_poll_every_call_reads_the_clock() {
        let t = now();
        std::hint::black_box(busy_for(Duration::from_millis(2)));
        assert!(now() > t);
        let _poll = PollScope::enter();
        let inside = now();
        drop(_poll);
        std::hint::black_box(busy_for(Duration::from_millis(2)));
        assert!(now() > inside, "the poll's time is not kept after it");
    }

    #[test]
    fn a_fresh_read_becomes_the_polls_time() {
        let _poll = PollScope::enter();
        let before = now();
        std::hint::black_box(busy_for(Duration::from_millis(2)));
        let fresh = now_fresh();
        assert!(fresh > before);
        assert_eq!(now(), fresh, "the reads after it share it");
        let wall = wall_now();
        std::hint::black_box(busy_for(Duration::from_millis(2)));
        let fresh_wall = wall_now_fresh();
        assert!(fresh_wall > wall);
        assert_eq!(wall_now(), fresh_wall);
    }

    #[test]
    fn a_scope_inside_a_poll_keeps_the_polls_time() {
        let _poll = PollScope::enter();
        let t = now();
        {
            let _inner = PollScope::enter();
            assert_eq!(now(), t);
        }
        std::hint::black_box(busy_for(Duration::from_millis(2)));
        assert_eq!(now(), t, "the outer poll is still under way");
    }

    /// Waits by spinning on the clock itself (not through this module).
    fn busy_for(d: Duration) -> u64 {
        let start = Instant::now();
        let mut spins = 0u64;
        while start.elapsed() < d {
            spins += 1;
        }
        spins
    }
}
