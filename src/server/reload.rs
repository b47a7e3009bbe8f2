//! Config reload, on SIGHUP or `POST /admin/reload`. The new config is read and built on the
//! caller's thread (never a worker), checked against what only a restart can change, given the
//! running state it must not lose, and only then published: a bad file changes nothing, and the
//! error says why.
//!
//! Carried over: issued keys (the key refresher owns that table), budget counters (spend and
//! reservations in flight; budgets the reload adds start from the ledger), rate-limit counters
//! of entities still limited, and — when the upstream and routing settings are unchanged — the
//! upstreams themselves (credentials, health) and each worker's pooled connections. Changed
//! upstreams start fresh credential refreshers and health probers; the old ones stop once the
//! last request on the old config has finished.

#![expect(
    clippy::disallowed_types,
    reason = "a mutex serialises reloads (signal thread vs admin thread); workers never take it"
)]
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::audit::{AuditEvent, AuditLog};
use crate::config::file::FileConfig;
use crate::config::live::LiveConfig;
use crate::config::{self, Config, ConfigError, Overrides};
use crate::store::ledger::LedgerError;
use crate::store::policies::{self, PolicyStoreError};

#[derive(Debug, Error)]
pub enum ReloadError {
    #[error("sluice was started without --config: there is no file to reload")]
    NoConfigFile,
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0} changed: only a restart applies it")]
    NeedsRestart(&'static str),
    #[error("cannot load budget spend: {0}")]
    Ledger(#[from] LedgerError),
    #[error("{0}")]
    Policies(#[from] PolicyStoreError),
}

/// Builds a config from `file` and the budgets and limits the admin API stored.
pub fn build_config(mut file: FileConfig, overrides: &Overrides) -> Result<Config, ReloadError> {
    policies::merge_into(&mut file)?;
    Ok(config::build(file, overrides)?)
}

/// Reloads the running config from its file.
pub struct Reloader {
    live: Arc<LiveConfig>,
    source: Option<PathBuf>,
    overrides: Overrides,
    audit: AuditLog,
    /// The running config's file as read (before the store's entries joined it); one reload
    /// at a time (SIGHUP and the admin API may race).
    running_file: Mutex<FileConfig>,
}

impl Reloader {
    pub fn new(live: Arc<LiveConfig>, source: super::ConfigSource, audit: AuditLog) -> Self {
        Self {
            live,
            source: source.path,
            overrides: source.overrides,
            audit,
            running_file: Mutex::new(source.file),
        }
    }

    /// The running config.
    pub fn current(&self) -> Arc<Config> {
        self.live.load()
    }

    /// Reads, builds, checks and publishes the config file; returns the new generation.
    pub fn reload(&self, origin: &str) -> Result<u64, ReloadError> {
        let mut running_file = self.running_file.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = self.rebuild(&mut running_file);
        self.report(origin, &outcome);
        outcome
    }

    /// Checks that the running file changed by `change` builds valid budgets; the admin API
    /// calls this before storing a change.
    pub fn check_policies(&self, change: impl FnOnce(&mut FileConfig)) -> Result<(), ReloadError> {
        let mut file = self
            .running_file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        change(&mut file);
        config::build_budgets(&file)?;
        Ok(())
    }

    /// Rebuilds budgets and rate limits from the running file and the store (after an admin
    /// change), keeping the rest of the running config.
    pub fn apply_policies(&self, origin: &str) -> Result<u64, ReloadError> {
        let running_file = self.running_file.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = self.rebuild_policies(&running_file);
        self.report(origin, &outcome);
        outcome
    }

    fn rebuild_policies(&self, running_file: &FileConfig) -> Result<u64, ReloadError> {
        let mut file = running_file.clone();
        policies::merge_into(&mut file)?;
        let current = self.live.load();
        let mut next = (*current).clone();
        next.budgets = Arc::new(config::build_budgets(&file)?);
        next.limiter = Arc::new(config::build_limiter(&file));
        carry_over(&current, &mut next)?;
        Ok(self.live.publish(next))
    }

    fn report(&self, origin: &str, outcome: &Result<u64, ReloadError>) {
        let detail = match &outcome {
            Ok(generation) => format!("{origin}: generation {generation}"),
            Err(e) => format!("{origin}: {e}"),
        };
        let action = if outcome.is_ok() {
            "config_reloaded"
        } else {
            "config_reload_failed"
        };
        self.audit.record(AuditEvent::config(action, detail));
        match outcome {
            Ok(generation) => tracing::info!(origin, generation, "config reloaded"),
            Err(e) => tracing::error!(
                origin,
                error = %e,
                "config reload failed; the running config is unchanged"
            ),
        }
    }

    fn rebuild(&self, running_file: &mut FileConfig) -> Result<u64, ReloadError> {
        let path = self.source.as_ref().ok_or(ReloadError::NoConfigFile)?;
        let file = config::load_file(path)?;
        let mut next = build_config(file.clone(), &self.overrides)?;
        let current = self.live.load();
        only_restart_changes(&current, &next)?;
        carry_over(&current, &mut next)?;
        if next.upstreams_fingerprint != current.upstreams_fingerprint {
            start_upstream_threads(&next);
        }
        if let Some(tls) = &next.tls {
            for cert in config::tls::expiring_soon(tls, std::time::SystemTime::now()) {
                tracing::warn!(certificate = %cert.cert_file, "this certificate expires in less than 14 days");
            }
        }
        *running_file = file;
        Ok(self.live.publish(next))
    }
}

/// Starts the credential refreshers and health probers of a config's upstreams.
pub fn start_upstream_threads(config: &Config) {
    for upstream in &config.upstreams {
        upstream.provider.start_refreshers();
    }
    crate::provider::health::start(&config.health, &config.upstreams);
}

/// Refuses a reload that changes what the process set up once: sockets, threads, files.
fn only_restart_changes(current: &Config, next: &Config) -> Result<(), ReloadError> {
    let admin = |c: &Config| c.admin.as_ref().map(|a| (a.listen, a.key_digest));
    let checks: [(&'static str, bool); 13] = [
        ("server.listen", current.listen == next.listen),
        ("server.listen_tls", current.listen_tls == next.listen_tls),
        (
            "server.tls (turning HTTPS on or off)",
            current.tls.is_some() == next.tls.is_some(),
        ),
        ("server.workers", current.workers == next.workers),
        ("server.io_driver", current.io_driver == next.io_driver),
        (
            "server.writer_priority",
            current.writer_priority == next.writer_priority,
        ),
        (
            "server.max_connections_per_worker",
            current.limits.max_connections_per_worker == next.limits.max_connections_per_worker,
        ),
        (
            "server.grace_period",
            current.grace_period == next.grace_period,
        ),
        (
            "log",
            current.access_log == next.access_log && current.log_level == next.log_level,
        ),
        (
            "store",
            current.store.path == next.store.path
                && current.store.commit_interval == next.store.commit_interval
                && current.store.durability == next.store.durability,
        ),
        (
            "audit",
            current.audit.path == next.audit.path
                && current.audit.max_bytes == next.audit.max_bytes,
        ),
        ("admin", admin(current) == admin(next)),
        (
            "store.on_failure",
            current.store.fail_closed == next.store.fail_closed,
        ),
    ];
    match checks.iter().find(|(_, same)| !same) {
        Some((what, _)) => Err(ReloadError::NeedsRestart(what)),
        None => Ok(()),
    }
}

/// Gives the new config the running state it must not lose.
fn carry_over(current: &Config, next: &mut Config) -> Result<(), ReloadError> {
    next.issued_keys = Arc::clone(&current.issued_keys);
    let mut budgets = (*next.budgets).clone();
    let (fresh, fresh_sessions) = budgets.adopt(&current.budgets);
    if let Some(path) = &next.store.path {
        super::budget_spend::load(&budgets, path, &fresh, &fresh_sessions)?;
    }
    next.budgets = Arc::new(budgets);
    let mut limiter = (*next.limiter).clone();
    limiter.adopt(&current.limiter);
    next.limiter = Arc::new(limiter);
    if next.upstreams_fingerprint == current.upstreams_fingerprint {
        next.upstreams = current.upstreams.clone();
        next.health = Arc::clone(&current.health);
    }
    Ok(())
}
