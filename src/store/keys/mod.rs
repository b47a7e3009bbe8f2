//! Issued virtual keys: created with `sluice keys create`, rotated, revoked — stored (only the
//! SHA-256 of each key) in the ledger's SQLite file on one node, or in the cluster's
//! PostgreSQL ([`postgres`]) — and published to every worker.
//!
//! Workers read an `ArcSwap` snapshot ([`IssuedKeys`]); a refresher thread watches a generation
//! counter that every change bumps — polled every [`POLL_INTERVAL`] (one single-row query), and
//! in PostgreSQL also announced by `NOTIFY` — and swaps in a fresh snapshot when it moved, so a
//! revocation reaches every worker — of every process on the same store — within a second, with
//! no lock on the request path. While the store cannot be read the last snapshot stays. The refresher also reports
//! each change to the audit log (created, revoked, expiry changed), so key administration done
//! from the command line is audited by the one writer that owns the chain.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rusqlite::{params, Connection, OptionalExtension};

use crate::config::keys::{digest, VirtualKey};
use crate::config::ModelPattern;
use crate::record::CallerNames;
pub use crate::store::StoreLocation;

pub mod postgres;

/// How often the refresher looks for changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS issued_keys (
    sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, user TEXT, team TEXT, models TEXT,
    created_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS key_generation (id INTEGER PRIMARY KEY CHECK (id = 0), n INTEGER NOT NULL);
INSERT OR IGNORE INTO key_generation VALUES (0, 0);
";

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("key store {path}: {source}")]
    Sql {
        path: String,
        source: rusqlite::Error,
    },
    #[error("no key named `{0}`")]
    NoSuchKey(String),
    #[error("`{0}` is not an RFC 3339 time")]
    BadTime(String),
    #[error("cannot generate a key: no system randomness")]
    Random,
    #[error("cannot start the key refresher: {0}")]
    Thread(std::io::Error),
    #[error("key store: {0}")]
    Postgres(#[from] crate::store::postgres::PgError),
}

/// Opens the key store at `location` (creating its tables if needed).
pub fn open(location: &StoreLocation) -> Result<Box<dyn KeyBackend>, KeyStoreError> {
    Ok(match location {
        StoreLocation::Sqlite(path) => Box::new(KeyStore::open(path)?),
        StoreLocation::Postgres(conninfo) => Box::new(postgres::PgKeyStore::open(conninfo)?),
    })
}

/// The keys by digest, and whether any key was ever issued.
pub type KeySnapshot = (HashMap<[u8; 32], VirtualKey>, bool);

/// What a key store does, on either backend.
pub trait KeyBackend: Send {
    /// Creates a key and returns its text (shown once; only its digest is stored).
    fn create(&mut self, key: &NewKey) -> Result<String, KeyStoreError>;
    /// Revokes every key named `name`; returns how many.
    fn revoke(&mut self, name: &str) -> Result<usize, KeyStoreError>;
    /// Issues a new key for `name` (same user, team and models); the old ones stay valid for
    /// `grace`, then expire.
    fn rotate(&mut self, name: &str, grace: Duration) -> Result<String, KeyStoreError>;
    fn list(&mut self) -> Result<Vec<KeyRow>, KeyStoreError>;
    /// The change counter.
    fn generation(&mut self) -> Result<i64, KeyStoreError>;
    /// Every key not revoked (expired ones included: they are answered 401 `key_expired`).
    fn load(&mut self) -> Result<KeySnapshot, KeyStoreError>;
    /// Waits at most `timeout` for a change to be announced (a poll just waits).
    fn wait_for_change(&mut self, timeout: Duration) {
        #[expect(
            clippy::disallowed_methods,
            reason = "the key refresher's own thread, not a worker"
        )]
        std::thread::sleep(timeout);
    }
}

impl KeyBackend for KeyStore {
    fn create(&mut self, key: &NewKey) -> Result<String, KeyStoreError> {
        KeyStore::create(self, key)
    }
    fn revoke(&mut self, name: &str) -> Result<usize, KeyStoreError> {
        KeyStore::revoke(self, name)
    }
    fn rotate(&mut self, name: &str, grace: Duration) -> Result<String, KeyStoreError> {
        KeyStore::rotate(self, name, grace)
    }
    fn list(&mut self) -> Result<Vec<KeyRow>, KeyStoreError> {
        KeyStore::list(self)
    }
    fn generation(&mut self) -> Result<i64, KeyStoreError> {
        KeyStore::read_generation(self).map_err(|e| self.sql(e))
    }
    fn load(&mut self) -> Result<KeySnapshot, KeyStoreError> {
        KeyStore::read_keys(self).map_err(|e| self.sql(e))
    }
}

