//! Leased budgets: how several nodes share one budget without a network round trip on
//! admission. Redis holds each budget window's bucket — what every node has spent (`spent`) and
//! what each node holds (`h:<node>`, with a deadline). A node reserves against its own lease
//! with one compare-and-swap, as on one node; a renewer thread ([`start`]) reports the node's
//! spend and tops its lease up, in one atomic script that grants
//! `min(wanted, (cap − spent − every holding) / live nodes)`, so the holdings and the spend
//! together never pass the cap. A slice covers `cluster.lease_window` of the bucket's observed
//! burn (at least twice its largest recent reservation); a lease far above that is handed back.
//! A request its lease cannot cover asks the renewer at once and waits for the answer, bounded
//! ([`LEASE_WAIT`]); near the cap the slices shrink to what is left.
//!
//! Each renewal carries the node's sequence number and is retried unchanged until answered, so
//! a retry after a timeout cannot count spend twice. A node that stops renewing (a crash) loses
//! its holding when its deadline passes, and the other nodes can spend it. A node that cannot
//! reach Redis keeps spending its leases for three quarters of the deadline, then follows
//! `cluster.on_redis_failure`: a static share (`cap / nodes` of the window on this node) or
//! refusal; a request its lease cannot cover meanwhile follows it at once instead of waiting. A bucket Redis lost (a restart) starts again from the spend the node last saw,
//! or PostgreSQL's at start-up.
//!
//! Overshoot: with Redis reachable the spend stays within the cap, but for costs above their
//! reservations and, per crashed node, the spend it had not reported (at most its holding);
//! nodes cut off from Redis add at most `cap / nodes` each under `static_share`
//! ([`overshoot_bound`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::cluster::{ClusterSettings, RedisFailure};
use crate::store::connecting::Attempts;

/// How long a request whose lease is short waits for the renewer.
pub const LEASE_WAIT: Duration = Duration::from_secs(1);
/// How often a request waiting for its lease looks again.
pub const LEASE_POLL: Duration = Duration::from_millis(2);
/// How often the renewer looks at every lease when nobody asks.
const TICK: Duration = Duration::from_millis(100);
/// How long one Redis call may take.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

const AMOUNT_BITS: u32 = 48;
const AMOUNT_MASK: u64 = (1 << AMOUNT_BITS) - 1;

fn pack(window: u64, nano: u64) -> u64 {
    ((window & 0xffff) << AMOUNT_BITS) | nano.min(AMOUNT_MASK)
}

fn unpack(v: u64) -> (u64, u64) {
    (v >> AMOUNT_BITS, v & AMOUNT_MASK)
}

/// One budget's lease on this node (lives in the budget's counters, so a reload keeps it).
#[derive(Debug, Default)]
pub struct LeaseCell {
    /// (window, nanodollars this node may still reserve in it).
    headroom: AtomicU64,
    /// (window, nanodollars settled from the lease since the renewer last reported them).
    unreported: AtomicU64,
    /// (window, nanodollars spent from the static share, not yet reported).
    unleased: AtomicU64,
    /// The largest amount a request asked for since the renewer last looked.
    largest: AtomicU64,
    /// The most a request could not get from the lease since the renewer last looked.
    short: AtomicU64,
    /// (window, nanodollars every node has spent or holds, as the store last said).
    cluster_used: AtomicU64,
    /// (window, milliseconds after the terms' epoch) until which the store is known to have
    /// nothing left for a request this lease cannot cover: such a request is refused at once
    /// rather than waiting, and does not ask again.
    exhausted: AtomicU64,
}

/// How long "the store has nothing left" is believed without asking again.
const EXHAUSTED_FOR: Duration = Duration::from_millis(250);

/// What a request whose lease is short should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseWait {
    /// Every lease it needs covers it now: try again.
    Ready,
    /// More was asked of the store: wait.
    Asked,
    /// The store has nothing left for one of them: refuse.
    Exhausted,
    /// The store did not answer the renewer's last calls: follow `on_redis_failure` now
    /// rather than wait.
    Unreachable,
}

