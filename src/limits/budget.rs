//! Budgets in USD per key, user and team, each with a period (daily, weekly, monthly or total,
//! in UTC; weeks start on Monday), a hard limit and an optional soft threshold.
//!
//! Admission **reserves** the request's maximum cost; when the usage is known the reservation
//! is **settled** to the real cost, and a request that fails releases it (dropping an unsettled
//! [`Reservation`] does that). Each budget is one `AtomicU64` packing (period window, nanodollars
//! used or reserved), changed by compare-and-swap, so under any concurrency the reserved plus
//! spent amount never passes the limit: spend can exceed a budget only by what a request cost
//! beyond its reservation. Windows roll over in the same CAS. 48 bits of nanodollars cap a
//! budget at $281,474 (checked when the config is built).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use smallvec::SmallVec;

use super::lease::{LeaseCell, LeaseMode, LeaseTerms, LeaseWait, LeasedBucket, SpendKey};
use super::session_budget::{SessionBudget, SessionHold, SessionOutcome};
use super::Scope;

/// Largest budget the packed counter holds, in USD.
pub const MAX_BUDGET_USD: f64 = 281_000.0;

const AMOUNT_BITS: u32 = 48;
const AMOUNT_MASK: u64 = (1 << AMOUNT_BITS) - 1;

/// How often a budget starts again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
    Total,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "daily" => Some(Period::Daily),
            "weekly" => Some(Period::Weekly),
            "monthly" => Some(Period::Monthly),
            "total" => Some(Period::Total),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Total => "total",
        }
    }

    /// The window `day` (days since 1970-01-01) falls in.
    pub(crate) fn window(self, day: i64) -> u64 {
        self.window_index(day) & 0xffff
    }

    /// The window's number: days, weeks or months since 1970 (0 for a total budget).
    pub(crate) fn window_index(self, day: i64) -> u64 {
        let w = match self {
            Period::Daily => day,
            // 1970-01-01 was a Thursday: shift so windows start on Mondays.
            Period::Weekly => (day + 3).div_euclid(7),
            Period::Monthly => {
                let (y, m, _) = civil_from_days(day);
                y * 12 + i64::from(m) - 1
            }
            Period::Total => 0,
        };
        w.max(0) as u64
    }

    /// The first day of `day`'s window.
    pub fn first_day(self, day: i64) -> i64 {
        match self {
            Period::Daily => day,
            Period::Weekly => day - (day + 3).rem_euclid(7),
            Period::Monthly => {
                let (y, m, _) = civil_from_days(day);
                days_from_civil(y, m, 1)
            }
            Period::Total => i64::MIN,
        }
    }

    /// The first day of the next window, or `None` for a total budget.
    pub fn next_reset_day(self, day: i64) -> Option<i64> {
        match self {
            Period::Daily => Some(day + 1),
            Period::Weekly => Some(self.first_day(day) + 7),
            Period::Monthly => {
                let (y, m, _) = civil_from_days(day);
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                Some(days_from_civil(y, m, 1))
            }
            Period::Total => None,
        }
    }
}

/// One budget.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetSpec {
    pub limit_usd: f64,
    pub soft_usd: Option<f64>,
    pub period: Period,
}

#[derive(Debug, Clone)]
struct Slot {
    scope: Scope,
    name: String,
    spec: BudgetSpec,
    limit_nano: u64,
    soft_nano: Option<u64>,
    /// The counters, shared with the same budget of the next config after a reload.
    cell: Arc<Cell>,
}

#[derive(Debug, Default)]
struct Cell {
    /// (window << 48) | nanodollars spent or reserved in it.
    state: AtomicU64,
    /// 1 + the last window whose soft threshold was reported crossed (0: none yet).
    warned_window: AtomicU64,
    /// In a cluster: this node's lease on the shared budget.
    lease: Arc<LeaseCell>,
}

