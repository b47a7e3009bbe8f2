//! Budgets, team/user rate limits and managed-settings documents set over the admin API, kept in
//! the store file next to the issued keys. Whenever the config is built — at start-up, on
//! reload, and right after an admin change — they join the file's `[[budgets]]`, `[[teams]]`,
//! `[[users]]` and `[[managed_settings]]`; a stored entry replaces the file's entry for the same
//! budget (scope, name, period), entity (scope, name) or audience (group, team or everyone), and
//! goes through the same validation. The file stays the base; the store holds what the
//! admin API changed on top of it. In a cluster the store is PostgreSQL ([`postgres`]): a
//! change made on any node is announced to every node, which rebuilds its policies.

use std::path::Path;

use rusqlite::{params, Connection};

use crate::config::file::{BudgetFile, BudgetScope, FileConfig, LimitedFile, ManagedSettingsFile};
use crate::limits::budget::Period;
use crate::store::StoreLocation;

pub mod postgres;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS budgets (
    scope TEXT NOT NULL, name TEXT NOT NULL, period TEXT NOT NULL,
    limit_usd REAL NOT NULL, soft_usd REAL, updated_at TEXT NOT NULL,
    PRIMARY KEY (scope, name, period)
);
CREATE TABLE IF NOT EXISTS managed_settings (
    audience TEXT PRIMARY KEY, uuid TEXT, settings TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entity_limits (
    scope TEXT NOT NULL, name TEXT NOT NULL,
    rpm INTEGER, tpm INTEGER, max_streams INTEGER, updated_at TEXT NOT NULL,
    PRIMARY KEY (scope, name)
);
";

#[derive(Debug, thiserror::Error)]
pub enum PolicyStoreError {
    #[error("policy store {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("policy store: {0}")]
    Postgres(#[from] crate::store::postgres::PgError),
}

/// The admin API's budgets, limits and managed settings, on either backend.
pub enum PolicyStore {
    Sqlite(SqlitePolicies),
    Postgres(postgres::PgPolicies),
}

impl PolicyStore {
    pub fn open(location: &StoreLocation) -> Result<Self, PolicyStoreError> {
        Ok(match location {
            StoreLocation::Sqlite(path) => PolicyStore::Sqlite(SqlitePolicies::open(path)?),
            StoreLocation::Postgres(conninfo) => {
                PolicyStore::Postgres(postgres::PgPolicies::open(conninfo)?)
            }
        })
    }

    pub fn budgets(&mut self) -> Result<Vec<BudgetFile>, PolicyStoreError> {
        match self {
            PolicyStore::Sqlite(s) => s.budgets(),
            PolicyStore::Postgres(p) => Ok(p.budgets()?),
        }
    }

    pub fn put_budget(&mut self, b: &BudgetFile) -> Result<(), PolicyStoreError> {
        match self {
            PolicyStore::Sqlite(s) => s.put_budget(b),
            PolicyStore::Postgres(p) => Ok(p.put_budget(b)?),
        }
    }

    /// Removes a stored budget; returns whether there was one.
    pub fn delete_budget(
        &mut self,
        scope: &str,
        name: &str,
        period: &str,
    ) -> Result<bool, PolicyStoreError> {
        match self {
            PolicyStore::Sqlite(s) => s.delete_budget(scope, name, period),
            PolicyStore::Postgres(p) => Ok(p.delete_budget(scope, name, period)?),
        }
    }

    pub fn managed_settings(&mut self) -> Result<Vec<ManagedSettingsFile>, PolicyStoreError> {
        match self {
            PolicyStore::Sqlite(s) => s.managed_settings(),
            PolicyStore::Postgres(p) => Ok(p.managed_settings()?),
        }
    }

    pub fn put_managed_settings(
        &mut self,
        doc: &ManagedSettingsFile,
    ) -> Result<(), PolicyStoreError> {
        match self {
            PolicyStore::Sqlite(s) => s.put_managed_settings(doc),
            PolicyStore::Postgres(p) => Ok(p.put_managed_settings(doc)?),
        }
    }

    /// Removes a stored document; returns whether there was one.
    pub fn delete_managed_settings(&mut self, audience: &str) -> Result<bool, PolicyStoreError> {
        match self {
            PolicyStore::Sqlite(s) => s.delete_managed_settings(audience),
            PolicyStore::Postgres(p) => Ok(p.delete_managed_settings(audience)?),
        }
    }

    pub fn limits(&mut self, scope: EntityScope) -> Result<Vec<LimitedFile>, PolicyStoreError> {
        match self {
            PolicyStore::Sqlite(s) => s.limits(scope),
            PolicyStore::Postgres(p) => Ok(p.limits(scope)?),
        }
    }

    pub fn put_limits(
        &mut self,
        scope: EntityScope,
        e: &LimitedFile,
    ) -> Result<(), PolicyStoreError> {
        match self {
            PolicyStore::Sqlite(s) => s.put_limits(scope, e),
            PolicyStore::Postgres(p) => Ok(p.put_limits(scope, e)?),
        }
    }

    /// Removes an entity's stored limits; returns whether there were any.
    pub fn delete_limits(
        &mut self,
        scope: EntityScope,
        name: &str,
    ) -> Result<bool, PolicyStoreError> {
        match self {
            PolicyStore::Sqlite(s) => s.delete_limits(scope, name),
            PolicyStore::Postgres(p) => Ok(p.delete_limits(scope, name)?),
        }
    }
}

/// Whose limits: a team, a user, or an (issued) key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityScope {
    Team,
    User,
    Key,
}

impl EntityScope {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "teams" | "team" => Some(EntityScope::Team),
            "users" | "user" => Some(EntityScope::User),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            EntityScope::Team => "team",
            EntityScope::User => "user",
            EntityScope::Key => "key",
        }
    }
}

