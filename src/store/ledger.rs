//! The spend ledger: one row per request in SQLite (WAL), plus running per-day totals by key,
//! user, team, Claude Code session and model, written by a store thread. The recorder hands it
//! records in batches (one channel message per drain, the queue bounded in records, never a
//! wait); the thread drains the queue every `commit_interval` and commits what it took in one
//! transaction (group commit), so the hot path never waits on disk and a committed record
//! survives `kill -9` (WAL: the OS holds every committed page). The durability window is
//! therefore the commit interval plus the time a batch takes to commit. If the queue is full or
//! a commit fails, `healthy` drops and the gateway follows `store.on_failure` (serve anyway, or
//! refuse new requests); a failed batch is kept and retried, never dropped.
//!
//! With `store.durability = "sync"` a forwarded response's last byte is held until its record is
//! committed with `synchronous = FULL` (fsync): the store thread then waits on the queue rather
//! than a timer, commits whatever has gathered (group commit still applies under load) and
//! acknowledges each record. That trades a commit per burst for a window of zero.
//!
//! The interface is narrow on purpose — records in, totals out — so PostgreSQL (ledger) and
//! Redis (shared counters) can come in as further backends.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection};

use crate::record::AccessRecord;
use crate::runtime::writer_priority::{WriterPacing, WriterPriority};
use crate::timestamp::Rfc3339Micros;

/// Records queued at most before the ledger counts as behind.
const QUEUE: usize = 65_536;

/// `request_id` is not a key: a unique index cost a quarter of each insert (criterion
/// `records` bench), and nothing can store a request twice — a batch is one transaction, so a
/// retried batch was never partly stored. (Ledgers created with `request_id TEXT PRIMARY KEY`
/// keep it; `INSERT OR IGNORE` below serves both.)
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT NOT NULL,
    time TEXT NOT NULL,
    day TEXT NOT NULL,
    identity TEXT NOT NULL,
    user TEXT, team TEXT,
    session_id TEXT, agent_id TEXT, parent_agent_id TEXT,
    format TEXT NOT NULL, operation TEXT NOT NULL,
    model TEXT, upstream_model TEXT, upstream TEXT,
    status INTEGER NOT NULL, error TEXT,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cache_creation_input_tokens INTEGER NOT NULL, cache_read_input_tokens INTEGER NOT NULL,
    cost_pico INTEGER NOT NULL,
    total_us INTEGER NOT NULL, ttfb_us INTEGER, attempts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS managed_settings_seen (
    identity TEXT NOT NULL, user TEXT, checksum TEXT NOT NULL, last_seen TEXT NOT NULL,
    PRIMARY KEY (identity, checksum)
);
CREATE TABLE IF NOT EXISTS totals (
    scope TEXT NOT NULL, key TEXT NOT NULL, day TEXT NOT NULL,
    requests INTEGER NOT NULL, cost_pico INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    PRIMARY KEY (scope, key, day)
);
";

/// Queued records, in the order they finished, and who waits for their commit (sync
/// durability only).
struct Queued {
    records: Vec<AccessRecord>,
    ack: Option<flume::Sender<()>>,
}

pub use crate::config::Durability;

/// The workers' handle on the ledger.
#[derive(Clone)]
pub struct Ledger {
    tx: Option<flume::Sender<Queued>>,
    /// Records in the channel, bounded by [`QUEUE`].
    queued: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
}

/// Why the ledger could not start.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot open the ledger {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("cannot start the ledger thread: {0}")]
    Thread(std::io::Error),
}

