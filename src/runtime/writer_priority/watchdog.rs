//! The watchdog: a small thread at the normal policy that moves a starved idle writer to the
//! normal policy on the writer's behalf.
//!
//! Why: a writer notices it is behind only when one of its ticks runs late, and a thread under
//! `SCHED_IDLE` on cores that are all busy is scheduled about once a second. Until then its
//! records queue up (about 1.4 KB each with their strings: a second of a saturating load was a
//! 30–50 MiB peak in resident memory), and the ledger's durability window stretches by as much.
//! The watchdog is never starved, so it sees the writer's missed heartbeat within
//! [`LOOK_EVERY`] of the [`STARVED`](super::STARVED) bound.
//!
//! Each adaptive writer shares a [`Heartbeat`]: when it should be back from its sleep, and
//! whether it is idle now. The watchdog promotes an idle writer whose heartbeat is more than
//! `STARVED` overdue and flags it; the writer takes the flag on its next tick and from then on
//! decides as if it had promoted itself (back to idle after a calm second). A writer is
//! registered while its pacing lives; removing it takes the same lock as a promotion, so the
//! watchdog never acts on a thread that has ended.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use thread_priority::ThreadId;

use super::{set_policy, STARVED};

/// How often the watchdog looks at the writers' heartbeats.
const LOOK_EVERY: Duration = Duration::from_millis(10);

/// What an adaptive writer and the watchdog share.
#[derive(Debug)]
pub struct Heartbeat {
    /// Nanoseconds after [`epoch`] by which the writer should be back from its sleep; its
    /// work after waking counts against it too (set as it goes to sleep).
    due_ns: AtomicU64,
    /// Whether the writer's thread is under `SCHED_IDLE` now.
    idle: AtomicBool,
    /// Set by the watchdog when it promoted the writer; taken by the writer on its next tick.
    pub(super) promoted: AtomicBool,
}

impl Heartbeat {
    /// The writer goes to sleep for `tick`.
    pub fn sleeping_for(&self, tick: Duration) {
        self.due_ns
            .store(nanos(Instant::now() + tick), Ordering::Relaxed);
    }

    /// The writer's policy changed (by its own decision).
    pub fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Relaxed);
    }

    /// Whether the watchdog promoted the writer since it last asked.
    pub fn take_promoted(&self) -> bool {
        self.promoted.swap(false, Ordering::Relaxed)
    }

    /// Whether the writer is idle and its heartbeat more than [`STARVED`] overdue at `now_ns`.
    fn starved(&self, now_ns: u64) -> bool {
        let due = self.due_ns.load(Ordering::Relaxed);
        self.idle.load(Ordering::Relaxed) && now_ns > due.saturating_add(nanos_of(STARVED))
    }
}

struct Watched {
    id: u64,
    name: &'static str,
    thread: ThreadId,
    heartbeat: Arc<Heartbeat>,
}

/// A writer's place on the watchdog's list: removed when dropped (on the writer's own thread,
/// before it ends).
pub struct Registration {
    id: u64,
    pub heartbeat: Arc<Heartbeat>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        watched().lock_list().retain(|w| w.id != self.id);
    }
}

/// Puts the calling writer thread, now idle, on the watchdog's list (starting the watchdog the
/// first time).
pub fn register(name: &'static str, thread: ThreadId) -> Registration {
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);
    let heartbeat = Arc::new(Heartbeat {
        due_ns: AtomicU64::new(nanos(Instant::now())),
        idle: AtomicBool::new(true),
        promoted: AtomicBool::new(false),
    });
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let list = watched();
    list.lock_list().push(Watched {
        id,
        name,
        thread,
        heartbeat: Arc::clone(&heartbeat),
    });
    Registration { id, heartbeat }
}

/// The list of watched writers, and the watchdog thread started with it.
struct List {
    #[expect(
        clippy::disallowed_types,
        reason = "taken by the watchdog every 10 ms and by a writer starting or ending; never by a worker"
    )]
    writers: std::sync::Mutex<Vec<Watched>>,
}

impl List {
    fn lock_list(&self) -> std::sync::MutexGuard<'_, Vec<Watched>> {
        // A panic while holding it leaves a list that is still whole: use it.
        self.writers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Promotes every watched writer that is starved at `now_ns`.
    fn promote_starved(&self, now_ns: u64) {
        for w in self.lock_list().iter() {
            if !w.heartbeat.starved(now_ns) {
                continue;
            }
            match set_policy(w.thread, false) {
                Ok(()) => {
                    w.heartbeat.idle.store(false, Ordering::Relaxed);
                    w.heartbeat.promoted.store(true, Ordering::Relaxed);
                    tracing::debug!(writer = w.name, "starved writer moved to the normal policy");
                }
                Err(error) => {
                    // Should not happen after the probe; the writer still promotes itself.
                    tracing::warn!(writer = w.name, ?error, "cannot promote a starved writer");
                    w.heartbeat.idle.store(false, Ordering::Relaxed);
                }
            }
        }
    }
}

fn watched() -> &'static List {
    static LIST: OnceLock<List> = OnceLock::new();
    LIST.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("sluice-writer-watch".into())
            .spawn(|| loop {
                #[expect(
                    clippy::disallowed_methods,
                    reason = "the watchdog's own thread, not a worker"
                )]
                std::thread::sleep(LOOK_EVERY);
                watched().promote_starved(nanos(Instant::now()));
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no writer watchdog: idle writers promote themselves");
        }
        List {
            writers: Default::default(),
        }
    })
}

/// The instant heartbeats count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos(at: Instant) -> u64 {
    nanos_of(at.saturating_duration_since(epoch()))
}

fn nanos_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
