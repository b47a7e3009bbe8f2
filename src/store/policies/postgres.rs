//! The admin API's budgets, limits and managed settings in the cluster's PostgreSQL: the same
//! tables as the SQLite store; every change bumps `policy_generation` and sends
//! `NOTIFY sluice_policies` in its transaction. [`watch`] runs on every node: it `LISTEN`s (and
//! polls the generation each second as a fallback) and has the node rebuild its policies when
//! they changed, so a budget set on one node holds on all of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use super::{audience_key, audience_of, now, EntityScope};
use crate::config::file::{BudgetFile, BudgetScope, LimitedFile, ManagedSettingsFile};
use crate::limits::budget::Period;
use crate::store::postgres::{self as pg, PgError, POLICIES_CHANNEL};

/// The policy store on the cluster's PostgreSQL.
pub struct PgPolicies {
    client: Client,
}

/// Bumps the generation and announces the change (delivered when `tx` commits).
fn bump(tx: &mut postgres::Transaction<'_>) -> Result<(), PgError> {
    tx.batch_execute(&format!(
        "UPDATE policy_generation SET n = n + 1 WHERE id = 0; NOTIFY {POLICIES_CHANNEL}"
    ))
    .map_err(PgError::query("announce a policy change"))
}

/// Runs one change and announces it, in one transaction; returns the rows it touched.
fn change(
    client: &mut Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<u64, PgError> {
    let mut tx = client
        .transaction()
        .map_err(PgError::query("begin a policy change"))?;
    let n = tx
        .execute(sql, params)
        .map_err(PgError::query("store a policy"))?;
    bump(&mut tx)?;
    tx.commit().map_err(PgError::query("commit a policy"))?;
    Ok(n)
}

fn to_i64(n: Option<impl Into<u64>>) -> Option<i64> {
    n.map(|n| i64::try_from(n.into()).unwrap_or(i64::MAX))
}

impl PgPolicies {
    pub fn open(conninfo: &str) -> Result<PgPolicies, PgError> {
        Ok(PgPolicies {
            client: pg::connect(conninfo)?,
        })
    }

    pub fn budgets(&mut self) -> Result<Vec<BudgetFile>, PgError> {
        let rows = self
            .client
            .query(
                "SELECT scope, name, period, limit_usd, soft_usd FROM budgets ORDER BY scope, name, period",
                &[],
            )
            .map_err(PgError::query("read budgets"))?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let (scope, period): (String, String) = (row.get(0), row.get(2));
                let read = BudgetScope::parse(&scope).zip(Period::parse(&period));
                if read.is_none() {
                    tracing::warn!(
                        scope,
                        period,
                        "a stored budget sluice cannot read is ignored"
                    );
                }
                read.map(|(scope, period)| BudgetFile {
                    scope,
                    name: row.get(1),
                    period,
                    limit_usd: row.get(3),
                    soft_usd: row.get(4),
                })
            })
            .collect())
    }

    pub fn put_budget(&mut self, b: &BudgetFile) -> Result<(), PgError> {
        change(
            &mut self.client,
            "INSERT INTO budgets (scope, name, period, limit_usd, soft_usd, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (scope, name, period) DO UPDATE SET limit_usd = $4, soft_usd = $5, updated_at = $6",
            &[&b.scope.label(), &b.name, &b.period.label(), &b.limit_usd, &b.soft_usd, &now()],
        )
        .map(|_| ())
    }

    pub fn delete_budget(
        &mut self,
        scope: &str,
        name: &str,
        period: &str,
    ) -> Result<bool, PgError> {
        change(
            &mut self.client,
            "DELETE FROM budgets WHERE scope = $1 AND name = $2 AND period = $3",
            &[&scope, &name, &period],
        )
        .map(|n| n > 0)
    }

    pub fn managed_settings(&mut self) -> Result<Vec<ManagedSettingsFile>, PgError> {
        let rows = self
            .client
            .query(
                "SELECT audience, uuid, settings FROM managed_settings ORDER BY audience",
                &[],
            )
            .map_err(PgError::query("read managed settings"))?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let (audience, settings): (String, String) = (row.get(0), row.get(2));
                let (group, team) = audience_of(&audience)?;
                let settings = serde_json::from_str(&settings).ok()?;
                Some(ManagedSettingsFile {
                    group,
                    team,
                    uuid: row.get(1),
                    settings,
                })
            })
            .collect())
    }

    pub fn put_managed_settings(&mut self, doc: &ManagedSettingsFile) -> Result<(), PgError> {
        let settings = serde_json::Value::Object(doc.settings.clone()).to_string();
        change(
            &mut self.client,
            "INSERT INTO managed_settings (audience, uuid, settings, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (audience) DO UPDATE SET uuid = $2, settings = $3, updated_at = $4",
            &[&audience_key(doc), &doc.uuid, &settings, &now()],
        )
        .map(|_| ())
    }

    pub fn delete_managed_settings(&mut self, audience: &str) -> Result<bool, PgError> {
        change(
            &mut self.client,
            "DELETE FROM managed_settings WHERE audience = $1",
            &[&audience],
        )
        .map(|n| n > 0)
    }

    pub fn limits(&mut self, scope: EntityScope) -> Result<Vec<LimitedFile>, PgError> {
        let rows = self
            .client
            .query(
                "SELECT name, rpm, tpm, max_streams FROM entity_limits WHERE scope = $1 ORDER BY name",
                &[&scope.label()],
            )
            .map_err(PgError::query("read limits"))?;
        let small = |n: Option<i64>| n.map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX));
        Ok(rows
            .iter()
            .map(|row| LimitedFile {
                name: row.get(0),
                rpm: small(row.get(1)),
                tpm: row.get::<_, Option<i64>>(2).map(|t| t.max(0) as u64),
                max_streams: small(row.get(3)),
            })
            .collect())
    }

    pub fn put_limits(&mut self, scope: EntityScope, e: &LimitedFile) -> Result<(), PgError> {
        change(
            &mut self.client,
            "INSERT INTO entity_limits (scope, name, rpm, tpm, max_streams, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (scope, name) DO UPDATE SET rpm = $3, tpm = $4, max_streams = $5, updated_at = $6",
            &[
                &scope.label(),
                &e.name,
                &to_i64(e.rpm),
                &to_i64(e.tpm),
                &to_i64(e.max_streams),
                &now(),
            ],
        )
        .map(|_| ())
    }

    pub fn delete_limits(&mut self, scope: EntityScope, name: &str) -> Result<bool, PgError> {
        change(
            &mut self.client,
            "DELETE FROM entity_limits WHERE scope = $1 AND name = $2",
            &[&scope.label(), &name],
        )
        .map(|n| n > 0)
    }
}

