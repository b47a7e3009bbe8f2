//! Issued keys in the cluster's PostgreSQL: the same table and rules as the SQLite store; every
//! change bumps the generation and sends `NOTIFY sluice_keys` in its transaction, so every
//! node's refresher (which `LISTEN`s, and polls the generation as a fallback) reloads at once.
//! A lost connection is opened again on the next call; until then the refresher keeps the keys
//! it has. A node's store keeps a copy of the keys in its own ledger file at every load
//! ([`PgKeyStore::with_cache`]), for a start while PostgreSQL is down.

use std::time::{Duration, SystemTime};

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use super::{
    now_rfc3339, stored_key, KeyBackend, KeyRow, KeySnapshot, KeyStore, KeyStoreError, NewKey,
    StoredKey,
};
use crate::store::postgres::{self as pg, PgError, KEYS_CHANNEL};

/// The key store on the cluster's PostgreSQL.
pub struct PgKeyStore {
    conninfo: String,
    client: Option<Client>,
    /// The node's copy of the keys, rewritten at every load.
    cache: Option<KeyStore>,
}

impl PgKeyStore {
    /// A store that connects when first used and copies the keys into `cache` at every load.
    pub fn with_cache(conninfo: &str, cache: KeyStore) -> PgKeyStore {
        PgKeyStore {
            conninfo: conninfo.to_string(),
            client: None,
            cache: Some(cache),
        }
    }

    /// Connects now, so a wrong connection string is reported at once.
    pub fn open(conninfo: &str) -> Result<PgKeyStore, KeyStoreError> {
        let mut store = PgKeyStore {
            conninfo: conninfo.to_string(),
            client: None,
            cache: None,
        };
        store.client()?;
        Ok(store)
    }

    /// The connection, opened (and listening for key changes) if it is not.
    fn client(&mut self) -> Result<&mut Client, KeyStoreError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        let client = match self.client.take() {
            Some(client) => client,
            None => {
                let mut client = pg::connect(&self.conninfo)?;
                client
                    .batch_execute(&format!("LISTEN {KEYS_CHANNEL}"))
                    .map_err(PgError::query("listen for key changes"))?;
                client
            }
        };
        Ok(self.client.insert(client))
    }

    /// Runs `f` on the connection; a failure drops the connection (opened again next time).
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, KeyStoreError>,
    ) -> Result<T, KeyStoreError> {
        let result = f(self.client()?);
        if matches!(result, Err(KeyStoreError::Postgres(_))) {
            self.client = None;
        }
        result
    }
}

/// Bumps the generation and announces the change (delivered when `tx` commits).
fn bump(tx: &mut postgres::Transaction<'_>) -> Result<(), KeyStoreError> {
    tx.batch_execute(&format!(
        "UPDATE key_generation SET n = n + 1 WHERE id = 0; NOTIFY {KEYS_CHANNEL}"
    ))
    .map_err(|e| PgError::query("announce a key change")(e).into())
}

fn insert(client: &mut Client, key: &NewKey) -> Result<String, KeyStoreError> {
    let (text, sha256, models) = key.issue()?;
    let mut tx = client
        .transaction()
        .map_err(PgError::query("begin a key change"))?;
    tx.execute(
        "INSERT INTO issued_keys VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
        &[
            &sha256,
            &key.name,
            &key.user,
            &key.team,
            &models,
            &now_rfc3339(),
            &key.expires,
        ],
    )
    .map_err(PgError::query("store a key"))?;
    bump(&mut tx)?;
    tx.commit().map_err(PgError::query("commit a key"))?;
    Ok(text)
}

impl KeyBackend for PgKeyStore {
    fn create(&mut self, key: &NewKey) -> Result<String, KeyStoreError> {
        self.with(|client| insert(client, key))
    }

    fn revoke(&mut self, name: &str) -> Result<usize, KeyStoreError> {
        self.with(|client| {
            let mut tx = client
                .transaction()
                .map_err(PgError::query("begin a key change"))?;
            let n = tx
                .execute(
                    "UPDATE issued_keys SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
                    &[&name, &now_rfc3339()],
                )
                .map_err(PgError::query("revoke a key"))?;
            if n == 0 {
                return Err(KeyStoreError::NoSuchKey(name.to_string()));
            }
            bump(&mut tx)?;
            tx.commit().map_err(PgError::query("commit a revocation"))?;
            Ok(n as usize)
        })
    }

