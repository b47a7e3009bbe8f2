//! Config reload, on SIGHUP or `POST /admin/reload`. The new config is read and built on the
//! caller's thread (never a worker), checked against what only a restart can change, handed to
//! the running [`crate::state::State`] to apply (each part kept when unchanged, rebuilt when changed — see
//! [`crate::state`]), and only then published: a bad file changes nothing, and the error says
//! why.

#![expect(
    clippy::disallowed_types,
    reason = "a mutex serialises reloads (signal thread vs admin thread); workers never take it"
)]
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::audit::{AuditEvent, AuditLog};
use crate::config::file::FileConfig;
use crate::config::{self, Config, ConfigError, Overrides};
use crate::state::live::{Live, Snapshot};
use crate::state::StateError;
use crate::store::policies::{self, PolicyStoreError};

#[derive(Debug, Error)]
pub enum ReloadError {
    #[error("sluice was started without --config: there is no file to reload")]
    NoConfigFile,
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0} changed: only a restart applies it")]
    NeedsRestart(&'static str),
    #[error("{0}")]
    State(#[from] StateError),
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
    live: Arc<Live>,
    source: Option<PathBuf>,
    overrides: Overrides,
    audit: AuditLog,
    /// The running config's file as read (before the store's entries joined it); one reload
    /// at a time (SIGHUP and the admin API may race).
    running_file: Mutex<FileConfig>,
}

impl Reloader {
    pub fn new(live: Arc<Live>, source: super::ConfigSource, audit: AuditLog) -> Self {
        Self {
            live,
            source: source.path,
            overrides: source.overrides,
            audit,
            running_file: Mutex::new(source.file),
        }
    }

    /// The running config and state.
    pub fn current(&self) -> Arc<Snapshot> {
        self.live.load()
    }

    /// Reads, builds, checks and publishes the config file; returns the new generation.
    pub fn reload(&self, origin: &str) -> Result<u64, ReloadError> {
        let mut running_file = self.running_file.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = self.rebuild(&mut running_file);
        self.report(origin, &outcome);
        outcome
    }

    /// Checks that the running file changed by `change` builds valid budgets, limits and
    /// managed settings (what the admin API changes); the admin API calls this before storing a
    /// change.
    pub fn check_policies(&self, change: impl FnOnce(&mut FileConfig)) -> Result<(), ReloadError> {
        let mut file = self
            .running_file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        change(&mut file);
        config::policies::build(&file)?;
        config::managed::build(&file.managed_settings)?;
        Ok(())
    }

    /// Rebuilds budgets, rate limits and managed settings from the running file and the store
    /// (after an admin change), keeping the rest of the running config.
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
        let mut next = (*current.config).clone();
        next.policies = config::policies::build(&file)?;
        next.managed_settings = config::managed::build(&file.managed_settings)?;
        self.publish(&current, next)
    }

    /// Applies `next` to the running state and publishes both.
    fn publish(&self, current: &Snapshot, next: Config) -> Result<u64, ReloadError> {
        let state = current.state.apply(&current.config, &next, &self.audit)?;
        Ok(self.live.publish(Snapshot::new(next, state)))
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
        let next = build_config(file.clone(), &self.overrides)?;
        let current = self.live.load();
        only_restart_changes(&current.config, &next)?;
        let generation = self.publish(&current, next)?;
        if let Some(tls) = &self.live.load().state.edge_tls {
            warn_expiring(tls);
        }
        *running_file = file;
        Ok(generation)
    }
}

/// Warns about each served certificate that expires in less than 14 days.
pub fn warn_expiring(tls: &crate::tls::EdgeTls) {
    for cert in crate::state::edge_tls::expiring_soon(tls, std::time::SystemTime::now()) {
        tracing::warn!(certificate = %cert.cert_file, "this certificate expires in less than 14 days");
    }
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