/// Every budget of the node.
#[derive(Debug, Default, Clone)]
pub struct Budgets {
    index: super::ByScope<Vec<usize>>,
    slots: Vec<Slot>,
    sessions: Vec<SessionBudget>,
    /// In a cluster: key, user and team budgets are spent from leases on the shared buckets.
    lease: Option<Arc<LeaseTerms>>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRefusal {
    /// e.g. `daily budget of $5.00 for team platform (resets 2026-11-24T00:00:00Z)`.
    pub which: String,
    /// Whole seconds until the budget resets; `None` for a total budget.
    pub retry_after: Option<u64>,
    /// The budget that refused, as the caller's usage notice shows it.
    pub standing: Standing,
    /// In a cluster: this node's lease had too little left, and more was asked of the store —
    /// worth waiting for ([`Budgets::lease_headroom`]) and trying once more.
    pub awaiting_lease: bool,
}

/// Where one budget stands for a caller: what Claude Code's usage notice and `/usage` show.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    pub period: Period,
    /// A team's budget, shared by everyone in the team (a group pool).
    pub shared: bool,
    pub limit_nano: u64,
    /// Spent or reserved by other requests.
    pub used_nano: u64,
    /// No request fits any more.
    pub exceeded: bool,
    /// Unix seconds at which the window ends; `None` for a total budget.
    pub resets_at: Option<u64>,
}

impl Standing {
    /// Used over limit (1 for a zero limit).
    pub fn utilization(&self) -> f64 {
        if self.limit_nano == 0 {
            1.0
        } else {
            self.used_nano as f64 / self.limit_nano as f64
        }
    }

    /// Of two budgets, the one the caller runs into: an exhausted one before one that is not;
    /// of two exhausted, the one that resets later; else the more used.
    pub fn binding(self, other: Standing) -> Standing {
        if self.exceeded != other.exceeded {
            return if self.exceeded { self } else { other };
        }
        if self.exceeded {
            let later = |s: &Standing| s.resets_at.unwrap_or(u64::MAX);
            return if later(&self) >= later(&other) {
                self
            } else {
                other
            };
        }
        if self.utilization() >= other.utilization() {
            self
        } else {
            other
        }
    }

    fn of(slot: &Slot, used_nano: u64, exceeded: bool, day: i64) -> Standing {
        Standing {
            period: slot.spec.period,
            shared: slot.scope == Scope::Team,
            limit_nano: slot.limit_nano,
            // In a cluster, what every node spent as the store last told (when it is more).
            used_nano: used_nano.max(slot.cell.lease.cluster_used(slot.spec.period.window(day))),
            exceeded,
            resets_at: reset_secs(slot.spec.period, day),
        }
    }
}

/// Unix seconds at which the window holding `day` ends.
fn reset_secs(period: Period, day: i64) -> Option<u64> {
    period
        .next_reset_day(day)
        .map(|reset| reset.max(0) as u64 * 86_400)
}

/// A soft threshold this request may take the spend past (spent + reserved + its own reservation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetWarning {
    pub which: String,
    /// The first such request in the window.
    pub crossed: bool,
}

/// The shared bucket of one budget (without its window).
fn bucket_name(scope: Scope, name: &str, period: Period) -> String {
    format!("budget:{}:{name}:{}", scope.label(), period.label())
}

/// Seconds the store keeps a budget window's bucket after its last renewal (0: for ever).
fn bucket_ttl(period: Period) -> u64 {
    const DAY: u64 = 86_400;
    match period {
        Period::Daily => 2 * DAY,
        Period::Weekly => 8 * DAY,
        Period::Monthly => 32 * DAY,
        Period::Total => 0,
    }
}

/// What a held amount was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paid {
    /// The budget's limit, on one node.
    Limit,
    /// The node's lease on the cluster's bucket.
    Lease,
    /// The node's static share while the cluster's store is unreachable (reported to it later).
    Share,
}