impl Ledger {
    /// A ledger that records nothing (`store.path = "off"`).
    pub fn off() -> Self {
        Self {
            tx: None,
            queued: Arc::new(AtomicUsize::new(0)),
            healthy: Arc::new(AtomicBool::new(true)),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues records, in the order given; never blocks. Past the queue's bound they are
    /// dropped, counted, and the ledger is marked unhealthy.
    pub fn record_all(&self, records: Vec<AccessRecord>) {
        if !records.is_empty() {
            self.enqueue(Queued { records, ack: None });
        }
    }

    /// Queues a record and returns what resolves once it is committed (`None`: the ledger is
    /// off or its queue is full).
    pub fn record_and_wait(&self, record: &AccessRecord) -> Option<flume::Receiver<()>> {
        let (tx, rx) = flume::bounded(1);
        self.enqueue(Queued {
            records: vec![record.clone()],
            ack: Some(tx),
        })
        .then_some(rx)
    }

    /// Whether records are being stored at all.
    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    /// `n` records meant for the ledger were dropped before they reached its queue: counted,
    /// and the ledger is unhealthy until its next commit.
    pub fn missed(&self, n: usize) {
        if n == 0 || self.tx.is_none() {
            return;
        }
        self.healthy.store(false, Ordering::Relaxed);
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn enqueue(&self, queued: Queued) -> bool {
        let Some(tx) = &self.tx else { return false };
        let n = queued.records.len();
        let waiting = self.queued.fetch_add(n, Ordering::Relaxed);
        if waiting + n <= QUEUE && tx.send(queued).is_ok() {
            return true;
        }
        self.queued.fetch_sub(n, Ordering::Relaxed);
        self.healthy.store(false, Ordering::Relaxed);
        let before = self.dropped.fetch_add(n as u64, Ordering::Relaxed);
        let after = before + n as u64;
        // Said when the count passes a power of two: often at first, rarely under a flood.
        if before.checked_ilog2() != after.checked_ilog2() {
            tracing::error!(
                dropped = after,
                "spend ledger queue full: records not stored"
            );
        }
        false
    }

    /// Records waiting for the ledger thread.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether the ledger is keeping up (no full queue, no failing commit).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// Opens (creating if needed) the ledger at `path` and starts its thread (scheduled as
/// `priority` says, but always at the normal policy in sync durability: responses wait for it).
pub fn start(
    path: &Path,
    commit_interval: Duration,
    durability: Durability,
    priority: WriterPriority,
) -> Result<(Ledger, JoinHandle<()>), LedgerError> {
    let db = open(path, durability)?;
    let (tx, rx) = flume::unbounded::<Queued>();
    let queued = Arc::new(AtomicUsize::new(0));
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&healthy);
    let waiting = Arc::clone(&queued);
    let handle = std::thread::Builder::new()
        .name("sluice-ledger".into())
        .spawn(move || {
            let priority = match durability {
                Durability::Interval => priority,
                Durability::Sync => WriterPriority::Normal,
            };
            let pacing = WriterPacing::start("ledger", priority);
            let queue = Queue { rx, waiting };
            write_loop(db, &queue, commit_interval, durability, flag, pacing);
        })
        .map_err(LedgerError::Thread)?;
    Ok((
        Ledger {
            tx: Some(tx),
            queued,
            healthy,
            dropped: Arc::new(AtomicU64::new(0)),
        },
        handle,
    ))
}

/// The writer's page cache, in KiB (SQLite's `cache_size` as a negative number): rows are only
/// appended, so a commit touches the table's last pages and the small totals table; SQLite's
/// default of 2,000 KiB filled up with pages written once and never read again.
const PAGE_CACHE_KIB: i64 = -256;

/// The ledger's database, and how many rows one `INSERT` stores in it.
struct Db {
    conn: Connection,
    rows_per_insert: usize,
    /// The `INSERT` of `rows_per_insert` rows, and of one (built once: a commit only looks
    /// them up among the prepared statements).
    insert_rows: String,
    insert_one: String,
}

/// Rows one `INSERT` stores: a statement's binding, step and reset have a fixed cost that
/// these rows share (criterion `records`, the ledger per record: 8–21 % less than a row per
/// statement, sixteen rows a statement about as much); what is left over of a batch goes
/// one row at a time. A ledger whose `request_id` is unique (created by an older sluice)
/// stores one row at a time: only there may a row be ignored, and its totals must count only
/// the rows stored.
const ROWS_PER_INSERT: usize = 64;

/// Values in a `requests` row.
const COLUMNS: usize = 27;

fn open(path: &Path, durability: Durability) -> Result<Db, LedgerError> {
    let fail = |source| LedgerError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open(path).map_err(fail)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(fail)?;
    let synchronous = match durability {
        Durability::Interval => "NORMAL",
        Durability::Sync => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(fail)?;
    conn.pragma_update(None, "cache_size", PAGE_CACHE_KIB)
        .map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
    conn.execute_batch(SCHEMA).map_err(fail)?;
    add_columns(&conn).map_err(fail)?;
    let rows_per_insert = if request_id_is_unique(&conn).map_err(fail)? {
        1
    } else {
        ROWS_PER_INSERT
    };
    Ok(Db {
        conn,
        rows_per_insert,
        insert_rows: insert_sql(rows_per_insert),
        insert_one: insert_sql(1),
    })
}

/// Whether `requests.request_id` is the table's key (ledgers created before it stopped being
/// one).
fn request_id_is_unique(conn: &Connection) -> rusqlite::Result<bool> {
    let key: i64 = conn.query_row(
        "SELECT pk FROM pragma_table_info('requests') WHERE name = 'request_id'",
        [],
        |row| row.get(0),
    )?;
    Ok(key != 0)
}

/// Columns added to `requests` after its first version, in order (a ledger written by an older
/// sluice gets them, zero for its rows).
const ADDED_COLUMNS: [(&str, &str); 3] = [
    (
        "cache_creation_1h_input_tokens",
        "INTEGER NOT NULL DEFAULT 0",
    ),
    ("cache_savings_pico", "INTEGER NOT NULL DEFAULT 0"),
    ("user_agent", "TEXT"),
];

fn add_columns(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('requests')")?;
    let present: Vec<String> = stmt
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for (name, decl) in ADDED_COLUMNS {
        if !present.iter().any(|p| p == name) {
            conn.execute_batch(&format!("ALTER TABLE requests ADD COLUMN {name} {decl}"))?;
        }
    }
    Ok(())
}

/// The ledger thread's end of the queue.
struct Queue {
    rx: flume::Receiver<Queued>,
    /// The workers' count of records in the channel.
    waiting: Arc<AtomicUsize>,
}

impl Queue {
    /// Moves what is queued into `batch` without waiting; returns whether every sender is gone.
    fn drain_into(&self, batch: &mut Vec<Queued>) -> bool {
        let before = batch.len();
        let closed = super::drain(&self.rx, batch);
        self.taken(&batch[before..]);
        closed
    }

    /// Waits at most `every` for the next batch.
    fn wait(&self, every: Duration) -> Result<Queued, flume::RecvTimeoutError> {
        let queued = self.rx.recv_timeout(every)?;
        self.taken(std::slice::from_ref(&queued));
        Ok(queued)
    }

    fn taken(&self, batches: &[Queued]) {
        let n: usize = batches.iter().map(|q| q.records.len()).sum();
        self.waiting.fetch_sub(n, Ordering::Relaxed);
    }
}

fn write_loop(
    mut db: Db,
    queue: &Queue,
    every: Duration,
    durability: Durability,
    healthy: Arc<AtomicBool>,
    mut pacing: WriterPacing,
) {
    let mut batch: Vec<Queued> = Vec::new();
    loop {
        if durability == Durability::Sync && batch.is_empty() {
            // Wake on the first record (someone is waiting for it), not on a timer.
            match queue.wait(every) {
                Ok(queued) => batch.push(queued),
                Err(flume::RecvTimeoutError::Timeout) => continue,
                Err(flume::RecvTimeoutError::Disconnected) => return,
            }
        }
        let closed = queue.drain_into(&mut batch);
        if !batch.is_empty() {
            match commit(&mut db, &batch) {
                Ok(()) => {
                    for queued in batch.drain(..) {
                        if let Some(ack) = queued.ack {
                            let _ = ack.send(());
                        }
                    }
                    if !healthy.swap(true, Ordering::Relaxed) {
                        tracing::warn!("spend ledger commits again; the held records are stored");
                    }
                    super::release_burst(&mut batch, super::KEEP_RECORDS);
                }
                Err(e) => {
                    // Said once per failure episode (a full disk would otherwise fill the log).
                    if healthy.swap(false, Ordering::Relaxed) {
                        tracing::error!(error = %e, pending = count(&batch), "spend ledger commit failed; holding the records and retrying");
                    }
                }
            }
        }
        if closed && batch.is_empty() {
            return;
        }
        if closed {
            // Shutting down with a batch that keeps failing: try a few more times, then give up
            // loudly.
            for _ in 0..3 {
                if commit(&mut db, &batch).is_ok() {
                    return;
                }
            }
            tracing::error!(
                lost = count(&batch),
                "spend ledger records could not be committed at shutdown"
            );
            return;
        }
        if durability == Durability::Interval || !batch.is_empty() {
            pacing.sleep(every);
        }
    }
}

/// Records in `batch`.
fn count(batch: &[Queued]) -> usize {
    batch.iter().map(|q| q.records.len()).sum()
}

/// The records of `batch`, in order.
fn records(batch: &[Queued]) -> impl Iterator<Item = &AccessRecord> {
    batch.iter().flat_map(|q| &q.records)
}

fn commit(db: &mut Db, batch: &[Queued]) -> rusqlite::Result<()> {
    let tx = db.conn.transaction()?;
    let times: Vec<Rfc3339Micros> = records(batch).map(|r| Rfc3339Micros::new(r.time)).collect();
    let rows: Vec<Row<'_>> = records(batch).zip(&times).collect();
    // Totals are summed per batch in memory: one upsert per (scope, key, day), not per request.
    // Keys borrow from the batch; a B-tree of a few entries beats hashing five keys per record.
    let mut totals: Totals<'_> = BTreeMap::new();
    {
        let mut many = tx.prepare_cached(&db.insert_rows)?;
        let mut chunks = rows.chunks_exact(db.rows_per_insert);
        for chunk in &mut chunks {
            // Fewer stored than given: one row, already stored (only a ledger whose
            // `request_id` is unique inserts one at a time and can say so).
            if insert_rows(&mut many, chunk)? == chunk.len() {
                add_to_totals(&mut totals, chunk);
            }
        }
        let mut one = tx.prepare_cached(&db.insert_one)?;
        for row in chunks.remainder() {
            let row = std::slice::from_ref(row);
            if insert_rows(&mut one, row)? == 1 {
                add_to_totals(&mut totals, row);
            }
        }
        let mut upsert = tx.prepare_cached(
            "INSERT INTO totals VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (scope, key, day) DO UPDATE SET requests = requests + ?4,
               cost_pico = cost_pico + ?5, input_tokens = input_tokens + ?6, output_tokens = output_tokens + ?7",
        )?;
        for ((scope, key, day), [requests, cost, input, output]) in &totals {
            upsert.execute(params![scope, key, day, requests, cost, input, output])?;
        }
        let mut seen = tx.prepare_cached(
            "INSERT INTO managed_settings_seen VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (identity, checksum) DO UPDATE SET last_seen = MAX(last_seen, ?4)",
        )?;
        for (r, time) in records(batch).zip(&times) {
            if let Some(checksum) = &r.managed_settings_checksum {
                seen.execute(params![
                    r.caller.label(),
                    r.caller.user(),
                    checksum,
                    time.as_str()
                ])?;
            }
        }
    }
    tx.commit()
}

/// A record and its time, as the ledger stores them.
type Row<'a> = (&'a AccessRecord, &'a Rfc3339Micros);

/// Running totals by (scope, key, day): requests, cost, input and output tokens.
type Totals<'a> = BTreeMap<(&'static str, &'a str, &'a str), [i64; 4]>;

/// `INSERT` of `rows` rows of `requests`.
fn insert_sql(rows: usize) -> String {
    let row = format!("({})", ["?"; COLUMNS].join(", "));
    format!(
        "INSERT OR IGNORE INTO requests VALUES {}",
        vec![row; rows].join(", ")
    )
}

/// Binds `rows` to `insert` (made by [`insert_sql`] for as many) and runs it: the rows stored.
fn insert_rows(insert: &mut rusqlite::Statement<'_>, rows: &[Row<'_>]) -> rusqlite::Result<usize> {
    for (i, (r, time)) in rows.iter().enumerate() {
        for (j, value) in row_values(r, time).into_iter().enumerate() {
            insert.raw_bind_parameter(i * COLUMNS + j + 1, ToSqlOutput::Borrowed(value))?;
        }
    }
    insert.raw_execute()
}

/// A record's `requests` row, in the table's column order.
fn row_values<'a>(r: &'a AccessRecord, time: &'a Rfc3339Micros) -> [ValueRef<'a>; COLUMNS] {
    let text = |s: &'a str| ValueRef::Text(s.as_bytes());
    let opt_text = |s: Option<&'a str>| s.map_or(ValueRef::Null, text);
    let int = |n: u64| ValueRef::Integer(sql_int(n));
    [
        text(&r.request_id),
        text(time.as_str()),
        text(time.day()),
        text(r.caller.label()),
        opt_text(r.caller.user()),
        opt_text(r.caller.team()),
        opt_text(r.session_id.as_deref()),
        opt_text(r.agent_id.as_deref()),
        opt_text(r.parent_agent_id.as_deref()),
        text(r.format.label()),
        text(r.operation),
        opt_text(r.model.as_deref()),
        opt_text(r.upstream_model.as_deref()),
        opt_text(r.upstream.as_deref()),
        ValueRef::Integer(i64::from(r.status)),
        opt_text(r.error),
        int(r.input_tokens),
        int(r.output_tokens),
        int(r.cache_creation_input_tokens),
        int(r.cache_read_input_tokens),
        int(r.cost_pico),
        int(r.total_us),
        r.ttfb_us.map_or(ValueRef::Null, int),
        ValueRef::Integer(i64::from(r.attempts)),
        int(r.cache_creation_1h_input_tokens),
        ValueRef::Integer(r.cache_savings_pico),
        opt_text(r.user_agent.as_deref()),
    ]
}

/// Counts each stored row in the totals of its key, user, team, session and model for its day.
fn add_to_totals<'a>(totals: &mut Totals<'a>, stored: &[Row<'a>]) {
    for &(r, time) in stored {
        let scopes = [
            ("key", Some(r.caller.label())),
            ("user", r.caller.user()),
            ("team", r.caller.team()),
            ("session", r.session_id.as_deref()),
            ("model", r.model.as_deref()),
        ];
        for (scope, key) in scopes {
            if let Some(key) = key {
                let t = totals.entry((scope, key, time.day())).or_default();
                // Upstream-reported counts: saturate, never overflow.
                t[0] = t[0].saturating_add(1);
                t[1] = t[1].saturating_add(sql_int(r.cost_pico));
                t[2] = t[2].saturating_add(sql_int(r.input_tokens));
                t[3] = t[3].saturating_add(sql_int(r.output_tokens));
            }
        }
    }
}

/// One caller's managed-settings checksum as its requests last reported it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SettingsSeen {
    pub identity: String,
    pub user: Option<String>,
    pub checksum: String,
    pub last_seen: String,
}

