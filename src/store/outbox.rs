//! The outbox of a cluster node: every record is committed to the node's own SQLite ledger
//! first (with its durability mode), and this thread ships the committed rows to PostgreSQL in
//! batches, in ledger order. The node's high-water mark (`outbox_shipped`) is kept in the same
//! SQLite file and moves only after PostgreSQL committed the batch; PostgreSQL keys each row by
//! (node, request id), so a batch shipped again after a crash between the two commits is
//! stored once. PostgreSQL down: rows wait in the ledger (counted in `/metrics` and `/healthz`)
//! and ship when it returns; past `cluster.outbox_max` waiting rows the store counts as failing.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

use super::postgres::{self, Value, COLUMNS};

/// Rows per shipped batch.
const BATCH: i64 = 1000;
/// How often an idle shipper looks for new rows.
const IDLE: Duration = Duration::from_millis(50);
/// How long a shipper waits after PostgreSQL failed before trying again.
const BACKOFF: Duration = Duration::from_millis(500);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox_shipped (
    id INTEGER PRIMARY KEY CHECK (id = 0), last_rowid INTEGER NOT NULL
);
INSERT OR IGNORE INTO outbox_shipped VALUES (0, 0);
";

/// What `/metrics` and `/healthz` show of the outbox.
#[derive(Debug, Default)]
pub struct OutboxStatus {
    /// Committed locally, not yet in PostgreSQL.
    pub pending: AtomicU64,
    /// Stored in PostgreSQL by this process.
    pub shipped: AtomicU64,
    /// Batches sent to PostgreSQL (one transaction each: BEGIN, the insert, COMMIT).
    pub batches: AtomicU64,
    /// The last attempt to reach PostgreSQL succeeded.
    pub postgres_up: AtomicBool,
    /// Waiting rows past which the store counts as failing.
    pub max_pending: AtomicU64,
}

impl OutboxStatus {
    /// Whether the outbox is within its bound.
    pub fn is_healthy(&self) -> bool {
        self.pending.load(Ordering::Relaxed) <= self.max_pending.load(Ordering::Relaxed)
    }
}

/// Why the outbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: {source}")]
    Sql {
        path: String,
        source: rusqlite::Error,
    },
    #[error("cannot start the outbox thread: {0}")]
    Thread(std::io::Error),
}

/// The running shipper; [`Outbox::stop`] ships what it can within a deadline, then ends it.
pub struct Outbox {
    status: Arc<OutboxStatus>,
    /// Tells the shipper to stop, and how long it may still ship.
    stop: flume::Sender<Duration>,
    thread: JoinHandle<()>,
}

impl Outbox {
    pub fn status(&self) -> Arc<OutboxStatus> {
        Arc::clone(&self.status)
    }

    /// Ships what is left for at most `drain` (the ledger thread has committed its last batch
    /// by then), then ends the thread. What could not ship stays in the ledger for the next
    /// start.
    pub fn stop(self, drain: Duration) {
        let _ = self.stop.send(drain);
        let _ = self.thread.join();
    }
}

/// Starts shipping the ledger at `ledger_path` (already created by the ledger) to PostgreSQL
/// as node `node`.
pub fn start(
    ledger_path: &Path,
    conninfo: &str,
    node: &str,
    max_pending: u64,
) -> Result<Outbox, OutboxError> {
    let sql = |source| OutboxError::Sql {
        path: ledger_path.display().to_string(),
        source,
    };
    let conn = Connection::open(ledger_path).map_err(sql)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
    conn.execute_batch(SCHEMA).map_err(sql)?;
    let status = Arc::new(OutboxStatus::default());
    status.max_pending.store(max_pending, Ordering::Relaxed);
    let (stop, stopped) = flume::bounded(1);
    let shipper = Shipper {
        conn,
        conninfo: conninfo.to_string(),
        node: node.to_string(),
        client: None,
        status: Arc::clone(&status),
    };
    let thread = std::thread::Builder::new()
        .name("sluice-outbox".into())
        .spawn(move || shipper.run(&stopped))
        .map_err(OutboxError::Thread)?;
    Ok(Outbox {
        status,
        stop,
        thread,
    })
}

struct Shipper {
    conn: Connection,
    conninfo: String,
    node: String,
    client: Option<::postgres::Client>,
    status: Arc<OutboxStatus>,
}