/// Amounts held against budgets for one request.
#[derive(Debug)]
pub struct Reservation {
    budgets: Arc<Budgets>,
    /// (slot, window, nanodollars held, what paid for it)
    /// Inline: a request's key, user and team budgets need no allocation.
    held: SmallVec<[(usize, u64, u64, Paid); 3]>,
    /// (session budget, hold)
    session_held: Vec<(usize, SessionHold)>,
    pub warnings: Vec<BudgetWarning>,
    /// The key, user or team budget that binds the caller, before this request.
    pub standing: Option<Standing>,
}

impl Budgets {
    /// Adds a budget (config build time only).
    pub fn add(&mut self, scope: Scope, name: &str, spec: BudgetSpec) {
        self.index
            .entry_or_default(scope, name)
            .push(self.slots.len());
        self.slots.push(Slot {
            scope,
            name: name.to_string(),
            spec,
            limit_nano: usd_to_nano(spec.limit_usd),
            soft_nano: spec.soft_usd.map(usd_to_nano),
            cell: Arc::default(),
        });
    }

    /// Adds a budget that applies to every Claude Code session separately (config build time).
    pub fn add_session(&mut self, spec: BudgetSpec) {
        self.sessions.push(SessionBudget::new(spec));
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.sessions.is_empty()
    }

