//! Sign-in state in the store (the same SQLite file as the ledger): device codes, sign-in
//! sessions, refresh tokens and sluice's signing keys. Every code and token is kept only as its
//! SHA-256; the provider's refresh token (needed to notice a user removed at the provider) is
//! the one secret kept as it is. Used only by the sign-in threads and the admin API.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::tokens::{SigningKey, TokenError, KEY_LIFETIME};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS signin_devices (
    code_sha256 BLOB PRIMARY KEY,
    user_code TEXT NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL,
    interval_s INTEGER NOT NULL,
    next_poll_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    session_id TEXT,
    state_sha256 BLOB,
    browser_sha256 BLOB,
    code_verifier TEXT,
    nonce TEXT
);
CREATE TABLE IF NOT EXISTS signin_sessions (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    email TEXT NOT NULL,
    groups TEXT NOT NULL,
    team TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    provider_refresh TEXT
);
CREATE TABLE IF NOT EXISTS signin_refresh_tokens (
    token_sha256 BLOB PRIMARY KEY,
    session_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE TABLE IF NOT EXISTS signin_keys (
    kid TEXT PRIMARY KEY,
    pkcs8 BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
";

#[derive(Debug, thiserror::Error)]
pub enum SigninStoreError {
    #[error("sign-in store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("sign-in store: {0}")]
    Key(#[from] TokenError),
}

/// Where a device code stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceStatus {
    Pending,
    /// Signed in: the session its tokens belong to.
    Approved(String),
    Denied,
}

/// A device code as stored.
#[derive(Clone, Debug)]
pub struct Device {
    pub code_sha256: [u8; 32],
    pub user_code: String,
    pub expires_at: u64,
    pub interval_s: u64,
    pub next_poll_at: u64,
    pub status: DeviceStatus,
    pub browser_sha256: Option<Vec<u8>>,
    pub code_verifier: Option<String>,
    pub nonce: Option<String>,
}

/// A signed-in user on one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub subject: String,
    pub email: String,
    pub groups: Vec<String>,
    pub team: Option<String>,
    pub created_at: u64,
    pub revoked: bool,
    pub provider_refresh: Option<String>,
}

pub struct SigninStore {
    conn: Connection,
}

impl SigninStore {
    pub fn open(path: &Path) -> Result<Self, SigninStoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }

    /// The signing keys still needed, newest first: a new one when the newest is older than
    /// [`KEY_LIFETIME`]; keys whose tokens have all expired are dropped.
    pub fn signing_keys(
        &self,
        now: u64,
        token_ttl: Duration,
    ) -> Result<Vec<Arc<SigningKey>>, SigninStoreError> {
        let lifetime = KEY_LIFETIME.as_secs();
        let keep_after = now.saturating_sub(lifetime + token_ttl.as_secs());
        self.conn.execute(
            "DELETE FROM signin_keys WHERE created_at < ?1",
            [keep_after as i64],
        )?;
        let newest: Option<i64> =
            self.conn
                .query_row("SELECT MAX(created_at) FROM signin_keys", [], |r| r.get(0))?;
        if newest.is_none_or(|at| (at as u64) + lifetime <= now) {
            let key = SigningKey::generate(now)?;
            self.conn.execute(
                "INSERT OR IGNORE INTO signin_keys VALUES (?1, ?2, ?3)",
                params![key.kid, key.pkcs8, now as i64],
            )?;
        }
        let mut stmt = self
            .conn
            .prepare("SELECT kid, pkcs8, created_at FROM signin_keys ORDER BY created_at DESC")?;
        let rows: Vec<(String, Vec<u8>, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(kid, pkcs8, at)| Ok(Arc::new(SigningKey::from_pkcs8(kid, pkcs8, at as u64)?)))
            .collect()
    }

    pub fn create_device(&self, device: &Device) -> Result<(), SigninStoreError> {
        self.conn.execute(
            "DELETE FROM signin_devices WHERE expires_at < ?1",
            [device.expires_at.saturating_sub(86_400) as i64],
        )?;
        self.conn.execute(
            "INSERT INTO signin_devices (code_sha256, user_code, expires_at, interval_s, next_poll_at, status)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
            params![
                device.code_sha256.as_slice(),
                device.user_code,
                device.expires_at as i64,
                device.interval_s as i64,
                device.next_poll_at as i64
            ],
        )?;
        Ok(())
    }

    pub fn device_by_code(
        &self,
        code_sha256: &[u8; 32],
    ) -> Result<Option<Device>, SigninStoreError> {
        self.device_where("code_sha256 = ?1", code_sha256.as_slice())
    }

    pub fn device_by_user_code(&self, user_code: &str) -> Result<Option<Device>, SigninStoreError> {
        self.device_where("user_code = ?1", user_code)
    }

    pub fn device_by_state(
        &self,
        state_sha256: &[u8; 32],
    ) -> Result<Option<Device>, SigninStoreError> {
        self.device_where("state_sha256 = ?1", state_sha256.as_slice())
    }

    fn device_where(
        &self,
        condition: &str,
        value: impl rusqlite::ToSql,
    ) -> Result<Option<Device>, SigninStoreError> {
        let sql = format!(
            "SELECT code_sha256, user_code, expires_at, interval_s, next_poll_at, status, session_id,
                    browser_sha256, code_verifier, nonce
             FROM signin_devices WHERE {condition}"
        );
        Ok(self
            .conn
            .query_row(&sql, [value], |r| {
                let code: Vec<u8> = r.get(0)?;
                let status: String = r.get(5)?;
                let session: Option<String> = r.get(6)?;
                Ok(Device {
                    code_sha256: code.try_into().unwrap_or([0; 32]),
                    user_code: r.get(1)?,
                    expires_at: r.get::<_, i64>(2)? as u64,
                    interval_s: r.get::<_, i64>(3)? as u64,
                    next_poll_at: r.get::<_, i64>(4)? as u64,
                    status: match (status.as_str(), session) {
                        ("approved", Some(s)) => DeviceStatus::Approved(s),
                        ("denied", _) => DeviceStatus::Denied,
                        _ => DeviceStatus::Pending,
                    },
                    browser_sha256: r.get(7)?,
                    code_verifier: r.get(8)?,
                    nonce: r.get(9)?,
                })
            })
            .optional()?)
    }

    /// Records a browser's sign-in attempt for a pending code (the latest attempt wins).
    pub fn start_login(
        &self,
        code_sha256: &[u8; 32],
        state_sha256: &[u8; 32],
        browser_sha256: &[u8; 32],
        code_verifier: &str,
        nonce: &str,
    ) -> Result<(), SigninStoreError> {
        self.conn.execute(
            "UPDATE signin_devices SET state_sha256 = ?2, browser_sha256 = ?3, code_verifier = ?4,
                    nonce = ?5 WHERE code_sha256 = ?1 AND status = 'pending'",
            params![
                code_sha256.as_slice(),
                state_sha256.as_slice(),
                browser_sha256.as_slice(),
                code_verifier,
                nonce
            ],
        )?;
        Ok(())
    }

    pub fn set_poll(
        &self,
        code_sha256: &[u8; 32],
        next_poll_at: u64,
        interval_s: u64,
    ) -> Result<(), SigninStoreError> {
        self.conn.execute(
            "UPDATE signin_devices SET next_poll_at = ?2, interval_s = ?3 WHERE code_sha256 = ?1",
            params![
                code_sha256.as_slice(),
                next_poll_at as i64,
                interval_s as i64
            ],
        )?;
        Ok(())
    }

    /// Marks a pending code signed in (or denied); false if it was no longer pending.
    pub fn settle_device(
        &self,
        code_sha256: &[u8; 32],
        status: &DeviceStatus,
    ) -> Result<bool, SigninStoreError> {
        let (label, session) = match status {
            DeviceStatus::Approved(s) => ("approved", Some(s.as_str())),
            DeviceStatus::Denied => ("denied", None),
            DeviceStatus::Pending => ("pending", None),
        };
        let n = self.conn.execute(
            "UPDATE signin_devices SET status = ?2, session_id = ?3, state_sha256 = NULL
             WHERE code_sha256 = ?1 AND status = 'pending'",
            params![code_sha256.as_slice(), label, session],
        )?;
        Ok(n == 1)
    }

    /// Removes a code (it is single use); false if it was already gone.
    pub fn delete_device(&self, code_sha256: &[u8; 32]) -> Result<bool, SigninStoreError> {
        let n = self.conn.execute(
            "DELETE FROM signin_devices WHERE code_sha256 = ?1",
            [code_sha256.as_slice()],
        )?;
        Ok(n == 1)
    }

    pub fn create_session(&self, s: &Session) -> Result<(), SigninStoreError> {
        self.conn.execute(
            "INSERT INTO signin_sessions (id, subject, email, groups, team, created_at, provider_refresh)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                s.id,
                s.subject,
                s.email,
                serde_json::to_string(&s.groups).unwrap_or_default(),
                s.team,
                s.created_at as i64,
                s.provider_refresh
            ],
        )?;
        Ok(())
    }

    pub fn session(&self, id: &str) -> Result<Option<Session>, SigninStoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, subject, email, groups, team, created_at, revoked_at, provider_refresh
                 FROM signin_sessions WHERE id = ?1",
                [id],
                |r| {
                    let groups: String = r.get(3)?;
                    Ok(Session {
                        id: r.get(0)?,
                        subject: r.get(1)?,
                        email: r.get(2)?,
                        groups: serde_json::from_str(&groups).unwrap_or_default(),
                        team: r.get(4)?,
                        created_at: r.get::<_, i64>(5)? as u64,
                        revoked: r.get::<_, Option<i64>>(6)?.is_some(),
                        provider_refresh: r.get(7)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn set_provider_refresh(&self, id: &str, token: &str) -> Result<(), SigninStoreError> {
        self.conn.execute(
            "UPDATE signin_sessions SET provider_refresh = ?2 WHERE id = ?1",
            params![id, token],
        )?;
        Ok(())
    }

    /// Ends a session; returns whether it was live.
    pub fn revoke_session(&self, id: &str, now: u64) -> Result<bool, SigninStoreError> {
        let n = self.conn.execute(
            "UPDATE signin_sessions SET revoked_at = ?2, provider_refresh = NULL
             WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now as i64],
        )?;
        self.conn.execute(
            "DELETE FROM signin_refresh_tokens WHERE session_id = ?1",
            [id],
        )?;
        Ok(n == 1)
    }

    /// Ends every live session of `email`; returns their ids.
    pub fn revoke_user(&self, email: &str, now: u64) -> Result<Vec<String>, SigninStoreError> {
        let ids: Vec<String> = self
            .conn
            .prepare("SELECT id FROM signin_sessions WHERE email = ?1 AND revoked_at IS NULL")?
            .query_map([email], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for id in &ids {
            self.revoke_session(id, now)?;
        }
        Ok(ids)
    }

    /// Sessions ended recently enough that their access tokens may still be unexpired.
    pub fn revoked_since(&self, since: u64) -> Result<HashSet<String>, SigninStoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM signin_sessions WHERE revoked_at >= ?1")?;
        let ids = stmt
            .query_map([since as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    /// Live sessions, newest first (the admin API's list).
    pub fn live_sessions(&self) -> Result<Vec<Session>, SigninStoreError> {
        let ids: Vec<String> = self
            .conn
            .prepare(
                "SELECT id FROM signin_sessions WHERE revoked_at IS NULL ORDER BY created_at DESC",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.session(&id)?);
        }
        Ok(out)
    }

    pub fn add_refresh_token(
        &self,
        token_sha256: &[u8; 32],
        session_id: &str,
        expires_at: u64,
    ) -> Result<(), SigninStoreError> {
        self.conn.execute(
            "INSERT INTO signin_refresh_tokens VALUES (?1, ?2, ?3, NULL)",
            params![token_sha256.as_slice(), session_id, expires_at as i64],
        )?;
        Ok(())
    }

    /// The session a refresh token belongs to, without using it (for revocation).
    pub fn refresh_token_session(
        &self,
        token_sha256: &[u8; 32],
    ) -> Result<Option<String>, SigninStoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT session_id FROM signin_refresh_tokens WHERE token_sha256 = ?1",
                [token_sha256.as_slice()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Uses a refresh token once: its session if it was unused and unexpired. A token used a
    /// second time ends its whole session (a copy is in someone else's hands).
    pub fn use_refresh_token(
        &self,
        token_sha256: &[u8; 32],
        now: u64,
    ) -> Result<Option<String>, SigninStoreError> {
        let row: Option<(String, i64, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT session_id, expires_at, used_at FROM signin_refresh_tokens WHERE token_sha256 = ?1",
                [token_sha256.as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((session, expires_at, used_at)) = row else {
            return Ok(None);
        };
        if used_at.is_some() {
            self.revoke_session(&session, now)?;
            return Ok(None);
        }
        if (expires_at as u64) <= now {
            return Ok(None);
        }
        let n = self.conn.execute(
            "UPDATE signin_refresh_tokens SET used_at = ?2 WHERE token_sha256 = ?1 AND used_at IS NULL",
            params![token_sha256.as_slice(), now as i64],
        )?;
        Ok((n == 1).then_some(session))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Session {
        Session {
            id: id.into(),
            subject: "sub".into(),
            email: "a@example.com".into(),
            groups: vec!["eng".into()],
            team: Some("core".into()),
            created_at: 1,
            revoked: false,
            provider_refresh: Some("idp-rt".into()),
        }
    }

    #[test]
    fn a_refresh_token_works_once_and_a_replay_ends_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let store = SigninStore::open(&dir.path().join("s.db")).unwrap();
        store.create_session(&session("s1")).unwrap();
        let t = [7u8; 32];
        store.add_refresh_token(&t, "s1", 100).unwrap();
        assert_eq!(
            store.use_refresh_token(&t, 10).unwrap().as_deref(),
            Some("s1")
        );
        assert_eq!(store.use_refresh_token(&t, 11).unwrap(), None);
        assert!(store.session("s1").unwrap().unwrap().revoked);
        assert!(store.revoked_since(0).unwrap().contains("s1"));
    }

    #[test]
    fn keys_are_made_when_due_and_kept_while_their_tokens_live() {
        let dir = tempfile::tempdir().unwrap();
        let store = SigninStore::open(&dir.path().join("s.db")).unwrap();
        let ttl = Duration::from_secs(3600);
        let day = KEY_LIFETIME.as_secs();
        let first = store.signing_keys(1_000, ttl).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(store.signing_keys(1_000 + day - 1, ttl).unwrap().len(), 1);
        let second = store.signing_keys(1_000 + day, ttl).unwrap();
        assert_eq!(second.len(), 2);
        assert_eq!(second[1].kid, first[0].kid);
        let later = store.signing_keys(1_000 + 2 * day + 3600, ttl).unwrap();
        assert!(later.iter().all(|k| k.kid != first[0].kid));
    }

    #[test]
    fn a_device_code_settles_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SigninStore::open(&dir.path().join("s.db")).unwrap();
        let device = Device {
            code_sha256: [1; 32],
            user_code: "BCDF-GHJK".into(),
            expires_at: 600,
            interval_s: 5,
            next_poll_at: 0,
            status: DeviceStatus::Pending,
            browser_sha256: None,
            code_verifier: None,
            nonce: None,
        };
        store.create_device(&device).unwrap();
        assert!(store
            .settle_device(&[1; 32], &DeviceStatus::Approved("s1".into()))
            .unwrap());
        assert!(!store
            .settle_device(&[1; 32], &DeviceStatus::Denied)
            .unwrap());
        let found = store.device_by_user_code("BCDF-GHJK").unwrap().unwrap();
        assert_eq!(found.status, DeviceStatus::Approved("s1".into()));
        assert!(store.delete_device(&[1; 32]).unwrap());
        assert!(!store.delete_device(&[1; 32]).unwrap());
    }
}