/// What a new key carries.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub name: String,
    pub user: Option<String>,
    pub team: Option<String>,
    /// Model names or prefixes ending in `*`; `None`: all.
    pub models: Option<Vec<String>>,
    /// RFC 3339.
    pub expires: Option<String>,
}

impl NewKey {
    /// Checks the key and draws its text: (text, hex SHA-256 to store, models as stored JSON).
    fn issue(&self) -> Result<(String, String, Option<String>), KeyStoreError> {
        if let Some(t) = &self.expires {
            humantime::parse_rfc3339_weak(t).map_err(|_| KeyStoreError::BadTime(t.clone()))?;
        }
        let text = generate()?;
        let sha256 = hex::encode(digest(text.as_bytes()));
        let models = self
            .models
            .as_ref()
            .map(|m| serde_json::to_string(m).unwrap_or_default());
        Ok((text, sha256, models))
    }
}

/// One row of `sluice keys list` (never the key itself).
#[derive(Debug, serde::Serialize)]
pub struct KeyRow {
    pub name: String,
    pub sha256_prefix: String,
    pub user: Option<String>,
    pub team: Option<String>,
    pub models: Option<Vec<String>>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// The key store on one SQLite file.
pub struct KeyStore {
    conn: Connection,
    path: String,
}

impl KeyStore {
    pub fn open(path: &Path) -> Result<KeyStore, KeyStoreError> {
        let display = path.display().to_string();
        let sql = |source| KeyStoreError::Sql {
            path: display.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        Ok(KeyStore {
            conn,
            path: display,
        })
    }

    fn sql(&self, source: rusqlite::Error) -> KeyStoreError {
        KeyStoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    /// Creates a key and returns its text (shown once; only its digest is stored).
    pub fn create(&self, key: &NewKey) -> Result<String, KeyStoreError> {
        let (text, sha256, models) = key.issue()?;
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        tx.execute(
            "INSERT INTO issued_keys VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
            params![
                sha256,
                key.name,
                key.user,
                key.team,
                models,
                now_rfc3339(),
                key.expires
            ],
        )
        .and_then(|_| bump(&tx))
        .and_then(|()| tx.commit())
        .map_err(|e| self.sql(e))?;
        Ok(text)
    }

    /// Revokes every key named `name`; returns how many.
    pub fn revoke(&self, name: &str) -> Result<usize, KeyStoreError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        let n = tx
            .execute(
                "UPDATE issued_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, now_rfc3339()],
            )
            .map_err(|e| self.sql(e))?;
        if n == 0 {
            return Err(KeyStoreError::NoSuchKey(name.to_string()));
        }
        bump(&tx)
            .and_then(|()| tx.commit())
            .map_err(|e| self.sql(e))?;
        Ok(n)
    }

    /// Issues a new key for `name` with the same user, team and models; the old ones stay
    /// valid for `grace`, then expire. Returns the new key's text.
    pub fn rotate(&self, name: &str, grace: Duration) -> Result<String, KeyStoreError> {
        let current = self
            .conn
            .query_row(
                "SELECT user, team, models, expires_at FROM issued_keys
                 WHERE name = ?1 AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1",
                params![name],
                |row| {
                    Ok(NewKey {
                        name: name.to_string(),
                        user: row.get(0)?,
                        team: row.get(1)?,
                        models: row
                            .get::<_, Option<String>>(2)?
                            .and_then(|m| serde_json::from_str(&m).ok()),
                        expires: row.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sql(e))?
            .ok_or_else(|| KeyStoreError::NoSuchKey(name.to_string()))?;
        let until = humantime::format_rfc3339_seconds(SystemTime::now() + grace).to_string();
        self.conn
            .execute(
                "UPDATE issued_keys SET expires_at = ?2 WHERE name = ?1 AND revoked_at IS NULL
                 AND (expires_at IS NULL OR expires_at > ?2)",
                params![name, until],
            )
            .map_err(|e| self.sql(e))?;
        self.create(&current)
    }

    pub fn list(&self) -> Result<Vec<KeyRow>, KeyStoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, sha256, user, team, models, created_at, expires_at, revoked_at
                 FROM issued_keys ORDER BY name, created_at",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(KeyRow {
                    name: row.get(0)?,
                    sha256_prefix: row.get::<_, String>(1)?.chars().take(12).collect(),
                    user: row.get(2)?,
                    team: row.get(3)?,
                    models: row
                        .get::<_, Option<String>>(4)?
                        .and_then(|m| serde_json::from_str(&m).ok()),
                    created_at: row.get(5)?,
                    expires_at: row.get(6)?,
                    revoked_at: row.get(7)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(|e| self.sql(e))?;
        Ok(rows)
    }

    /// Replaces every stored key by `rows` (a cluster node's copy of PostgreSQL's keys).
    pub fn replace_all(&self, rows: &[StoredKey]) -> rusqlite::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("DELETE FROM issued_keys", [])?;
        {
            let mut insert =
                tx.prepare("INSERT INTO issued_keys VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
            for r in rows {
                insert.execute(params![
                    r.sha256,
                    r.name,
                    r.user,
                    r.team,
                    r.models,
                    r.created_at,
                    r.expires_at,
                    r.revoked_at
                ])?;
            }
        }
        tx.commit()
    }

    fn read_generation(&self) -> rusqlite::Result<i64> {
        self.conn
            .query_row("SELECT n FROM key_generation WHERE id = 0", [], |row| {
                row.get(0)
            })
    }

    /// Every key not revoked (expired ones included: they are answered 401 `key_expired`), and
    /// whether any key was ever issued.
    pub(crate) fn read_keys(&self) -> rusqlite::Result<KeySnapshot> {
        let ever: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM issued_keys", [], |row| row.get(0))?;
        let mut stmt = self.conn.prepare(
            "SELECT sha256, name, user, team, models, expires_at FROM issued_keys WHERE revoked_at IS NULL",
        )?;
        let mut keys = HashMap::new();
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, Option<String>>(5)?,
            ))
        })?;
        for row in rows {
            let (sha, name, user, team, models, expires) = row?;
            if let Some((digest, key)) = stored_key(&sha, name, user, team, models, expires) {
                keys.insert(digest, key);
            }
        }
        Ok((keys, ever > 0))
    }
}

