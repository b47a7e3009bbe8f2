//! The record writers (access log, spend ledger, audit log) run under `SCHED_IDLE` while they
//! keep up, so they never stand between a worker and its core.
//!
//! Why: where the writers share cores with the workers, a writer's burst each tick (a SQLite
//! commit, a batch of hashed audit lines) now and then holds the very core a worker is about to
//! be woken on, and the worker waits for the burst to end: on a small machine that wait is most
//! of governance's tail latency (the README's bench section has the figures). Under
//! `SCHED_IDLE` a waking worker preempts the writer at once, and the scheduler counts a core
//! that runs only idle-policy threads as free when it places a wake-up.
//!
//! The price: an idle-policy thread gets little CPU while every core is busy. So a writer whose
//! tick ran more than 50 ms behind its schedule (its work and its wake-up together: a starved
//! writer is slow at both) returns to the normal policy at once, and goes back to idle only
//! after its ticks have been on time for a second. 50 ms, not less: an ordinary wake-up can be
//! late by several milliseconds on a busy small machine, and a writer promoted for a second
//! each time would bring back the tail latency this is for; idle writers under saturation stay
//! within that bound. Being behind by up to that much stretches the ledger's durability window
//! by as much, and queues at most a few thousand records (the queue holds 65,536). A starved
//! writer cannot notice its own late tick until it is scheduled, which under `SCHED_IDLE` on
//! busy cores is about once a second; the [`watchdog`] thread, at the normal policy, watches
//! each writer's heartbeat and promotes it on its behalf.
//! `server.writer_priority = "normal"` keeps the writers at the normal policy throughout; writers
//! in `store.durability = "sync"` always are (a response's last byte waits for them).
//!
//! Leaving `SCHED_IDLE` takes `CAP_SYS_NICE` or an `RLIMIT_NICE` of at least 20 (systemd:
//! `LimitNICE=+0`). A process with neither never enters it, since it could not come back.

mod watchdog;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use thread_priority::{
    set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy, ThreadId,
    ThreadPriority, ThreadPriorityOsValue, ThreadSchedulePolicy,
};

/// How the writer threads are scheduled (`server.writer_priority`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriterPriority {
    /// `SCHED_IDLE` while the writer keeps up, the normal policy while it is behind.
    Idle,
    /// The normal policy always.
    Normal,
}

/// A wake-up later than this counts as on time (timer slack and an ordinary scheduling delay).
const ON_TIME: Duration = Duration::from_millis(2);

/// A tick this far behind its schedule means the cores are saturated: an idle-policy writer
/// would fall further behind.
const STARVED: Duration = Duration::from_millis(50);

/// How long ticks must stay on time before a writer that fell behind goes back to idle.
const CALM_FOR: Duration = Duration::from_secs(1);

/// One writer thread's scheduling: its ticks, and the policy they call for.
pub struct WriterPacing {
    name: &'static str,
    pace: Option<Pace>,
    /// When the last tick's sleep ended.
    last_wake: Instant,
    /// The writer's place on the watchdog's list (adaptive writers only).
    watch: Option<watchdog::Registration>,
}

impl WriterPacing {
    /// Called first thing on the writer's own thread: enters `SCHED_IDLE` when `wanted` says so
    /// and the process may leave it again.
    pub fn start(name: &'static str, wanted: WriterPriority) -> Self {
        let adaptive = wanted == WriterPriority::Idle && may_leave_idle();
        let mut pacing = Self {
            name,
            pace: adaptive.then(Pace::default),
            last_wake: Instant::now(),
            watch: None,
        };
        if adaptive {
            pacing.apply(true);
            if pacing.pace.is_some() {
                pacing.watch = Some(watchdog::register(name, thread_native_id()));
            }
        }
        pacing
    }

    /// Sleeps one tick, then moves between the idle and the normal policy by how far the whole
    /// cycle since the last tick (the work, the sleep, the wake-up) ran over one tick.
    pub fn sleep(&mut self, tick: Duration) {
        if let Some(watch) = &self.watch {
            watch.heartbeat.sleeping_for(tick);
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "a writer's own thread, not a worker"
        )]
        std::thread::sleep(tick);
        let now = Instant::now();
        let late = now.saturating_duration_since(self.last_wake + tick);
        self.last_wake = now;
        let promoted = self
            .watch
            .as_ref()
            .is_some_and(|w| w.heartbeat.take_promoted());
        if let (true, Some(pace)) = (promoted, self.pace.as_mut()) {
            pace.promoted_by_watchdog();
        }
        let change = self
            .pace
            .as_mut()
            .and_then(|pace| pace.after_wake(late, now));
        if let Some(idle) = change {
            tracing::debug!(
                writer = self.name,
                idle,
                late_us = late.as_micros() as u64,
                "writer scheduling policy changes"
            );
            self.apply(idle);
        }
    }

    fn apply(&mut self, idle: bool) {
        match set_policy(thread_native_id(), idle) {
            Ok(()) => {
                if let Some(watch) = &self.watch {
                    watch.heartbeat.set_idle(idle);
                }
            }
            Err(error) => {
                // Should not happen after the probe; stay where we are and stop adapting.
                tracing::warn!(
                    writer = self.name,
                    ?error,
                    "cannot change the writer's scheduling policy"
                );
                self.pace = None;
                self.watch = None;
            }
        }
    }
}

/// The decision, apart from the system calls: idle while ticks are on time, normal from the
/// first tick that runs [`STARVED`] behind until ticks have been on time for [`CALM_FOR`].
#[derive(Debug)]
struct Pace {
    idle: bool,
    /// Since when a writer at the normal policy has woken on time.
    calm_since: Option<Instant>,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            idle: true,
            calm_since: None,
        }
    }
}