    /// Every budget as `(scope, name, period)`, for loading spend at start-up.
    pub fn each(&self) -> impl Iterator<Item = (Scope, &str, Period)> + '_ {
        self.slots
            .iter()
            .map(|s| (s.scope, s.name.as_str(), s.spec.period))
    }

    /// The per-session budgets' periods, for loading spend at start-up.
    pub fn session_periods(&self) -> impl Iterator<Item = Period> + '_ {
        self.sessions.iter().map(|s| s.spec.period)
    }

    /// Every key, user and team budget with what is spent or reserved in its current window,
    /// in USD, for the admin API.
    pub fn usage(&self) -> impl Iterator<Item = (Scope, &str, BudgetSpec, f64)> + '_ {
        let day = today();
        self.slots.iter().map(move |s| {
            let (w, used) = unpack(s.cell.state.load(Ordering::Acquire));
            let used = if w == s.spec.period.window(day) {
                used
            } else {
                0
            };
            (s.scope, s.name.as_str(), s.spec, used as f64 / 1e9)
        })
    }

    /// Where each key, user and team budget of the named entities stands now.
    pub fn standings(&self, entities: &[(Scope, Option<&str>)]) -> Vec<Standing> {
        let day = today();
        entities
            .iter()
            .filter_map(|(scope, name)| name.map(|n| self.slots_of(*scope, n)))
            .flatten()
            .map(|slot| {
                let (w, used) = unpack(slot.cell.state.load(Ordering::Acquire));
                let used = if w == slot.spec.period.window(day) {
                    used
                } else {
                    0
                };
                Standing::of(slot, used, used >= slot.limit_nano, day)
            })
            .collect()
    }

    /// Takes over the counters of the same budgets (scope, name, period) in `old`, so a reload
    /// neither forgets spend nor double-counts what is in flight. Returns the budgets that are
    /// new (their spend is to be loaded from the ledger) and whether any session budget is new.
    pub fn adopt(&mut self, old: &Budgets) -> (Vec<(Scope, String, Period)>, Vec<Period>) {
        let mut fresh = Vec::new();
        for slot in &mut self.slots {
            let same = old.slots.iter().find(|o| {
                o.scope == slot.scope && o.name == slot.name && o.spec.period == slot.spec.period
            });
            match same {
                Some(o) => slot.cell = Arc::clone(&o.cell),
                None => fresh.push((slot.scope, slot.name.clone(), slot.spec.period)),
            }
        }
        let mut fresh_sessions = Vec::new();
        for session in &mut self.sessions {
            match old
                .sessions
                .iter()
                .find(|o| o.spec.period == session.spec.period)
            {
                Some(o) => *session = session.clone().with_table_of(o),
                None => fresh_sessions.push(session.spec.period),
            }
        }
        (fresh, fresh_sessions)
    }

    /// Sets one session's spend in the current window of the session budgets of `period`.
    pub fn load_session_spent(&self, period: Period, session: &str, spent_pico: u64) {
        for budget in self.sessions.iter().filter(|b| b.spec.period == period) {
            budget.load_spent(session, today(), pico_to_nano(spent_pico));
        }
    }

    /// Sets the spend already recorded in the current window (start-up, before any request).
    pub fn load_spent(&self, scope: Scope, name: &str, period: Period, spent_pico: u64) {
        let window = period.window(today());
        for slot in self
            .slots_of(scope, name)
            .filter(|s| s.spec.period == period)
        {
            let nano = pico_to_nano(spent_pico).min(AMOUNT_MASK);
            slot.cell.state.store(pack(window, nano), Ordering::Release);
        }
    }

    fn slots_of<'s>(&'s self, scope: Scope, name: &str) -> impl Iterator<Item = &'s Slot> + 's {
        self.index
            .get(scope, name)
            .into_iter()
            .flatten()
            .filter_map(|i| self.slots.get(*i))
    }

    /// Reserves `cost_pico` against every budget of the named entities and of the session, or
    /// none of them.
    pub fn reserve(
        self: &Arc<Self>,
        entities: &[(Scope, Option<&str>)],
        session: Option<&str>,
        cost_pico: u64,
    ) -> Result<Reservation, BudgetRefusal> {
        let day = today();
        let amount = pico_to_nano(cost_pico);
        let mut reservation = Reservation {
            budgets: Arc::clone(self),
            held: SmallVec::new(),
            session_held: Vec::new(),
            warnings: Vec::new(),
            standing: None,
        };
        if let Some(session) = session {
            self.reserve_session(&mut reservation, session, day, amount)?;
        }
        let indices = entities
            .iter()
            .filter_map(|(scope, name)| name.and_then(|n| self.index.get(*scope, n)));
        for i in indices.flatten().copied() {
            let Some(slot) = self.slots.get(i) else {
                continue;
            };
            let window = slot.spec.period.window(day);
            let (used, paid) = self.reserve_slot(slot, window, amount, day)?;
            reservation.held.push((i, window, amount, paid));
            let standing = Standing::of(slot, used, false, day);
            reservation.standing = Some(match reservation.standing {
                Some(other) => other.binding(standing),
                None => standing,
            });
            if slot
                .soft_nano
                .is_some_and(|soft| used.saturating_add(amount) >= soft)
            {
                let first =
                    slot.cell.warned_window.swap(window + 1, Ordering::AcqRel) != window + 1;
                reservation.warnings.push(BudgetWarning {
                    which: describe(slot, day),
                    crossed: first,
                });
            }
        }
        Ok(reservation)
    }

    /// Holds `amount` in one key, user or team budget: against its limit on one node; in a
    /// cluster against the node's lease while it is valid, else as `on_redis_failure` says.
    /// Returns what was used before and what paid.
    fn reserve_slot(
        &self,
        slot: &Slot,
        window: u64,
        amount: u64,
        day: i64,
    ) -> Result<(u64, Paid), BudgetRefusal> {
        let Some(terms) = &self.lease else {
            let used = reserve_in(slot, window, amount, slot.limit_nano)
                .map_err(|()| refusal(slot, day))?;
            return Ok((used, Paid::Limit));
        };
        let mode = match terms.mode() {
            LeaseMode::Leases if slot.cell.lease.take(window, amount) => {
                let used = reserve_in(slot, window, amount, AMOUNT_MASK)
                    .map_err(|()| refusal(slot, day))?;
                return Ok((used, Paid::Lease));
            }
            LeaseMode::Leases => match terms.ask_for(&slot.cell.lease, window, amount) {
                LeaseWait::Unreachable => terms.failure_mode(),
                wait => {
                    let mut refused = refusal(slot, day);
                    refused.awaiting_lease = wait != LeaseWait::Exhausted;
                    return Err(refused);
                }
            },
            mode => mode,
        };
        if mode == LeaseMode::StaticShare {
            let share = slot.limit_nano / u64::from(terms.nodes.max(1));
            let used = reserve_in(slot, window, amount, share).map_err(|()| refusal(slot, day))?;
            return Ok((used, Paid::Share));
        }
        let mut refused = refusal(slot, day);
        refused.which = format!("{} (the shared budget store is unreachable)", refused.which);
        Err(refused)
    }

    /// Spends key, user and team budgets from leases on the cluster's shared buckets.
    pub fn lease_with(&mut self, terms: Arc<LeaseTerms>) {
        self.lease = Some(terms);
    }

    /// The lease terms, in a cluster.
    pub fn lease_terms(&self) -> Option<&Arc<LeaseTerms>> {
        self.lease.as_ref()
    }

    /// Whether every key, user and team budget of the named entities now has at least
    /// `cost_pico` left in its lease (what a refused request waits for); asks the renewer for
    /// each that has not.
    pub fn lease_headroom(&self, entities: &[(Scope, Option<&str>)], cost_pico: u64) -> LeaseWait {
        let Some(terms) = &self.lease else {
            return LeaseWait::Ready;
        };
        let (day, amount) = (today(), pico_to_nano(cost_pico));
        entities
            .iter()
            .filter_map(|(scope, name)| name.map(|n| self.slots_of(*scope, n)))
            .flatten()
            .fold(LeaseWait::Ready, |wait, slot| {
                let window = slot.spec.period.window(day);
                wait.and(terms.ask_for(&slot.cell.lease, window, amount))
            })
    }

    /// Every key, user and team budget's bucket in its current window, as the lease renewer
    /// sees it (named `budget:<scope>:<name>:<period>`).
    pub fn leased(&self) -> Vec<LeasedBucket> {
        let day = today();
        self.slots
            .iter()
            .map(|s| LeasedBucket {
                name: bucket_name(s.scope, &s.name, s.spec.period),
                window: s.spec.period.window(day),
                cap: s.limit_nano,
                ttl_secs: bucket_ttl(s.spec.period),
                cell: Arc::clone(&s.cell.lease),
                spend: Some(SpendKey {
                    scope: s.scope.label(),
                    key: match s.scope {
                        Scope::Key => format!("key:{}", s.name),
                        _ => s.name.clone(),
                    },
                    since: match s.spec.period {
                        Period::Total => String::new(),
                        period => day_string(period.first_day(day)),
                    },
                }),
            })
            .collect()
    }

    fn reserve_session(
        &self,
        reservation: &mut Reservation,
        session: &str,
        day: i64,
        amount: u64,
    ) -> Result<(), BudgetRefusal> {
        for (i, budget) in self.sessions.iter().enumerate() {
            match budget.reserve(session, day, amount) {
                SessionOutcome::Held {
                    hold, crossed_soft, ..
                } => {
                    reservation.session_held.push((i, hold));
                    if let Some(crossed) = crossed_soft {
                        reservation.warnings.push(BudgetWarning {
                            which: describe_spec(&budget.spec, "session", session, day),
                            crossed,
                        });
                    }
                }
                SessionOutcome::Refused => {
                    return Err(refusal_of(&budget.spec, "session", session, day));
                }
            }
        }
        Ok(())
    }
}