/// One stored key as its row holds it.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub sha256: String,
    pub name: String,
    pub user: Option<String>,
    pub team: Option<String>,
    pub models: Option<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// A stored row as a key (`None`: its digest is not hex).
fn stored_key(
    sha256: &str,
    name: String,
    user: Option<String>,
    team: Option<String>,
    models: Option<String>,
    expires: Option<String>,
) -> Option<([u8; 32], VirtualKey)> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(sha256, &mut digest).ok()?;
    let models = models
        .and_then(|m| serde_json::from_str::<Vec<String>>(&m).ok())
        .map(|m| Arc::new(m.iter().map(|p| ModelPattern::parse(p)).collect()));
    let expires = expires.and_then(|t| humantime::parse_rfc3339_weak(&t).ok());
    Some((
        digest,
        VirtualKey::new(
            CallerNames::new("key", name, user, team),
            models,
            expires,
            digest,
        ),
    ))
}

fn bump(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("UPDATE key_generation SET n = n + 1 WHERE id = 0", [])
        .map(|_| ())
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// `sk-sluice-` and 32 random bytes in hex.
fn generate() -> Result<String, KeyStoreError> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| KeyStoreError::Random)?;
    Ok(format!("sk-sluice-{}", hex::encode(bytes)))
}

/// The issued keys every worker sees.
#[derive(Default)]
pub struct IssuedKeys {
    current: ArcSwap<HashMap<[u8; 32], VirtualKey>>,
    /// The store has issued a key at some point (revoked ones count): from then on a key is
    /// required, so revoking the last key cannot reopen the gateway. Never goes back to false.
    issued_any: AtomicBool,
}

impl std::fmt::Debug for IssuedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IssuedKeys({} keys)", self.current.load().len())
    }
}

impl IssuedKeys {
    /// The issued key whose digest is `digest`, if any.
    pub fn find(&self, digest: &[u8; 32]) -> Option<VirtualKey> {
        self.current
            .load()
            .get(digest)
            .filter(|k| k.matches(digest))
            .cloned()
    }