impl Pace {
    /// The policy to switch to after a tick that ran `late` behind its schedule (`Some(idle)`),
    /// if any.
    fn after_wake(&mut self, late: Duration, now: Instant) -> Option<bool> {
        if late > STARVED {
            self.calm_since = None;
            return self.switch(false);
        }
        if self.idle {
            return None;
        }
        if late > ON_TIME {
            self.calm_since = None;
            return None;
        }
        let since = *self.calm_since.get_or_insert(now);
        if now.duration_since(since) >= CALM_FOR {
            self.calm_since = None;
            return self.switch(true);
        }
        None
    }

    /// The watchdog moved the writer to the normal policy: stay there until ticks have been
    /// on time for [`CALM_FOR`].
    fn promoted_by_watchdog(&mut self) {
        self.idle = false;
        self.calm_since = None;
    }

    fn switch(&mut self, idle: bool) -> Option<bool> {
        (self.idle != idle).then(|| {
            self.idle = idle;
            idle
        })
    }
}

/// Whether a thread of this process can enter `SCHED_IDLE` and leave it again (tried once, on a
/// thread of its own).
fn may_leave_idle() -> bool {
    static ALLOWED: OnceLock<bool> = OnceLock::new();
    *ALLOWED.get_or_init(|| {
        let probe = std::thread::Builder::new()
            .name("sluice-sched-probe".into())
            .spawn(|| {
                let me = thread_native_id();
                set_policy(me, true).is_ok() && set_policy(me, false).is_ok()
            });
        let allowed = probe.ok().and_then(|t| t.join().ok()).unwrap_or(false);
        if !allowed {
            tracing::info!("record writers stay at the normal scheduling policy: leaving SCHED_IDLE needs CAP_SYS_NICE or RLIMIT_NICE >= 20 (systemd: LimitNICE=+0)");
        }
        allowed
    })
}

/// Moves `thread` (of this process) to the idle or the normal policy. The library also resets
/// the *calling* thread's nice value to the default: harmless on a writer's own thread and on
/// the watchdog's.
fn set_policy(thread: ThreadId, idle: bool) -> Result<(), thread_priority::Error> {
    let policy = if idle {
        NormalThreadSchedulePolicy::Idle
    } else {
        NormalThreadSchedulePolicy::Other
    };
    set_thread_priority_and_policy(
        thread,
        ThreadPriority::Os(ThreadPriorityOsValue::default()),
        ThreadSchedulePolicy::Normal(policy),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn stays_idle_while_ticks_are_on_time_or_a_little_late() {
        let mut pace = Pace::default();
        let t0 = Instant::now();
        for (i, late) in [0, 1, 5, 11, 30, 50].into_iter().enumerate() {
            assert_eq!(pace.after_wake(ms(late), t0 + ms(i as u64 * 10)), None);
        }
        assert!(pace.idle);
    }

    #[test]
    fn a_tick_fifty_ms_behind_returns_to_normal_at_once() {
        let mut pace = Pace::default();
        assert_eq!(pace.after_wake(ms(51), Instant::now()), Some(false));
        assert_eq!(pace.after_wake(ms(500), Instant::now()), None);
        assert!(!pace.idle);
    }

    #[test]
    fn goes_back_to_idle_after_a_second_of_on_time_ticks() {
        let mut pace = Pace::default();
        let t0 = Instant::now();
        assert_eq!(pace.after_wake(ms(80), t0), Some(false));
        // On time, but a late tick in between starts the second again.
        assert_eq!(pace.after_wake(ms(0), t0 + ms(10)), None);
        assert_eq!(pace.after_wake(ms(0), t0 + ms(600)), None);
        assert_eq!(pace.after_wake(ms(3), t0 + ms(700)), None);
        assert_eq!(pace.after_wake(ms(0), t0 + ms(1200)), None);
        assert_eq!(pace.after_wake(ms(1), t0 + ms(2199)), None);
        assert_eq!(pace.after_wake(ms(1), t0 + ms(2200)), Some(true));
        assert!(pace.idle);
    }

    /// A writer under `SCHED_IDLE` that runs past its heartbeat (here: works without ever
    /// sleeping, as a starved writer does) is moved to the normal policy by the watchdog, and
    /// takes that on at its next tick instead of promoting itself.
    #[test]
    fn the_watchdog_promotes_a_writer_past_its_heartbeat() {
        let on_its_thread = std::thread::spawn(|| {
            let mut pacing = WriterPacing::start("test-starved", WriterPriority::Idle);
            if !may_leave_idle() {
                // No writer is made idle here, so there is nothing to watch.
                assert!(pacing.watch.is_none() && pacing.pace.is_none());
                return;
            }
            assert_eq!(
                thread_priority::thread_schedule_policy().unwrap(),
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle)
            );
            let heartbeat = Arc::clone(&pacing.watch.as_ref().unwrap().heartbeat);
            let started = Instant::now();
            while !heartbeat.promoted.load(Ordering::Relaxed) {
                assert!(started.elapsed() < Duration::from_secs(5), "never promoted");
                std::thread::yield_now();
            }
            assert_eq!(
                thread_priority::thread_schedule_policy().unwrap(),
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other)
            );
            pacing.sleep(Duration::ZERO);
            let pace = pacing.pace.as_ref().unwrap();
            assert!(!pace.idle, "the writer knows it was promoted");
            assert!(!heartbeat.take_promoted(), "and took the flag");
        });
        on_its_thread.join().unwrap();
    }

    #[test]
    fn normal_priority_never_adapts() {
        let mut pacing = WriterPacing::start("test", WriterPriority::Normal);
        assert!(pacing.pace.is_none());
        pacing.sleep(Duration::ZERO);
        assert!(pacing.pace.is_none());
    }
}