impl Reservation {
    /// Replaces the held amounts by the real cost.
    /// Whether any budget (key, user, team or session) holds part of this reservation.
    pub fn applies(&self) -> bool {
        !self.held.is_empty() || !self.session_held.is_empty()
    }

    pub fn settle(mut self, cost_pico: u64) {
        self.adjust_all(pico_to_nano(cost_pico));
    }

    fn adjust_all(&mut self, actual: u64) {
        for (i, window, held, paid) in std::mem::take(&mut self.held) {
            if let Some(slot) = self.budgets.slots.get(i) {
                adjust(slot, window, held, actual);
                match paid {
                    Paid::Limit => {}
                    Paid::Lease => slot.cell.lease.settle(window, held, actual),
                    Paid::Share => slot.cell.lease.spent_unleased(window, actual),
                }
            }
        }
        for (i, hold) in std::mem::take(&mut self.session_held) {
            if let Some(budget) = self.budgets.sessions.get(i) {
                budget.adjust(&hold, actual);
            }
        }
    }
}

impl Reservation {
    /// Keeps the held amounts as spent (the real cost is unknown).
    pub fn keep(mut self) {
        for (i, window, held, paid) in std::mem::take(&mut self.held) {
            match (self.budgets.slots.get(i), paid) {
                (Some(slot), Paid::Lease) => slot.cell.lease.settle(window, held, held),
                (Some(slot), Paid::Share) => slot.cell.lease.spent_unleased(window, held),
                _ => {}
            }
        }
        self.session_held.clear();
    }
}