impl Shipper {
    fn run(mut self, stop: &flume::Receiver<Duration>) {
        let mut reported_down = false;
        let mut deadline: Option<Instant> = None;
        loop {
            match stop.try_recv() {
                Ok(drain) => deadline = Some(Instant::now() + drain),
                Err(flume::TryRecvError::Disconnected) if deadline.is_none() => {
                    deadline = Some(Instant::now());
                }
                Err(_) => {}
            }
            let stopping = deadline.is_some();
            let past_deadline = deadline.is_some_and(|d| Instant::now() >= d);
            match self.ship_once() {
                Ok(0) if stopping => return,
                Ok(0) => pause(IDLE),
                Ok(_) => {
                    if reported_down {
                        tracing::warn!(node = %self.node, "PostgreSQL is back; the outbox ships again");
                        reported_down = false;
                    }
                }
                Err(e) => {
                    self.client = None;
                    self.status.postgres_up.store(false, Ordering::Relaxed);
                    if !reported_down {
                        tracing::error!(error = %e, "outbox: cannot ship to PostgreSQL; records wait in the local ledger");
                        reported_down = true;
                    }
                    if past_deadline {
                        tracing::warn!(
                            pending = self.status.pending.load(Ordering::Relaxed),
                            "outbox: stopping with records not shipped; they ship at the next start"
                        );
                        return;
                    }
                    pause(BACKOFF);
                }
            }
            if past_deadline {
                return;
            }
        }
    }

    /// Ships one batch; returns how many rows it moved past (0: nothing waiting).
    fn ship_once(&mut self) -> Result<usize, ShipError> {
        let last: i64 = self.conn.query_row(
            "SELECT last_rowid FROM outbox_shipped WHERE id = 0",
            [],
            |row| row.get(0),
        )?;
        let newest: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(rowid), 0) FROM requests", [], |row| {
                    row.get(0)
                })?;
        self.status
            .pending
            .store(newest.saturating_sub(last).max(0) as u64, Ordering::Relaxed);
        if newest <= last {
            if self.client.is_none() {
                // Nothing to ship: still say whether PostgreSQL is reachable.
                self.client = Some(postgres::connect(&self.conninfo)?);
                self.status.postgres_up.store(true, Ordering::Relaxed);
            }
            return Ok(0);
        }
        let (rows, through) = self.batch_after(last)?;
        let client = match &mut self.client {
            Some(client) => client,
            None => self.client.insert(postgres::connect(&self.conninfo)?),
        };
        self.status.batches.fetch_add(1, Ordering::Relaxed);
        let added = postgres::ship(client, &self.node, &rows)?;
        self.status.postgres_up.store(true, Ordering::Relaxed);
        self.conn.execute(
            "UPDATE outbox_shipped SET last_rowid = ?1 WHERE id = 0",
            params![through],
        )?;
        self.status.shipped.fetch_add(added, Ordering::Relaxed);
        self.status.pending.store(
            newest.saturating_sub(through).max(0) as u64,
            Ordering::Relaxed,
        );
        Ok(rows.len())
    }

    /// The rows after `last` (at most [`BATCH`]) and the rowid of the last of them.
    fn batch_after(&self, last: i64) -> rusqlite::Result<(Vec<Vec<Value>>, i64)> {
        let names: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
        let sql = format!(
            "SELECT rowid, {} FROM requests WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
            names.join(", ")
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut through = last;
        let rows = stmt
            .query_map(params![last, BATCH], |row| {
                let rowid: i64 = row.get(0)?;
                let mut values = Vec::with_capacity(COLUMNS.len());
                for (i, (_, integer)) in COLUMNS.iter().enumerate() {
                    values.push(if *integer {
                        Value::Int(row.get(i + 1)?)
                    } else {
                        Value::Text(row.get(i + 1)?)
                    });
                }
                Ok((rowid, values))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let rows = rows
            .into_iter()
            .map(|(rowid, values)| {
                through = through.max(rowid);
                values
            })
            .collect();
        Ok((rows, through))
    }
}

#[derive(Debug, thiserror::Error)]
enum ShipError {
    #[error("local ledger: {0}")]
    Local(#[from] rusqlite::Error),
    #[error("{0}")]
    Postgres(#[from] postgres::PgError),
}

fn pause(d: Duration) {
    #[expect(
        clippy::disallowed_methods,
        reason = "the outbox's own thread, not a worker"
    )]
    std::thread::sleep(d);
}