/// The running watcher; [`PolicyWatcher::stop`] ends it.
pub struct PolicyWatcher {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl PolicyWatcher {
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

/// How long the watcher waits for an announcement before reading the generation anyway.
const POLL: Duration = Duration::from_secs(1);

/// Calls `on_change` whenever the cluster's policies change (after the first look).
pub fn watch(
    conninfo: &str,
    on_change: impl Fn() + Send + 'static,
) -> std::io::Result<PolicyWatcher> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let conninfo = conninfo.to_string();
    let thread = std::thread::Builder::new()
        .name("sluice-policies".into())
        .spawn(move || {
            let mut client: Option<Client> = None;
            let mut seen: Option<i64> = None;
            while !stopped.load(Ordering::Acquire) {
                match look(&conninfo, &mut client) {
                    Ok(generation) => {
                        if seen.is_some_and(|s| s != generation) {
                            on_change();
                        }
                        seen = Some(generation);
                    }
                    Err(e) => {
                        client = None;
                        tracing::warn!(error = %e, "cannot watch the cluster's policies; the running ones stay");
                        #[expect(clippy::disallowed_methods, reason = "the watcher's own thread")]
                        std::thread::sleep(POLL);
                    }
                }
            }
        })?;
    Ok(PolicyWatcher { stop, thread })
}

/// Reads the generation: at once on a new connection (so nothing changed while connecting
/// is missed), else after an announcement or [`POLL`].
fn look(conninfo: &str, client: &mut Option<Client>) -> Result<i64, PgError> {
    let c = match client.take() {
        Some(mut c) => {
            let heard = c.notifications().timeout_iter(POLL).next();
            heard.map_err(PgError::query("wait for policy changes"))?;
            while let Ok(Some(_)) = c.notifications().iter().next() {}
            c
        }
        None => {
            let mut c = pg::connect(conninfo)?;
            c.batch_execute(&format!("LISTEN {POLICIES_CHANNEL}"))
                .map_err(PgError::query("listen for policy changes"))?;
            c
        }
    };
    let c = client.insert(c);
    c.query_one("SELECT n FROM policy_generation WHERE id = 0", &[])
        .map(|row| row.get(0))
        .map_err(PgError::query("read the policy generation"))
}
