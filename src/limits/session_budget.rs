//! Budgets per Claude Code session (`X-Claude-Code-Session-Id`). Sessions appear at run time,
//! so unlike key, user and team budgets their counters cannot be laid out when the config is
//! built: each session budget owns a fixed, open-addressed table of [`CAPACITY`] slots (about
//! 32 bytes each), and a session claims a slot on its first request, without a lock.
//!
//! A slot is two words. `tag` holds (generation:8, session hash:56); `state` holds
//! (generation:8, window:12, nanodollars:44). Reserving is one compare-and-swap on `state` that
//! succeeds only if the generation still matches the tag the caller looked up. When the probe
//! window of a new session has no free slot, the least recently used slot in it is recycled:
//! its tag moves to the next generation first, then its state, so a request of the evicted
//! session can neither charge the newcomer nor release what the newcomer reserved (its
//! compare-and-swap and its settle both see the new generation and do nothing). A recycled
//! session starts from zero: memory stays bounded under any number of sessions, and key, user
//! and team budgets remain the hard controls. 44 bits of nanodollars cap a session budget at
//! $17,592.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::budget::{BudgetSpec, Period};

/// Sessions tracked per session budget.
pub const CAPACITY: usize = 1 << 16;
/// Largest session budget the packed counter holds, in USD.
pub const MAX_SESSION_BUDGET_USD: f64 = 17_000.0;

/// Slots looked at for one session before one is recycled.
const PROBE: usize = 32;
const AMOUNT_BITS: u32 = 44;
const AMOUNT_MASK: u64 = (1 << AMOUNT_BITS) - 1;
const WINDOW_MASK: u64 = 0xfff;
const HASH_MASK: u64 = (1 << 56) - 1;

#[derive(Debug, Default)]
struct Slot {
    /// (generation << 56) | session hash; 0 when never used.
    tag: AtomicU64,
    /// (generation << 56) | (window << 44) | nanodollars.
    state: AtomicU64,
    /// Unix seconds of the last reservation: the least recent is recycled first.
    touched: AtomicU64,
    /// 1 + (generation << 12 | window) whose soft threshold was reported crossed.
    warned: AtomicU64,
}