impl LeaseWait {
    /// The outcome over several leases: exhausted if any is, ready if all are.
    pub fn and(self, other: LeaseWait) -> LeaseWait {
        match (self, other) {
            (LeaseWait::Unreachable, _) | (_, LeaseWait::Unreachable) => LeaseWait::Unreachable,
            (LeaseWait::Exhausted, _) | (_, LeaseWait::Exhausted) => LeaseWait::Exhausted,
            (LeaseWait::Ready, LeaseWait::Ready) => LeaseWait::Ready,
            _ => LeaseWait::Asked,
        }
    }
}

impl LeaseCell {
    /// Takes `amount` from the lease of `window`, if it holds that much.
    pub fn take(&self, window: u64, amount: u64) -> bool {
        self.largest.fetch_max(amount, Ordering::Relaxed);
        self.headroom
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                let (w, left) = unpack(current);
                (w == window & 0xffff && left >= amount).then(|| pack(w, left - amount))
            })
            .is_ok()
    }

    /// A reservation of `held` in `window` ends having cost `actual`: the difference goes back
    /// to the lease (or comes out of it), and `actual` is spend to report.
    pub fn settle(&self, window: u64, held: u64, actual: u64) {
        let _ = self
            .headroom
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                let (w, left) = unpack(current);
                (w == window & 0xffff).then(|| pack(w, (left + held).saturating_sub(actual)))
            });
        add_spend(&self.unreported, window, actual);
    }

    /// `actual` was spent from the static share (the store was unreachable): it is reported
    /// to the store with the next renewal, outside the node's holding.
    pub fn spent_unleased(&self, window: u64, actual: u64) {
        add_spend(&self.unleased, window, actual);
    }

    /// What the lease of `window` holds now (`None`: it is of another window).
    pub fn headroom(&self, window: u64) -> Option<u64> {
        let (w, left) = unpack(self.headroom.load(Ordering::Acquire));
        (w == window & 0xffff).then_some(left)
    }

    /// What every node spent or holds in `window`, as the store last said (0: not known).
    pub fn cluster_used(&self, window: u64) -> u64 {
        let (w, used) = unpack(self.cluster_used.load(Ordering::Relaxed));
        if w == window & 0xffff {
            used
        } else {
            0
        }
    }

    /// Moves the lease to `window` (emptied) if it is of another; returns what it holds.
    fn open_window(&self, window: u64) -> u64 {
        let mut current = self.headroom.load(Ordering::Acquire);
        loop {
            let (w, left) = unpack(current);
            if w == window & 0xffff {
                return left;
            }
            match self.headroom.compare_exchange(
                current,
                pack(window, 0),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return 0,
                Err(seen) => current = seen,
            }
        }
    }

    /// Takes up to `amount` back out of the lease of `window` (to hand it back); returns how much.
    fn take_back(&self, window: u64, amount: u64) -> u64 {
        let mut taken = 0;
        let _ = self
            .headroom
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                let (w, left) = unpack(current);
                if w != window & 0xffff {
                    return None;
                }
                taken = left.min(amount);
                Some(pack(w, left - taken))
            });
        taken
    }

    /// Adds `amount` to the lease of `window` (opening that window if the lease was of
    /// another): the renewer's grant.
    pub fn grant(&self, window: u64, amount: u64) {
        self.open_window(window);
        let _ = self
            .headroom
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                let (w, left) = unpack(current);
                (w == window & 0xffff).then(|| pack(w, left.saturating_add(amount)))
            });
    }

    /// The spend of `window` not yet reported, from the lease and from the static share
    /// (taken: the caller reports it).
    fn take_unreported(&self, window: u64) -> (u64, u64) {
        let take = |cell: &AtomicU64| {
            let (w, spent) = unpack(cell.swap(pack(window, 0), Ordering::AcqRel));
            if w == window & 0xffff {
                spent
            } else {
                0
            }
        };
        (take(&self.unreported), take(&self.unleased))
    }
}