    fn rotate(&mut self, name: &str, grace: Duration) -> Result<String, KeyStoreError> {
        self.with(|client| {
            let current = client
                .query_opt(
                    "SELECT user_name, team, models, expires_at FROM issued_keys
                     WHERE name = $1 AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1",
                    &[&name],
                )
                .map_err(PgError::query("read a key"))?
                .ok_or_else(|| KeyStoreError::NoSuchKey(name.to_string()))?;
            let next = NewKey {
                name: name.to_string(),
                user: current.get(0),
                team: current.get(1),
                models: current
                    .get::<_, Option<String>>(2)
                    .and_then(|m| serde_json::from_str(&m).ok()),
                expires: current.get(3),
            };
            let until = humantime::format_rfc3339_seconds(SystemTime::now() + grace).to_string();
            client
                .execute(
                    "UPDATE issued_keys SET expires_at = $2 WHERE name = $1 AND revoked_at IS NULL
                     AND (expires_at IS NULL OR expires_at > $2)",
                    &[&name, &until],
                )
                .map_err(PgError::query("expire the old key"))?;
            insert(client, &next)
        })
    }

    fn list(&mut self) -> Result<Vec<KeyRow>, KeyStoreError> {
        self.with(|client| {
            let rows = client
                .query(
                    "SELECT name, sha256, user_name, team, models, created_at, expires_at, revoked_at
                     FROM issued_keys ORDER BY name, created_at",
                    &[],
                )
                .map_err(PgError::query("list keys"))?;
            Ok(rows
                .iter()
                .map(|row| KeyRow {
                    name: row.get(0),
                    sha256_prefix: row.get::<_, String>(1).chars().take(12).collect(),
                    user: row.get(2),
                    team: row.get(3),
                    models: row
                        .get::<_, Option<String>>(4)
                        .and_then(|m| serde_json::from_str(&m).ok()),
                    created_at: row.get(5),
                    expires_at: row.get(6),
                    revoked_at: row.get(7),
                })
                .collect())
        })
    }

    fn generation(&mut self) -> Result<i64, KeyStoreError> {
        self.with(|client| {
            client
                .query_one("SELECT n FROM key_generation WHERE id = 0", &[])
                .map(|row| row.get(0))
                .map_err(|e| PgError::query("read the key generation")(e).into())
        })
    }

    fn load(&mut self) -> Result<KeySnapshot, KeyStoreError> {
        let rows = self.with(|client| {
            let rows = client
                .query(
                    "SELECT sha256, name, user_name, team, models, created_at, expires_at, revoked_at
                     FROM issued_keys",
                    &[],
                )
                .map_err(PgError::query("load keys"))?;
            Ok(rows
                .iter()
                .map(|row| StoredKey {
                    sha256: row.get(0),
                    name: row.get(1),
                    user: row.get(2),
                    team: row.get(3),
                    models: row.get(4),
                    created_at: row.get(5),
                    expires_at: row.get(6),
                    revoked_at: row.get(7),
                })
                .collect::<Vec<_>>())
        })?;
        if let Some(cache) = &self.cache {
            if let Err(e) = cache.replace_all(&rows) {
                tracing::warn!(error = %e, "cannot keep a copy of the issued keys");
            }
        }
        let keys = rows
            .iter()
            .filter(|r| r.revoked_at.is_none())
            .filter_map(|r| {
                stored_key(
                    &r.sha256,
                    r.name.clone(),
                    r.user.clone(),
                    r.team.clone(),
                    r.models.clone(),
                    r.expires_at.clone(),
                )
            })
            .collect();
        Ok((keys, !rows.is_empty()))
    }

    /// Waits for a `NOTIFY` (or `timeout`); every announcement already queued is taken too.
    fn wait_for_change(&mut self, timeout: Duration) {
        let Ok(client) = self.client() else {
            #[expect(
                clippy::disallowed_methods,
                reason = "the key refresher's own thread, not a worker"
            )]
            std::thread::sleep(timeout);
            return;
        };
        let lost = {
            let mut notifications = client.notifications();
            let heard = notifications.timeout_iter(timeout).next();
            match heard {
                Ok(Some(_)) => {
                    while let Ok(Some(_)) = notifications.iter().next() {}
                    false
                }
                Ok(None) => false,
                Err(_) => true,
            }
        };
        if lost {
            self.client = None;
        }
    }
}