/// The slots and the keyed hash of one session budget; shared across config reloads.
#[derive(Debug)]
pub struct SessionTable {
    slots: Box<[Slot]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for SessionTable {
    fn default() -> Self {
        Self {
            slots: (0..CAPACITY).map(|_| Slot::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

/// One budget that applies to every session separately.
#[derive(Debug, Clone)]
pub struct SessionBudget {
    pub spec: BudgetSpec,
    limit_nano: u64,
    soft_nano: Option<u64>,
    table: Arc<SessionTable>,
}

/// An amount held in one session's slot.
#[derive(Debug)]
pub struct SessionHold {
    slot: usize,
    generation: u64,
    window: u64,
    amount: u64,
}

/// What reserving against a session budget found.
#[derive(Debug)]
pub enum SessionOutcome {
    Held {
        hold: SessionHold,
        /// Spent or reserved before this request.
        used_before: u64,
        /// This reservation is the first to pass the soft threshold in the window.
        crossed_soft: Option<bool>,
    },
    Refused,
}

impl SessionBudget {
    pub fn new(spec: BudgetSpec) -> Self {
        Self {
            spec,
            limit_nano: usd_to_nano(spec.limit_usd),
            soft_nano: spec.soft_usd.map(usd_to_nano),
            table: Arc::default(),
        }
    }

    /// The same budget with another spec, keeping the sessions' counters (config reload).
    pub fn with_table_of(mut self, old: &SessionBudget) -> Self {
        self.table = Arc::clone(&old.table);
        self
    }

    /// Reserves `amount` nanodollars for `session` in the window of `day`.
    pub fn reserve(&self, session: &str, day: i64, amount: u64) -> SessionOutcome {
        let window = window_of(self.spec.period, day);
        loop {
            let (slot, generation) = self.claim(session);
            match self.reserve_in(slot, generation, window, amount) {
                Some(Ok(used)) => {
                    let crossed_soft = self
                        .soft_nano
                        .filter(|soft| used.saturating_add(amount) >= *soft)
                        .map(|_| self.first_warning(slot, generation, window));
                    let hold = SessionHold {
                        slot,
                        generation,
                        window,
                        amount,
                    };
                    return SessionOutcome::Held {
                        hold,
                        used_before: used,
                        crossed_soft,
                    };
                }
                Some(Err(())) => return SessionOutcome::Refused,
                None => continue, // recycled under us: look the session up again
            }
        }
    }

    /// Replaces a hold by the real cost (0 releases it), unless its slot was recycled or its
    /// window has passed.
    pub fn adjust(&self, hold: &SessionHold, actual: u64) {
        let Some(slot) = self.table.slots.get(hold.slot) else {
            return;
        };
        let _ = slot
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                let (g, w, used) = unpack(current);
                (g == hold.generation && w == hold.window).then(|| {
                    pack(
                        g,
                        w,
                        used.saturating_sub(hold.amount)
                            .saturating_add(actual)
                            .min(AMOUNT_MASK),
                    )
                })
            });
    }

    /// Sets a session's spend in the current window (start-up, before any request).
    pub fn load_spent(&self, session: &str, day: i64, nano: u64) {
        let window = window_of(self.spec.period, day);
        let (index, generation) = self.claim(session);
        if let Some(slot) = self.table.slots.get(index) {
            slot.state.store(
                pack(generation, window, nano.min(AMOUNT_MASK)),
                Ordering::Release,
            );
        }
    }

    /// The slot holding `session` (claiming or recycling one) and its generation.
    fn claim(&self, session: &str) -> (usize, u64) {
        let hash = self.hash(session);
        let slots = &self.table.slots;
        let start = (hash as usize) % slots.len();
        let mut oldest: Option<(usize, u64, u64)> = None; // (index, tag, touched)
        for i in (0..PROBE).map(|p| (start + p) % slots.len()) {
            let Some(slot) = slots.get(i) else { continue };
            let tag = slot.tag.load(Ordering::Acquire);
            if tag & HASH_MASK == hash {
                return (i, tag >> 56);
            }
            if tag == 0 {
                match slot
                    .tag
                    .compare_exchange(0, hash, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return (i, 0),
                    Err(seen) if seen & HASH_MASK == hash => return (i, seen >> 56),
                    Err(_) => continue,
                }
            }
            let touched = slot.touched.load(Ordering::Relaxed);
            if oldest.is_none_or(|(_, _, t)| touched < t) {
                oldest = Some((i, tag, touched));
            }
        }
        match oldest {
            Some((i, tag, _)) => self.recycle(i, tag, hash),
            None => self.claim_after_contention(session),
        }
    }

    /// Every probed slot was claimed by others while we looked: try again.
    fn claim_after_contention(&self, session: &str) -> (usize, u64) {
        std::hint::spin_loop();
        self.claim(session)
    }

    /// Gives slot `i` (tagged `old_tag`) to `hash` under the next generation.
    fn recycle(&self, i: usize, old_tag: u64, hash: u64) -> (usize, u64) {
        let Some(slot) = self.table.slots.get(i) else {
            return (i, 0);
        };
        let generation = ((old_tag >> 56) + 1) & 0xff;
        let new_tag = (generation << 56) | hash;
        match slot
            .tag
            .compare_exchange(old_tag, new_tag, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                advance_state(slot, generation);
                (i, generation)
            }
            Err(seen) if seen & HASH_MASK == hash => (i, seen >> 56),
            Err(_) => (i, u64::MAX), // lost the race: the caller's CAS fails and it retries
        }
    }

    /// `Some(Ok(used before))`, `Some(Err(()))` over the limit, `None` when the slot changed
    /// generation (the caller looks the session up again).
    fn reserve_in(
        &self,
        index: usize,
        generation: u64,
        window: u64,
        amount: u64,
    ) -> Option<Result<u64, ()>> {
        let slot = self.table.slots.get(index)?;
        if generation > 0xff {
            return None;
        }
        let mut current = slot.state.load(Ordering::Acquire);
        loop {
            let (g, w, used) = unpack(current);
            if g != generation {
                // The recycler moves the state right after the tag; help it along.
                if slot.tag.load(Ordering::Acquire) >> 56 == generation {
                    advance_state(slot, generation);
                    current = slot.state.load(Ordering::Acquire);
                    continue;
                }
                return None;
            }
            let used = if w == window { used } else { 0 };
            if used >= self.limit_nano || used.saturating_add(amount) > self.limit_nano {
                return Some(Err(()));
            }
            let next = pack(generation, window, used.saturating_add(amount));
            match slot.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    slot.touched.store(now_secs(), Ordering::Relaxed);
                    return Some(Ok(used));
                }
                Err(seen) => current = seen,
            }
        }
    }

    fn first_warning(&self, index: usize, generation: u64, window: u64) -> bool {
        let mark = 1 + ((generation << 12) | window);
        self.table
            .slots
            .get(index)
            .is_some_and(|slot| slot.warned.swap(mark, Ordering::AcqRel) != mark)
    }

    fn hash(&self, session: &str) -> u64 {
        let mut h = self.table.hasher.build_hasher();
        h.write(session.as_bytes());
        // Never 0, so a used tag is never mistaken for a free one.
        (h.finish() & HASH_MASK) | 1
    }

    pub fn limit_nano(&self) -> u64 {
        self.limit_nano
    }
}

/// Moves a slot's state to `generation` with nothing spent, unless it is there already.
fn advance_state(slot: &Slot, generation: u64) {
    let _ = slot
        .state
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
            let (g, _, _) = unpack(current);
            (g != generation).then_some(pack(generation, 0, 0))
        });
    slot.warned.store(0, Ordering::Relaxed);
}