/// The managed-settings checksum each caller reported last (Claude Code's hint header).
pub fn settings_seen(path: &Path) -> Result<Vec<SettingsSeen>, String> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut stmt = conn
        .prepare(
            "SELECT identity, user, checksum, MAX(last_seen) FROM managed_settings_seen \
             GROUP BY identity ORDER BY identity",
        )
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([], |row| {
            Ok(SettingsSeen {
                identity: row.get(0)?,
                user: row.get(1)?,
                checksum: row.get(2)?,
                last_seen: row.get(3)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| e.to_string())?;
    Ok(rows)
}

/// A count as SQLite's integer, saturating at `i64::MAX`.
fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Picodollars recorded for `scope`/`key` on or after `first_day` (`YYYY-MM-DD`; empty: all time),
/// from the running totals; budgets start from it.
pub fn spent_since(
    path: &Path,
    scope: &str,
    key: &str,
    first_day: &str,
) -> Result<u64, LedgerError> {
    let fail = |source| LedgerError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(fail)?;
    let spent: i64 = conn
        .query_row(
            "SELECT COALESCE(SUM(cost_pico), 0) FROM totals WHERE scope = ?1 AND key = ?2 AND day >= ?3",
            params![scope, key, first_day],
            |row| row.get(0),
        )
        .map_err(fail)?;
    Ok(spent.max(0) as u64)
}

/// Picodollars recorded for `scope`/`key` since each of `first_days` (`YYYY-MM-DD`), read in one
/// query so the figures agree with each other.
pub fn spent_since_each<const N: usize>(
    path: &Path,
    scope: &str,
    key: &str,
    first_days: &[String; N],
) -> Result<[u64; N], LedgerError> {
    let fail = |source| LedgerError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(fail)?;
    let rows: Vec<(String, i64)> = {
        let mut statement = conn
            .prepare("SELECT day, SUM(cost_pico) FROM totals WHERE scope = ?1 AND key = ?2 AND day >= ?3 GROUP BY day")
            .map_err(fail)?;
        let earliest = first_days.iter().min().cloned().unwrap_or_default();
        let rows = statement
            .query_map(params![scope, key, earliest], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(fail)?;
        rows.collect::<Result<_, _>>().map_err(fail)?
    };
    Ok(first_days.each_ref().map(|first| {
        rows.iter()
            .filter(|(day, _)| day >= first)
            .map(|(_, pico)| (*pico).max(0) as u64)
            .sum()
    }))
}

/// Spend per key of one scope since `first_day` (most recent activity first, at most `limit`),
/// for the session budgets at start-up.
pub fn spent_per_key_since(
    path: &Path,
    scope: &str,
    first_day: &str,
    limit: usize,
) -> Result<Vec<(String, u64)>, LedgerError> {
    let fail = |source| LedgerError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(fail)?;
    let mut statement = conn
        .prepare(
            "SELECT key, SUM(cost_pico) FROM totals WHERE scope = ?1 AND day >= ?2 \
             GROUP BY key ORDER BY MAX(day) DESC LIMIT ?3",
        )
        .map_err(fail)?;
    let rows = statement
        .query_map(params![scope, first_day, limit as i64], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?.max(0) as u64,
            ))
        })
        .map_err(fail)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(fail)
}