/// Adds `actual` to the spend of `window` in `cell`; spend from a window already closed is
/// not reported.
fn add_spend(cell: &AtomicU64, window: u64, actual: u64) {
    if actual == 0 {
        return;
    }
    let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
        let (w, spent) = unpack(current);
        // Windows are kept modulo 2¹⁶ (minutes wrap every 45 days): "later" is within half
        // the circle ahead.
        match window.wrapping_sub(w) & 0xffff {
            0 => Some(pack(w, spent.saturating_add(actual))),
            ahead if ahead < 0x8000 => Some(pack(window, actual)),
            _ => None,
        }
    });
}

/// How budgets are spent right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseMode {
    /// From the node's leases (the store answered recently).
    Leases,
    /// The store has not answered past the leases' deadline: `cap / nodes` on this node.
    StaticShare,
    /// The store has not answered past the leases' deadline: refuse.
    Refuse,
}

/// What every budget's lease shares: whether leases may be spent, and how to ask for more.
#[derive(Debug)]
pub struct LeaseTerms {
    pub node: String,
    pub nodes: u32,
    on_failure: RedisFailure,
    /// Milliseconds after `epoch` until which the leases may be spent.
    valid_until_ms: AtomicU64,
    epoch: Instant,
    wake: flume::Sender<()>,
    woken: flume::Receiver<()>,
    /// Redis answered the last call.
    pub redis_up: AtomicBool,
    /// The renewer's last pass failed (false until one has).
    redis_failed: AtomicBool,
    /// Calls made to Redis (store round trips).
    pub redis_calls: AtomicU64,
}