fn window_of(period: Period, day: i64) -> u64 {
    period.window_index(day) & WINDOW_MASK
}

fn pack(generation: u64, window: u64, nano: u64) -> u64 {
    (generation << 56) | ((window & WINDOW_MASK) << AMOUNT_BITS) | nano.min(AMOUNT_MASK)
}

fn unpack(v: u64) -> (u64, u64, u64) {
    (v >> 56, (v >> AMOUNT_BITS) & WINDOW_MASK, v & AMOUNT_MASK)
}

fn usd_to_nano(usd: f64) -> u64 {
    ((usd * 1e9).round().max(0.0) as u64).min(AMOUNT_MASK)
}

fn now_secs() -> u64 {
    crate::runtime::poll_clock::unix_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CENT: u64 = 10_000_000; // nanodollars

    fn budget(limit: f64) -> SessionBudget {
        SessionBudget::new(BudgetSpec {
            limit_usd: limit,
            soft_usd: Some(limit / 2.0),
            period: Period::Daily,
        })
    }

    fn held(outcome: SessionOutcome) -> SessionHold {
        match outcome {
            SessionOutcome::Held { hold, .. } => hold,
            SessionOutcome::Refused => panic!("refused"),
        }
    }

    #[test]
    fn each_session_has_its_own_budget() {
        let b = budget(0.02);
        let day = 20_000;
        let a1 = held(b.reserve("a", day, CENT));
        let _a2 = held(b.reserve("a", day, CENT));
        assert!(matches!(b.reserve("a", day, 1), SessionOutcome::Refused));
        let _b1 = held(b.reserve("b", day, CENT));
        b.adjust(&a1, CENT / 2);
        assert!(matches!(
            b.reserve("a", day, CENT / 2),
            SessionOutcome::Held { .. }
        ));
        assert!(matches!(b.reserve("a", day, 1), SessionOutcome::Refused));
        // A new window starts from zero.
        assert!(matches!(
            b.reserve("a", day + 1, CENT),
            SessionOutcome::Held { .. }
        ));
    }

    #[test]
    fn the_soft_threshold_is_reported_once_per_window() {
        let b = budget(0.04);
        let day = 20_000;
        let first = b.reserve("s", day, CENT);
        assert!(matches!(
            first,
            SessionOutcome::Held {
                crossed_soft: None,
                ..
            }
        ));
        let second = b.reserve("s", day, CENT);
        assert!(matches!(
            second,
            SessionOutcome::Held {
                crossed_soft: Some(true),
                ..
            }
        ));
        let third = b.reserve("s", day, CENT);
        assert!(matches!(
            third,
            SessionOutcome::Held {
                crossed_soft: Some(false),
                ..
            }
        ));
    }

    #[test]
    fn a_recycled_slot_is_not_charged_or_released_by_its_former_session() {
        let b = budget(1.0);
        let day = 20_000;
        let old = held(b.reserve("old", day, CENT));
        let (index, tag) = {
            let i = old.slot;
            (i, b.table.slots[i].tag.load(Ordering::Acquire))
        };
        let newcomer_hash = 0x1234_5678 | 1;
        let (i, generation) = b.recycle(index, tag, newcomer_hash);
        assert_eq!((i, generation), (index, 1));
        let fresh = b.reserve_in(index, generation, window_of(Period::Daily, day), CENT);
        assert_eq!(fresh, Some(Ok(0)));
        // The former session's settle does not touch the newcomer's spend.
        b.adjust(&old, 0);
        let (_, _, used) = unpack(b.table.slots[index].state.load(Ordering::Acquire));
        assert_eq!(used, CENT);
        // And a reservation under the old generation is refused a slot, not charged.
        assert_eq!(
            b.reserve_in(index, 0, window_of(Period::Daily, day), CENT),
            None
        );
    }

    #[test]
    fn many_more_sessions_than_slots_stay_bounded_and_correct() {
        let b = budget(0.01);
        let day = 20_000;
        for n in 0..(CAPACITY * 2) {
            let s = format!("session-{n}");
            assert!(matches!(
                b.reserve(&s, day, CENT),
                SessionOutcome::Held { .. }
            ));
        }
        // The most recent session is still tracked and full.
        let last = format!("session-{}", CAPACITY * 2 - 1);
        assert!(matches!(b.reserve(&last, day, 1), SessionOutcome::Refused));
    }

    #[test]
    fn concurrent_reservations_of_one_session_stay_within_its_limit() {
        let b = budget(0.10);
        let admitted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..4 {
                let b = &b;
                let admitted = &admitted;
                s.spawn(move || {
                    for n in 0..200 {
                        // Other sessions churn the table while "hot" is being charged.
                        let _ = b.reserve(&format!("churn-{t}-{n}"), 20_000, 1);
                        if let SessionOutcome::Held { hold, .. } = b.reserve("hot", 20_000, CENT) {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            b.adjust(&hold, CENT);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 10);
    }
}