/// One line of a spend report.
#[derive(Debug, serde::Serialize)]
pub struct SpendRow {
    pub group: Option<String>,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    /// Prompt tokens read from the cache, and written to it (all writes, and the 1-hour ones).
    pub cache_read_input_tokens: i64,
    pub cache_creation_input_tokens: i64,
    pub cache_creation_1h_input_tokens: i64,
    /// `cache_read / (input + cache_creation + cache_read)`: the share of prompt tokens the
    /// cache served (Anthropic counts cache reads outside `input_tokens`).
    pub cache_hit_rate: f64,
    /// What the cache saved against the same tokens billed as plain input.
    pub cache_savings_usd: f64,
    /// By Claude Code session: the same figures per agent (`agent_id`; none: the main agent).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<SpendRow>,
}

/// What a spend report groups by.
pub const GROUPS: [&str; 8] = [
    "identity",
    "user",
    "team",
    "model",
    "day",
    "session_id",
    "agent_id",
    "user_agent",
];

/// Spend grouped by one of [`GROUPS`], from the ledger at `path` (read-only; safe while sluice
/// runs). Grouped by `session_id`, each session also carries its per-agent breakdown.
pub fn spend(path: &Path, group: &str) -> Result<Vec<SpendRow>, String> {
    let column = group_column(group)?;
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut rows = grouped(&conn, column, None)?;
    if column == "session_id" {
        let mut agents = grouped(&conn, "agent_id", Some("session_id"))?;
        for row in &mut rows {
            // `grouped` with an outer column puts it, NUL-separated, before the inner group.
            let prefix = format!("{}\0", row.group.as_deref().unwrap_or_default());
            let (mine, rest): (Vec<SpendRow>, Vec<SpendRow>) = agents
                .into_iter()
                .partition(|a| a.group.as_deref().is_some_and(|g| g.starts_with(&prefix)));
            agents = rest;
            row.agents = mine
                .into_iter()
                .map(|mut a| {
                    a.group = a
                        .group
                        .and_then(|g| g.split_once('\0').map(|(_, agent)| agent.to_string()))
                        .filter(|agent| !agent.is_empty());
                    a
                })
                .collect();
        }
    }
    Ok(rows)
}