    /// Whether the store has ever issued a key (then every request needs one).
    pub fn issued_any(&self) -> bool {
        self.issued_any.load(Ordering::Acquire)
    }

    fn publish(&self, keys: HashMap<[u8; 32], VirtualKey>, issued_any: bool) {
        self.current.store(Arc::new(keys));
        if issued_any {
            self.issued_any.store(true, Ordering::Release);
        }
    }
}

/// The running refresher; [`KeyRefresher::stop`] ends it (at shutdown, before the audit log
/// it reports to is closed).
pub struct KeyRefresher {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl KeyRefresher {
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

/// Loads the keys now and starts the refresher; `on_change` hears each key added, removed or
/// whose expiry changed, as `(action, key name)`. In a cluster `cache` (the node's ledger file)
/// keeps a copy of the keys as last loaded, which a node starting while PostgreSQL is down
/// serves until it is back (a node that never loaded any does not start).
pub fn start(
    location: &StoreLocation,
    cache: Option<&Path>,
    issued: Arc<IssuedKeys>,
    on_change: impl Fn(&'static str, &str) + Send + 'static,
) -> Result<KeyRefresher, KeyStoreError> {
    let mut store: Box<dyn KeyBackend> = match (location, cache) {
        (StoreLocation::Postgres(conninfo), Some(cache)) => Box::new(
            postgres::PgKeyStore::with_cache(conninfo, KeyStore::open(cache)?),
        ),
        _ => open(location)?,
    };
    let loaded = store
        .generation()
        .and_then(|generation| Ok((generation, store.load()?)));
    let generation = match (loaded, cache) {
        (Ok((generation, (keys, issued_any))), _) => {
            issued.publish(keys, issued_any);
            generation
        }
        (Err(e @ KeyStoreError::Postgres(_)), Some(cache)) => {
            let (keys, issued_any) =
                KeyStore::open(cache)?
                    .read_keys()
                    .map_err(|source| KeyStoreError::Sql {
                        path: cache.display().to_string(),
                        source,
                    })?;
            if !issued_any {
                return Err(e);
            }
            tracing::warn!(error = %e, keys = keys.len(), "PostgreSQL is unreachable: serving the issued keys as last loaded until it answers");
            issued.publish(keys, issued_any);
            -1
        }
        (Err(e), _) => return Err(e),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("sluice-keys".into())
        .spawn(move || refresh_loop(store.as_mut(), &issued, generation, &stopped, &on_change))
        .map_err(KeyStoreError::Thread)?;
    Ok(KeyRefresher { stop, thread })
}

fn refresh_loop(
    store: &mut dyn KeyBackend,
    issued: &IssuedKeys,
    mut seen: i64,
    stop: &AtomicBool,
    on_change: &dyn Fn(&'static str, &str),
) {
    // Said once per outage, not every poll.
    let mut failing = false;
    while !stop.load(Ordering::Acquire) {
        store.wait_for_change(POLL_INTERVAL);
        let generation = match store.generation() {
            Ok(g) => g,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read the key generation; the keys loaded stay in force");
                    failing = true;
                }
                continue;
            }
        };
        if std::mem::take(&mut failing) {
            tracing::info!("the key store answers again");
        }
        if generation == seen {
            continue;
        }
        match store.load() {
            Ok((fresh, issued_any)) => {
                report_changes(&issued.current.load(), &fresh, on_change);
                issued.publish(fresh, issued_any);
                seen = generation;
                tracing::info!(generation, "issued keys reloaded");
            }
            Err(e) => tracing::warn!(error = %e, "cannot reload the issued keys"),
        }
    }
}

fn report_changes(
    old: &HashMap<[u8; 32], VirtualKey>,
    new: &HashMap<[u8; 32], VirtualKey>,
    on_change: &dyn Fn(&'static str, &str),
) {
    for (digest, key) in new {
        match old.get(digest) {
            None => on_change("key_created", &key.names.name),
            Some(before) if before.expires != key.expires => {
                on_change("key_expiry_changed", &key.names.name)
            }
            Some(_) => {}
        }
    }
    for (digest, key) in old {
        if !new.contains_key(digest) {
            on_change("key_revoked", &key.names.name);
        }
    }
}