impl Drop for Reservation {
    /// An unsettled reservation (the request failed) is released.
    fn drop(&mut self) {
        self.adjust_all(0);
    }
}

/// Adds `amount` to the slot's window unless that passes `limit`; returns what was used before.
fn reserve_in(slot: &Slot, window: u64, amount: u64, limit: u64) -> Result<u64, ()> {
    let mut current = slot.cell.state.load(Ordering::Acquire);
    loop {
        let (w, used) = unpack(current);
        let used = if w == window { used } else { 0 };
        if used >= limit || used.saturating_add(amount) > limit {
            return Err(());
        }
        let next = pack(window, used.saturating_add(amount));
        match slot.cell.state.compare_exchange_weak(
            current,
            next,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return Ok(used),
            Err(seen) => current = seen,
        }
    }
}

/// Swaps `held` for `actual` in the slot, if its window has not moved on.
fn adjust(slot: &Slot, window: u64, held: u64, actual: u64) {
    let _ = slot
        .cell
        .state
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
            let (w, used) = unpack(current);
            (w == window).then(|| pack(w, used.saturating_sub(held).saturating_add(actual)))
        });
}

fn refusal(slot: &Slot, day: i64) -> BudgetRefusal {
    let mut refusal = refusal_of(&slot.spec, slot.scope.label(), &slot.name, day);
    refusal.standing.shared = slot.scope == Scope::Team;
    refusal
}

fn refusal_of(spec: &BudgetSpec, scope: &str, name: &str, day: i64) -> BudgetRefusal {
    let resets_at = reset_secs(spec.period, day);
    let retry_after = resets_at.map(|reset| {
        reset
            .saturating_sub(crate::runtime::poll_clock::unix_secs())
            .max(1)
    });
    let limit_nano = usd_to_nano(spec.limit_usd);
    BudgetRefusal {
        awaiting_lease: false,
        which: describe_spec(spec, scope, name, day),
        retry_after,
        standing: Standing {
            period: spec.period,
            shared: false,
            limit_nano,
            used_nano: limit_nano,
            exceeded: true,
            resets_at,
        },
    }
}

fn describe(slot: &Slot, day: i64) -> String {
    describe_spec(&slot.spec, slot.scope.label(), &slot.name, day)
}

/// `daily budget of $5.00 for team platform (resets 2026-11-24T00:00:00Z)`
fn describe_spec(spec: &BudgetSpec, scope: &str, name: &str, day: i64) -> String {
    let reset = match spec.period.next_reset_day(day) {
        Some(reset) => {
            let t = UNIX_EPOCH + std::time::Duration::from_secs(reset.max(0) as u64 * 86_400);
            format!("resets {}", humantime::format_rfc3339_seconds(t))
        }
        None => "does not reset".to_string(),
    };
    let limit = spec.limit_usd;
    let amount = if limit >= 1.0 {
        format!("{limit:.2}")
    } else {
        format!("{limit}")
    };
    format!(
        "{} budget of ${amount} for {scope} {name} ({reset})",
        spec.period.label(),
    )
}

pub(crate) fn usd_to_nano(usd: f64) -> u64 {
    ((usd * 1e9).round().max(0.0) as u64).min(AMOUNT_MASK)
}