impl LeaseTerms {
    pub fn new(cluster: &ClusterSettings) -> Arc<LeaseTerms> {
        let (wake, woken) = flume::bounded(1);
        Arc::new(LeaseTerms {
            node: cluster.node_id.clone(),
            nodes: cluster.nodes,
            on_failure: cluster.on_redis_failure,
            // From the start requests wait for their first grant (bounded), rather than
            // spending a static share the store would not know of.
            valid_until_ms: AtomicU64::new(cluster.lease_ttl.as_millis() as u64 * 3 / 4),
            epoch: Instant::now(),
            wake,
            woken,
            redis_up: AtomicBool::new(false),
            redis_failed: AtomicBool::new(false),
            redis_calls: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The store answered: leases may be spent for `valid_for` from now.
    pub fn renewed(&self, valid_for: Duration) {
        let until = self.now_ms() + valid_for.as_millis() as u64;
        self.valid_until_ms.store(until, Ordering::Release);
    }

    /// Whether leases may be spent, and if not what to do.
    pub fn mode(&self) -> LeaseMode {
        if self.now_ms() < self.valid_until_ms.load(Ordering::Acquire) {
            return LeaseMode::Leases;
        }
        self.failure_mode()
    }

    /// What `on_redis_failure` says to do without a lease.
    pub fn failure_mode(&self) -> LeaseMode {
        match self.on_failure {
            RedisFailure::StaticShare => LeaseMode::StaticShare,
            RedisFailure::Refuse => LeaseMode::Refuse,
        }
    }

    /// A request needs `amount` of the lease of `window`: ready if it holds that much; else,
    /// unless the store just said it has nothing left, asks the renewer for the difference.
    pub fn ask_for(&self, cell: &LeaseCell, window: u64, amount: u64) -> LeaseWait {
        let left = cell.headroom(window).unwrap_or(0);
        if left >= amount {
            return LeaseWait::Ready;
        }
        if self.redis_failed.load(Ordering::Acquire) {
            return LeaseWait::Unreachable;
        }
        let (w, until) = unpack(cell.exhausted.load(Ordering::Acquire));
        if w == window & 0xffff && self.now_ms() < until {
            return LeaseWait::Exhausted;
        }
        cell.short
            .fetch_max(amount.saturating_sub(left).max(1), Ordering::Relaxed);
        let _ = self.wake.try_send(());
        LeaseWait::Asked
    }
}

/// The bucket script: reports `spent` (once per sequence number), drops holdings past their
/// deadline, and grants from what is left. Returns {grant, spent, others' holdings}.
const RENEW: &str = r"
local b = KEYS[1]
local node = ARGV[1]
if redis.call('HGET', b, 'q:' .. node) == ARGV[2] then
  return {tonumber(redis.call('HGET', b, 'g:' .. node) or '0'), tonumber(redis.call('HGET', b, 'spent') or '0'), 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSETNX', b, 'spent', ARGV[9])
local spent = redis.call('HINCRBY', b, 'spent', ARGV[3])
local others, live = 0, 1
local fields = redis.call('HGETALL', b)
for i = 1, #fields, 2 do
  local f = fields[i]
  if string.sub(f, 1, 2) == 'h:' then
    local n = string.sub(f, 3)
    if n ~= node then
      local deadline = tonumber(redis.call('HGET', b, 't:' .. n) or '0')
      if deadline < now then
        redis.call('HDEL', b, f, 't:' .. n)
      else
        others = others + tonumber(fields[i + 1])
        live = live + 1
      end
    end
  end
end
local base = tonumber(ARGV[4])
local room = tonumber(ARGV[7]) - spent - others - base
if room < 0 then room = 0 end
local grant = math.min(tonumber(ARGV[5]), math.floor(room / live))
local must = math.min(tonumber(ARGV[6]), room)
if must > grant then grant = must end
redis.call('HSET', b, 'h:' .. node, base + grant, 't:' .. node, now + tonumber(ARGV[8]), 'q:' .. node, ARGV[2], 'g:' .. node, grant)
local ttl = tonumber(ARGV[10])
if ttl > 0 then redis.call('EXPIRE', b, ttl) end
return {grant, spent, others}
";

/// One shared bucket in its current window, as the renewer sees it.
pub struct LeasedBucket {
    /// The bucket's name without its window (`budget:team:platform:daily`, `rpm:key:ci`): the
    /// Redis key is `sluice:<name>:<window>`.
    pub name: String,
    pub window: u64,
    /// What every node together may use in the window.
    pub cap: u64,
    /// Seconds Redis keeps the window's bucket after its last renewal (0: for ever).
    pub ttl_secs: u64,
    pub cell: Arc<LeaseCell>,
    /// Where the cluster's spend of this bucket's window is recorded (budgets only): what a
    /// bucket Redis does not have starts from.
    pub spend: Option<SpendKey>,
}

/// A budget's spend in the cluster's records: `scope`/`key` (as the ledger names them) on or
/// after `since` (`YYYY-MM-DD`; empty: all time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendKey {
    pub scope: &'static str,
    pub key: String,
    pub since: String,
}

/// Reads a budget's spend of record, in nanodollars (`None`: it cannot be read now).
pub type SpendSource = Box<dyn FnMut(&SpendKey) -> Option<u64> + Send>;

/// One renewal, kept until Redis answers it (then retried unchanged).
#[derive(Debug, Clone)]
struct Call {
    seq: u64,
    reported: u64,
    base: u64,
    want: u64,
    must: u64,
}

/// What the renewer keeps of one budget's lease in its current window.
#[derive(Debug, Default)]
struct Ledger {
    window: u64,
    /// What Redis records this node as holding.
    held: u64,
    seq: u64,
    pending: Option<Call>,
    /// Units per second, smoothed (kept from one window to the next).
    burn: f64,
    /// The largest amount one request needed lately, decaying (kept across windows).
    largest: u64,
    spent_seen: u64,
    /// The cluster's recorded spend of the window, read before the window's first call.
    seed: Option<u64>,
    last_call: Option<Instant>,
}

/// The renewer's settings.
pub struct Renewer {
    pub terms: Arc<LeaseTerms>,
    pub redis_url: String,
    /// How many seconds of burn a slice covers.
    pub lease_window: Duration,
    /// How long Redis keeps a holding without a renewal.
    pub lease_ttl: Duration,
    /// What the cluster has spent of a budget's window (PostgreSQL), read once per bucket and
    /// window: where a bucket Redis does not have starts.
    pub spent: SpendSource,
}

/// Starts the renewer thread; `buckets` gives the running buckets (a reload changes them).
/// Ends when `stop` is set.
pub fn start(
    renewer: Renewer,
    buckets: impl Fn() -> Vec<LeasedBucket> + Send + 'static,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sluice-leases".into())
        .spawn(move || renewer.run(&buckets, &stop))
}

impl Renewer {
    fn run(mut self, buckets: &dyn Fn() -> Vec<LeasedBucket>, stop: &AtomicBool) {
        let mut books: HashMap<String, Ledger> = HashMap::new();
        let mut conn: Option<redis::Connection> = None;
        let script = redis::Script::new(RENEW);
        let mut reported_down = false;
        while !stop.load(Ordering::Acquire) {
            let _ = self.terms.woken.recv_timeout(TICK);
            let started = Instant::now();
            let mut all_answered = true;
            for bucket in buckets() {
                let book = books.entry(bucket.name.clone()).or_default();
                match self.renew(&mut conn, &script, &bucket, book) {
                    Ok(()) => {}
                    Err(e) => {
                        all_answered = false;
                        conn = None;
                        if !reported_down {
                            tracing::error!(error = %e, "leases: Redis did not answer; spending the leases held");
                            reported_down = true;
                        }
                        break;
                    }
                }
            }
            if all_answered {
                if reported_down {
                    tracing::warn!("leases: Redis answers again");
                    reported_down = false;
                }
                self.terms.redis_up.store(true, Ordering::Relaxed);
                self.terms.redis_failed.store(false, Ordering::Release);
                let valid = self.lease_ttl * 3 / 4;
                self.terms.renewed(valid.saturating_sub(started.elapsed()));
            } else {
                self.terms.redis_up.store(false, Ordering::Relaxed);
                self.terms.redis_failed.store(true, Ordering::Release);
            }
        }
    }

    /// Looks at one bucket's lease and calls Redis when it needs topping up, handing back,
    /// reporting or keeping alive.
    fn renew(
        &mut self,
        conn: &mut Option<redis::Connection>,
        script: &redis::Script,
        bucket: &LeasedBucket,
        book: &mut Ledger,
    ) -> Result<(), redis::RedisError> {
        let window = bucket.window;
        let cell = &*bucket.cell;
        if book.window != window || book.last_call.is_none() {
            if book.window != window {
                *book = Ledger {
                    window,
                    burn: book.burn,
                    largest: book.largest,
                    ..Ledger::default()
                };
            }
            cell.open_window(window);
        }
        let elapsed = book.last_call.map_or(1.0, |t| t.elapsed().as_secs_f64());
        let call = match book.pending.clone() {
            Some(call) => call,
            None => {
                let left = cell.open_window(window);
                let short = cell.short.swap(0, Ordering::Relaxed);
                let seen = cell.largest.swap(0, Ordering::Relaxed).max(short);
                // Halves in about two seconds of looks without a larger request.
                book.largest = seen.max(book.largest - book.largest / 32);
                let window_secs = self.lease_window.as_secs_f64();
                let target = ((book.burn * window_secs) as u64).max(book.largest.saturating_mul(2));
                let want = if left < target / 2 || short > 0 {
                    target.saturating_sub(left).max(short)
                } else {
                    0
                };
                let returned = if left > target.saturating_mul(2) && short == 0 {
                    cell.take_back(window, left - target)
                } else {
                    0
                };
                let keep_alive = book.held > 0
                    && book
                        .last_call
                        .is_none_or(|t| t.elapsed() >= self.lease_ttl / 4);
                // Spend from the lease is reported with the next call, not on its own: the
                // holding already counts it against the cap. Spend from the static share is
                // not in the holding: reported at once.
                let unleased_waiting = unpack(cell.unleased.load(Ordering::Acquire)).1 > 0;
                if want == 0 && returned == 0 && !keep_alive && !unleased_waiting {
                    return Ok(());
                }
                let (unreported, unleased) = cell.take_unreported(window);
                book.burn = 0.7 * book.burn + 0.3 * (unreported as f64 / elapsed.max(0.01));
                book.seq += 1;
                let call = Call {
                    seq: book.seq,
                    reported: unreported + unleased,
                    base: book.held.saturating_sub(unreported + returned),
                    want,
                    must: short,
                };
                book.pending = Some(call.clone());
                call
            }
        };
        let connection = match conn {
            Some(c) => c,
            None => conn.insert(connect(&self.redis_url)?),
        };
        let key = format!("sluice:{}:{window}", bucket.name);
        if book.seed.is_none() {
            book.seed = Some(match &bucket.spend {
                Some(spend) => (self.spent)(spend).unwrap_or(0),
                None => 0,
            });
        }
        let seed = book.seed.unwrap_or(0);
        self.terms.redis_calls.fetch_add(1, Ordering::Relaxed);
        let (grant, spent, others): (u64, u64, u64) = script
            .key(&key)
            .arg(&self.terms.node)
            .arg(call.seq)
            .arg(call.reported)
            .arg(call.base)
            .arg(call.want)
            .arg(call.must)
            .arg(bucket.cap)
            .arg(self.lease_ttl.as_millis() as u64)
            .arg(book.spent_seen.max(seed))
            .arg(bucket.ttl_secs)
            .invoke(connection)?;
        book.pending = None;
        book.held = call.base + grant;
        book.spent_seen = spent;
        book.last_call = Some(Instant::now());
        cell.grant(window, grant);
        if call.must > grant {
            let until = self.terms.now_ms() + EXHAUSTED_FOR.as_millis() as u64;
            cell.exhausted.store(pack(window, until), Ordering::Release);
        } else if grant > 0 {
            cell.exhausted.store(0, Ordering::Release);
        }
        cell.cluster_used
            .store(pack(window, spent + others + book.held), Ordering::Relaxed);
        Ok(())
    }
}

/// Connection attempts to Redis at once (only the renewer connects; more means a server that
/// does not answer).
static ATTEMPTS: Attempts = Attempts::new(4);

/// Connects, bounded by [`REDIS_TIMEOUT`] through the connection's set-up commands (the driver
/// bounds only the TCP connect; see [`crate::store::connecting`]), then each call too.
fn connect(url: &str) -> Result<redis::Connection, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let conn = ATTEMPTS
        .run("sluice-redis-connect", REDIS_TIMEOUT, move || {
            client.get_connection_with_timeout(REDIS_TIMEOUT)
        })
        .map_err(|gave_up| {
            redis::RedisError::from((redis::ErrorKind::IoError, "Redis", gave_up.to_string()))
        })??;
    conn.set_read_timeout(Some(REDIS_TIMEOUT))?;
    conn.set_write_timeout(Some(REDIS_TIMEOUT))?;
    Ok(conn)
}

/// The most a budget of `cap` can be overspent in a cluster of `nodes`, as
/// (with Redis reachable, per crashed node; per node cut off from Redis under `static_share`):
/// a crashed node can leave at most one slice unreported — at most `cap / nodes` unless one
/// reservation needed more — and a node cut off spends at most `cap / nodes`.
pub fn overshoot_bound(cap_usd: f64, nodes: u32) -> (f64, f64) {
    let share = cap_usd / f64::from(nodes.max(1));
    (share, share)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    /// A Redis that takes the connection and never answers (hung, or another listener on its
    /// port): connecting gives up within the bound instead of holding the renewer for good.
    #[test]
    fn connecting_to_a_redis_that_never_answers_gives_up() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://127.0.0.1:{}/", silent.local_addr().unwrap().port());
        let started = std::time::Instant::now();
        assert!(connect(&url).is_err());
        assert!(
            started.elapsed() < REDIS_TIMEOUT * 4,
            "{:?}",
            started.elapsed()
        );
    }
}