/// The admin API's budgets and limits in one store file.
pub struct SqlitePolicies {
    conn: Connection,
    path: String,
}

impl SqlitePolicies {
    pub fn open(path: &Path) -> Result<Self, PolicyStoreError> {
        let fail = |source| PolicyStoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        Ok(Self {
            conn,
            path: path.display().to_string(),
        })
    }

    fn fail(&self, source: rusqlite::Error) -> PolicyStoreError {
        PolicyStoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    pub fn budgets(&self) -> Result<Vec<BudgetFile>, PolicyStoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT scope, name, period, limit_usd, soft_usd FROM budgets ORDER BY scope, name, period")
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map([], |row| {
                let scope: String = row.get(0)?;
                let period: String = row.get(2)?;
                Ok(BudgetFile {
                    scope: BudgetScope::parse(&scope).ok_or_else(|| unreadable(0, &scope))?,
                    name: row.get(1)?,
                    period: Period::parse(&period).ok_or_else(|| unreadable(2, &period))?,
                    limit_usd: row.get(3)?,
                    soft_usd: row.get(4)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(|e| self.fail(e))?;
        Ok(rows)
    }

    pub fn put_budget(&self, b: &BudgetFile) -> Result<(), PolicyStoreError> {
        self.conn
            .execute(
                "INSERT INTO budgets (scope, name, period, limit_usd, soft_usd, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (scope, name, period) DO UPDATE SET limit_usd = ?4, soft_usd = ?5, updated_at = ?6",
                params![
                    b.scope.label(),
                    b.name,
                    b.period.label(),
                    b.limit_usd,
                    b.soft_usd,
                    now()
                ],
            )
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    /// Removes a stored budget; returns whether there was one.
    pub fn delete_budget(
        &self,
        scope: &str,
        name: &str,
        period: &str,
    ) -> Result<bool, PolicyStoreError> {
        self.conn
            .execute(
                "DELETE FROM budgets WHERE scope = ?1 AND name = ?2 AND period = ?3",
                params![scope, name, period],
            )
            .map(|n| n > 0)
            .map_err(|e| self.fail(e))
    }

    /// The stored managed-settings documents.
    pub fn managed_settings(&self) -> Result<Vec<ManagedSettingsFile>, PolicyStoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT audience, uuid, settings FROM managed_settings ORDER BY audience")
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map([], |row| {
                let audience: String = row.get(0)?;
                let settings: String = row.get(2)?;
                let (group, team) =
                    audience_of(&audience).ok_or_else(|| unreadable(0, &audience))?;
                Ok(ManagedSettingsFile {
                    group,
                    team,
                    uuid: row.get(1)?,
                    settings: serde_json::from_str(&settings)
                        .map_err(|_| unreadable(2, &settings))?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(|e| self.fail(e))?;
        Ok(rows)
    }

    pub fn put_managed_settings(&self, doc: &ManagedSettingsFile) -> Result<(), PolicyStoreError> {
        let settings = serde_json::Value::Object(doc.settings.clone()).to_string();
        self.conn
            .execute(
                "INSERT INTO managed_settings (audience, uuid, settings, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (audience) DO UPDATE SET uuid = ?2, settings = ?3, updated_at = ?4",
                params![audience_key(doc), doc.uuid, settings, now()],
            )
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    /// Removes a stored document (`audience`: `group:<name>`, `team:<name>` or `everyone`);
    /// returns whether there was one.
    pub fn delete_managed_settings(&self, audience: &str) -> Result<bool, PolicyStoreError> {
        self.conn
            .execute(
                "DELETE FROM managed_settings WHERE audience = ?1",
                params![audience],
            )
            .map(|n| n > 0)
            .map_err(|e| self.fail(e))
    }

    pub fn limits(&self, scope: EntityScope) -> Result<Vec<LimitedFile>, PolicyStoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, rpm, tpm, max_streams FROM entity_limits WHERE scope = ?1 ORDER BY name",
            )
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map([scope.label()], |row| {
                Ok(LimitedFile {
                    name: row.get(0)?,
                    rpm: row.get(1)?,
                    tpm: row.get::<_, Option<i64>>(2)?.map(|t| t.max(0) as u64),
                    max_streams: row.get(3)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(|e| self.fail(e))?;
        Ok(rows)
    }

    pub fn put_limits(&self, scope: EntityScope, e: &LimitedFile) -> Result<(), PolicyStoreError> {
        let tpm = e.tpm.map(|t| t.min(i64::MAX as u64) as i64);
        self.conn
            .execute(
                "INSERT INTO entity_limits (scope, name, rpm, tpm, max_streams, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (scope, name) DO UPDATE SET rpm = ?3, tpm = ?4, max_streams = ?5, updated_at = ?6",
                params![scope.label(), e.name, e.rpm, tpm, e.max_streams, now()],
            )
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    /// Removes an entity's stored limits; returns whether there were any.
    pub fn delete_limits(&self, scope: EntityScope, name: &str) -> Result<bool, PolicyStoreError> {
        self.conn
            .execute(
                "DELETE FROM entity_limits WHERE scope = ?1 AND name = ?2",
                params![scope.label(), name],
            )
            .map(|n| n > 0)
            .map_err(|e| self.fail(e))
    }
}

/// A document's audience as stored: `group:<name>`, `team:<name>` or `everyone`.
pub fn audience_key(doc: &ManagedSettingsFile) -> String {
    match (&doc.group, &doc.team) {
        (Some(group), _) => format!("group:{group}"),
        (None, Some(team)) => format!("team:{team}"),
        (None, None) => "everyone".into(),
    }
}

/// (group, team) of a stored audience.
pub(crate) fn audience_of(key: &str) -> Option<(Option<String>, Option<String>)> {
    match key.split_once(':') {
        Some(("group", name)) => Some((Some(name.to_string()), None)),
        Some(("team", name)) => Some((None, Some(name.to_string()))),
        None if key == "everyone" => Some((None, None)),
        _ => None,
    }
}

/// A stored value sluice did not write (the row cannot be read as a budget).
fn unreadable(column: usize, text: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("`{text}` is not a budget scope or period").into(),
    )
}

/// Adds the stored budgets and limits to `file` (replacing the file's entries they name).
/// Nothing to add while the store is off or its file does not exist yet. In a cluster they
/// come from PostgreSQL, and a copy is kept in the node's ledger file: while PostgreSQL cannot
/// be read, the copy is used (so a node can start, or reload its file, during an outage).
pub fn merge_into(file: &mut FileConfig) -> Result<(), PolicyStoreError> {
    let stored = match StoreLocation::of_file(file) {
        None => return Ok(()),
        Some(StoreLocation::Sqlite(path)) if !path.exists() => return Ok(()),
        Some(StoreLocation::Sqlite(path)) => {
            Stored::read(&mut PolicyStore::Sqlite(SqlitePolicies::open(&path)?))?
        }
        Some(location @ StoreLocation::Postgres(_)) => {
            let copy = SqlitePolicies::open(Path::new(&file.store.path))?;
            match PolicyStore::open(&location).and_then(|mut pg| Stored::read(&mut pg)) {
                Ok(stored) => {
                    if let Err(e) = stored.copy_to(&copy) {
                        tracing::warn!(error = %e, "cannot keep a copy of the cluster's policies");
                    }
                    stored
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the cluster's policies cannot be read: using the copy from when they last could");
                    Stored::read(&mut PolicyStore::Sqlite(copy))?
                }
            }
        }
    };
    stored.merge_into(file);
    Ok(())
}

/// Everything the admin API stored.
struct Stored {
    budgets: Vec<BudgetFile>,
    limits: Vec<(EntityScope, Vec<LimitedFile>)>,
    managed_settings: Vec<ManagedSettingsFile>,
}

impl Stored {
    fn read(store: &mut PolicyStore) -> Result<Stored, PolicyStoreError> {
        let mut limits = Vec::new();
        for scope in [EntityScope::Team, EntityScope::User, EntityScope::Key] {
            limits.push((scope, store.limits(scope)?));
        }
        Ok(Stored {
            budgets: store.budgets()?,
            limits,
            managed_settings: store.managed_settings()?,
        })
    }

    /// Replaces what `copy` holds by these.
    fn copy_to(&self, copy: &SqlitePolicies) -> Result<(), PolicyStoreError> {
        let tx = copy
            .conn
            .unchecked_transaction()
            .map_err(|e| copy.fail(e))?;
        tx.execute_batch(
            "DELETE FROM budgets; DELETE FROM entity_limits; DELETE FROM managed_settings;",
        )
        .map_err(|e| copy.fail(e))?;
        for b in &self.budgets {
            copy.put_budget(b)?;
        }
        for (scope, list) in &self.limits {
            for e in list {
                copy.put_limits(*scope, e)?;
            }
        }
        for doc in &self.managed_settings {
            copy.put_managed_settings(doc)?;
        }
        tx.commit().map_err(|e| copy.fail(e))
    }

    fn merge_into(self, file: &mut FileConfig) {
        for b in self.budgets {
            file.budgets.retain(|f| {
                !(f.scope == b.scope && same_name(&f.name, &b.name) && f.period == b.period)
            });
            file.budgets.push(b);
        }
        for (scope, stored) in self.limits {
            let list = match scope {
                EntityScope::Team => &mut file.teams,
                EntityScope::User => &mut file.users,
                EntityScope::Key => &mut file.key_limits,
            };
            for e in stored {
                list.retain(|f| f.name != e.name);
                list.push(e);
            }
        }
        for doc in self.managed_settings {
            let key = audience_key(&doc);
            file.managed_settings.retain(|f| audience_key(f) != key);
            file.managed_settings.push(doc);
        }
    }
}

/// Session budgets are named `*` or nothing.
fn same_name(a: &str, b: &str) -> bool {
    let norm = |n: &str| if n.is_empty() { "*" } else { n }.to_string();
    norm(a) == norm(b)
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn stored_entries_replace_the_files_and_join_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let mut file = crate::config::parse_text(&format!(
            "[store]\npath = \"{}\"\n[[budgets]]\nscope = \"team\"\nname = \"a\"\nlimit_usd = 1.0\nperiod = \"daily\"\n[[teams]]\nname = \"a\"\nrpm = 5\n",
            db.display()
        ))
        .unwrap();
        let store = SqlitePolicies::open(&db).unwrap();
        store
            .put_budget(&BudgetFile {
                scope: BudgetScope::Team,
                name: "a".into(),
                limit_usd: 2.0,
                period: Period::Daily,
                soft_usd: None,
            })
            .unwrap();
        store
            .put_limits(
                EntityScope::User,
                &LimitedFile {
                    name: "u".into(),
                    rpm: Some(3),
                    tpm: None,
                    max_streams: None,
                },
            )
            .unwrap();
        merge_into(&mut file).unwrap();
        assert_eq!(file.budgets.len(), 1);
        assert_eq!(file.budgets[0].limit_usd, 2.0);
        assert_eq!(file.teams.len(), 1);
        assert_eq!(file.users[0].rpm, Some(3));
        assert!(store.delete_budget("team", "a", "daily").unwrap());
        assert!(!store.delete_budget("team", "a", "daily").unwrap());
    }
}