/// Rounded up, so a reservation or a cost is never smaller than its picodollars.
pub(crate) fn pico_to_nano(pico: u64) -> u64 {
    pico.div_ceil(1000)
}

fn pack(window: u64, nano: u64) -> u64 {
    (window << AMOUNT_BITS) | nano.min(AMOUNT_MASK)
}

fn unpack(v: u64) -> (u64, u64) {
    (v >> AMOUNT_BITS, v & AMOUNT_MASK)
}

/// Days since 1970-01-01, UTC.
pub fn today() -> i64 {
    (crate::runtime::poll_clock::unix_secs() / 86_400) as i64
}

/// `YYYY-MM-DD` of a day number (the ledger's `totals.day`).
pub fn day_string(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// (year, month, day) of a day number (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The day number of (year, month, day).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(limit: f64, soft: Option<f64>) -> Arc<Budgets> {
        let mut b = Budgets::default();
        b.add(
            Scope::Team,
            "t1",
            BudgetSpec {
                limit_usd: limit,
                soft_usd: soft,
                period: Period::Daily,
            },
        );
        Arc::new(b)
    }

    const TEAM: [(Scope, Option<&str>); 1] = [(Scope::Team, Some("t1"))];
    const ONE_CENT: u64 = 10_000_000_000;

    #[test]
    fn reservations_never_pass_the_limit_and_settle_or_release() {
        let b = budgets(0.05, None);
        let held: Vec<_> = (0..5)
            .map(|_| b.reserve(&TEAM, None, ONE_CENT).unwrap())
            .collect();
        let refused = b.reserve(&TEAM, None, ONE_CENT).unwrap_err();
        assert!(refused
            .which
            .starts_with("daily budget of $0.05 for team t1 (resets "));
        assert!(refused.retry_after.is_some_and(|s| s <= 86_400));
        let mut held = held.into_iter();
        held.next().unwrap().settle(ONE_CENT / 2); // half a cent back
        drop(held.next()); // released entirely
        assert!(b.reserve(&TEAM, None, ONE_CENT).is_ok()); // dropped at once: released
        let r = b.reserve(&TEAM, None, ONE_CENT + ONE_CENT / 2).unwrap();
        assert!(b.reserve(&TEAM, None, 1).is_err());
        drop(r);
    }

    #[test]
    fn the_soft_threshold_warns_once_crossed() {
        let b = budgets(1.0, Some(0.02));
        let first = b.reserve(&TEAM, None, ONE_CENT).unwrap();
        assert!(first.warnings.is_empty());
        first.settle(ONE_CENT);
        let second = b.reserve(&TEAM, None, ONE_CENT).unwrap();
        assert_eq!(second.warnings.len(), 1);
        assert!(second.warnings[0].crossed);
        second.settle(ONE_CENT);
        let third = b.reserve(&TEAM, None, ONE_CENT).unwrap();
        assert!(!third.warnings[0].crossed);
    }

    #[test]
    fn concurrent_reservations_stay_within_the_limit() {
        let b = budgets(0.10, None);
        let admitted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if let Ok(r) = b.reserve(&TEAM, None, ONE_CENT) {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            r.settle(ONE_CENT);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn calendar_windows() {
        let d = days_from_civil(2026, 11, 23); // a Monday
        assert_eq!(civil_from_days(d), (2026, 11, 23));
        assert_eq!(Period::Weekly.first_day(d), d);
        assert_eq!(Period::Weekly.first_day(d + 6), d);
        assert_eq!(Period::Weekly.next_reset_day(d + 6), Some(d + 7));
        assert_eq!(Period::Monthly.first_day(d), days_from_civil(2026, 11, 1));
        assert_eq!(
            Period::Monthly.next_reset_day(days_from_civil(2026, 12, 31)),
            Some(days_from_civil(2027, 1, 1))
        );
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_ne!(Period::Monthly.window(d), Period::Monthly.window(d + 8));
    }
}