/// One day's spend of one group (the console's spend over time).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DaySpend {
    pub day: String,
    pub group: Option<String>,
    pub requests: i64,
    pub cost_usd: f64,
}

/// The column of one of [`GROUPS`], or why it is not one.
pub fn group_column(group: &str) -> Result<&'static str, String> {
    GROUPS
        .iter()
        .find(|g| **g == group)
        .copied()
        .ok_or_else(|| format!("cannot group by `{group}`: use one of {GROUPS:?}"))
}

/// Spend per day and `group` (one of [`GROUPS`]) from `first_day` (`YYYY-MM-DD`) on, oldest
/// day first.
pub fn spend_by_day(path: &Path, group: &str, first_day: &str) -> Result<Vec<DaySpend>, String> {
    let column = group_column(group)?;
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let sql = format!(
        "SELECT day, {column}, COUNT(*), SUM(cost_pico) FROM requests WHERE day >= ?1 \
         GROUP BY day, {column} ORDER BY day"
    );
    let mut stmt = conn.prepare(&sql).map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([first_day], |row| {
            Ok(DaySpend {
                day: row.get(0)?,
                group: row.get(1)?,
                requests: row.get(2)?,
                cost_usd: row.get::<_, i64>(3)? as f64 / 1e12,
            })
        })
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// Spend per `column` (within `outer`, when given: the group is then `outer NUL column`).
fn grouped(conn: &Connection, column: &str, outer: Option<&str>) -> Result<Vec<SpendRow>, String> {
    let (key, group_by) = match outer {
        Some(outer) => (
            format!("COALESCE({outer}, '') || char(0) || COALESCE({column}, '')"),
            format!("{outer}, {column}"),
        ),
        None => (column.to_string(), column.to_string()),
    };
    let sql = format!(
        "SELECT {key}, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_pico), \
         SUM(cache_read_input_tokens), SUM(cache_creation_input_tokens), \
         SUM(cache_creation_1h_input_tokens), SUM(cache_savings_pico) \
         FROM requests GROUP BY {group_by} ORDER BY SUM(cost_pico) DESC"
    );
    let mut stmt = conn.prepare(&sql).map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([], |row| {
            let input: i64 = row.get(2)?;
            let (read, written): (i64, i64) = (row.get(5)?, row.get(6)?);
            let prompt = input.saturating_add(read).saturating_add(written);
            Ok(SpendRow {
                group: row.get(0)?,
                requests: row.get(1)?,
                input_tokens: input,
                output_tokens: row.get(3)?,
                cost_usd: row.get::<_, i64>(4)? as f64 / 1e12,
                cache_read_input_tokens: read,
                cache_creation_input_tokens: written,
                cache_creation_1h_input_tokens: row.get(7)?,
                cache_hit_rate: if prompt > 0 {
                    read as f64 / prompt as f64
                } else {
                    0.0
                },
                cache_savings_usd: row.get::<_, i64>(8)? as f64 / 1e12,
                agents: Vec::new(),
            })
        })
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    /// A ledger written before the cache and user-agent columns existed gets them (zero or null
    /// for its rows) and takes new records.
    #[test]
    fn an_older_ledger_gains_the_added_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old_schema = SCHEMA.replace(
            "CREATE TABLE IF NOT EXISTS managed_settings_seen",
            "CREATE TABLE IF NOT EXISTS unused_seen",
        );
        Connection::open(&path)
            .unwrap()
            .execute_batch(&old_schema)
            .unwrap();
        let db = open(&path, Durability::Interval).unwrap();
        let columns: Vec<String> = db
            .conn
            .prepare("SELECT name FROM pragma_table_info('requests')")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(columns.len(), 27);
        assert!(columns.ends_with(&[
            "cache_creation_1h_input_tokens".into(),
            "cache_savings_pico".into(),
            "user_agent".into()
        ]));
        drop(db);
        let mut db = open(&path, Durability::Interval).unwrap();
        let record = crate::record::AccessRecord {
            request_id: "r1".into(),
            cache_read_input_tokens: 900,
            cache_savings_pico: 5,
            ..crate::record::AccessRecord::default()
        };
        let batch = [Queued {
            records: vec![record],
            ack: None,
        }];
        commit(&mut db, &batch).unwrap();
        let rows = spend(&path, "identity").unwrap();
        assert_eq!(rows[0].cache_read_input_tokens, 900);
    }

    fn numbered(i: usize) -> AccessRecord {
        crate::record::AccessRecord {
            request_id: format!("r{i}").into(),
            caller: crate::record::Caller::labelled(format!("key:k{}", i % 3)),
            model: Some(format!("claude-haiku-4-{}", i % 2).into()),
            input_tokens: i as u64,
            output_tokens: 1,
            cost_pico: 1_000 + i as u64,
            ttfb_us: i.is_multiple_of(2).then_some(i as u64),
            status: 200,
            ..crate::record::AccessRecord::default()
        }
    }

    /// `records` queued as batches of `size`.
    fn batches(records: &[AccessRecord], size: usize) -> Vec<Queued> {
        records
            .chunks(size)
            .map(|chunk| Queued {
                records: chunk.to_vec(),
                ack: None,
            })
            .collect()
    }

    /// The requests rows as stored, in order: (request_id, identity, model, input, ttfb, cost).
    type StoredRow = (String, String, String, i64, Option<i64>, i64);

    fn stored_rows(db: &Connection) -> Vec<StoredRow> {
        db.prepare("SELECT request_id, identity, model, input_tokens, ttfb_us, cost_pico FROM requests ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn key_totals(db: &Connection) -> Vec<(String, i64, i64, i64)> {
        db.prepare("SELECT key, requests, cost_pico, input_tokens FROM totals WHERE scope = 'key' ORDER BY key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// What the totals must say for records `0..n` of [`numbered`].
    fn expected_key_totals(n: usize) -> Vec<(String, i64, i64, i64)> {
        (0..3)
            .map(|k| {
                let mine: Vec<i64> = (0..n as i64).filter(|i| i % 3 == k).collect();
                let cost = mine.iter().map(|i| 1_000 + i).sum();
                (
                    format!("key:k{k}"),
                    mine.len() as i64,
                    cost,
                    mine.iter().sum(),
                )
            })
            .collect()
    }

    /// Every record of the queued batches is one row, in order, each column its own record's,
    /// and each is counted once in the totals.
    #[test]
    fn queued_batches_are_stored_row_for_row_and_totalled_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(&dir.path().join("l.db"), Durability::Interval).unwrap();
        let n = 71;
        let records: Vec<AccessRecord> = (0..n).map(numbered).collect();
        commit(&mut db, &batches(&records, 10)).unwrap();
        let expected: Vec<StoredRow> = (0..n)
            .map(|i| {
                let r = &records[i];
                (
                    r.request_id.to_string(),
                    r.caller.label().to_string(),
                    r.model.as_deref().unwrap().to_string(),
                    i as i64,
                    r.ttfb_us.map(|t| t as i64),
                    1_000 + i as i64,
                )
            })
            .collect();
        assert_eq!(stored_rows(&db.conn), expected);
        assert_eq!(key_totals(&db.conn), expected_key_totals(n));
    }

    /// Every column of a row stored with others in one statement is what the record says, and
    /// the same as a row stored alone.
    #[test]
    fn a_row_stored_with_others_holds_every_column_as_one_stored_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(&dir.path().join("l.db"), Durability::Interval).unwrap();
        let full = |i: usize| AccessRecord {
            request_id: format!("r{i}").into(),
            time: std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_764_806_400_123_456),
            caller: crate::record::Caller::Other {
                label: "jwt:alice".into(),
                user: Some("alice".into()),
                team: Some("core".into()),
            },
            session_id: Some("s".into()),
            agent_id: Some("a".into()),
            parent_agent_id: Some("p".into()),
            operation: "messages",
            model: Some("claude-haiku-4-5".into()),
            upstream_model: Some("anthropic.claude-haiku-4-5".into()),
            upstream: Some("bedrock".into()),
            status: 529,
            error: Some("overloaded_error"),
            input_tokens: 1,
            output_tokens: 2,
            cache_creation_input_tokens: 3,
            cache_read_input_tokens: 4,
            cost_pico: 5,
            total_us: 6,
            ttfb_us: Some(7),
            attempts: 8,
            cache_creation_1h_input_tokens: 9,
            cache_savings_pico: -10,
            user_agent: Some("claude-cli/2.1.0".into()),
            ..AccessRecord::default()
        };
        let records: Vec<AccessRecord> = (0..=ROWS_PER_INSERT).map(full).collect();
        commit(&mut db, &batches(&records, records.len())).unwrap();
        let rows: Vec<Vec<rusqlite::types::Value>> = db
            .conn
            .prepare("SELECT * FROM requests ORDER BY rowid")
            .unwrap()
            .query_map([], |row| (1..COLUMNS).map(|c| row.get(c)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        use rusqlite::types::Value::{Integer, Text};
        let text = |s: &str| Text(s.into());
        let expected = vec![
            text("2025-12-04T00:00:00.123456Z"),
            text("2025-12-04"),
            text("jwt:alice"),
            text("alice"),
            text("core"),
            text("s"),
            text("a"),
            text("p"),
            text("anthropic"),
            text("messages"),
            text("claude-haiku-4-5"),
            text("anthropic.claude-haiku-4-5"),
            text("bedrock"),
            Integer(529),
            text("overloaded_error"),
            Integer(1),
            Integer(2),
            Integer(3),
            Integer(4),
            Integer(5),
            Integer(6),
            Integer(7),
            Integer(8),
            Integer(9),
            Integer(-10),
            text("claude-cli/2.1.0"),
        ];
        assert_eq!(rows.len(), ROWS_PER_INSERT + 1);
        assert_eq!(rows[0], expected, "a row stored with others");
        assert_eq!(rows[ROWS_PER_INSERT], expected, "the row stored alone");
    }

    /// The queue is bounded in records, whatever the batches: a batch past the bound is
    /// dropped whole, counted, and marks the ledger unhealthy; what the thread takes frees
    /// room.
    #[test]
    fn batches_past_the_queue_bound_are_dropped_and_counted() {
        let (tx, rx) = flume::unbounded();
        let ledger = Ledger {
            tx: Some(tx),
            ..Ledger::off()
        };
        let queue = Queue {
            rx,
            waiting: Arc::clone(&ledger.queued),
        };
        ledger.record_all(vec![AccessRecord::default(); QUEUE - 1]);
        ledger.record_all(vec![AccessRecord::default()]);
        assert_eq!((ledger.queued(), ledger.dropped()), (QUEUE, 0));
        assert!(ledger.is_healthy());
        ledger.record_all(vec![AccessRecord::default(); 2]);
        assert_eq!((ledger.queued(), ledger.dropped()), (QUEUE, 2));
        assert!(!ledger.is_healthy());
        let mut taken = Vec::new();
        assert!(!queue.drain_into(&mut taken));
        assert_eq!((count(&taken), ledger.queued()), (QUEUE, 0));
        ledger.record_all(vec![AccessRecord::default(); 2]);
        assert_eq!((ledger.queued(), ledger.dropped()), (2, 2));
    }

    /// A ledger created with `request_id` as its primary key refuses a record stored before: a
    /// batch committed twice is stored, and totalled, once.
    #[test]
    fn a_ledger_keyed_by_request_id_stores_and_totals_a_repeated_batch_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyed.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                &SCHEMA.replace("request_id TEXT NOT NULL,", "request_id TEXT PRIMARY KEY,"),
            )
            .unwrap();
        let mut db = open(&path, Durability::Interval).unwrap();
        let n = 37;
        let records: Vec<AccessRecord> = (0..n).map(numbered).collect();
        let batch = batches(&records, n);
        commit(&mut db, &batch).unwrap();
        commit(&mut db, &batch).unwrap();
        assert_eq!(stored_rows(&db.conn).len(), n);
        assert_eq!(key_totals(&db.conn), expected_key_totals(n));
    }
}
