//! Starting and stopping the gateway: bind the listeners (refusing a taken port), start the
//! access-log writer and one worker per listener, announce `listening on ADDR`, wait for
//! SIGTERM/SIGINT, then drain: workers stop accepting and finish in-flight requests within the
//! grace period, and the access log is flushed before the process exits.

use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use thiserror::Error;

pub mod budget_spend;
pub mod reload;

use crate::config::live::LiveConfig;
use crate::config::{Config, Overrides};
use crate::proxy::{serve_connection, Records, WorkerGateway};
use crate::runtime::{self, listener::bind_listeners, shutdown_pair, LocalShutdown};
use crate::store::{access_log, ledger};

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
    #[error("{0}")]
    Ledger(ledger::LedgerError),
    #[error("cannot open the audit log: {0}")]
    Audit(std::io::Error),
    #[error("{0}")]
    Keys(crate::store::keys::KeyStoreError),
    #[error("cannot start workers: {0}")]
    Workers(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Where the running config came from, so SIGHUP can read it again.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    pub path: Option<std::path::PathBuf>,
    pub overrides: Overrides,
    /// The file as read (before the store's budgets and limits joined it).
    pub file: crate::config::file::FileConfig,
}

/// Runs the gateway until SIGTERM or SIGINT; SIGHUP reloads the config.
pub fn serve(config: Config, source: ConfigSource) -> Result<(), ServeError> {
    warn_if_exposed(&config);
    let fd_limit = runtime::raise_fd_limit();
    tracing::info!(fd_limit, "open-file limit");
    let listeners =
        bind_listeners(config.listen, config.workers).map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .unwrap_or(config.listen);
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let (log, log_thread) = access_log::start(
        &config.access_log,
        Arc::clone(&metrics),
        config.writer_priority,
    )
    .map_err(ServeError::AccessLog)?;
    let (ledger, ledger_thread) = match &config.store.path {
        Some(path) => {
            let (l, t) = ledger::start(
                path,
                config.store.commit_interval,
                config.store.durability,
                config.writer_priority,
            )
            .map_err(ServeError::Ledger)?;
            (l, Some(t))
        }
        None => (ledger::Ledger::off(), None),
    };
    if let Some(path) = &config.store.path {
        budget_spend::load_all(&config.budgets, path).map_err(ServeError::Ledger)?;
    }
    let (audit, audit_thread) = match &config.audit.path {
        Some(path) => {
            let (a, t) = crate::audit::start(
                path,
                config.audit.max_bytes,
                config.store.durability == ledger::Durability::Sync,
                config.writer_priority,
            )
            .map_err(ServeError::Audit)?;
            (a, Some(t))
        }
        None => (crate::audit::AuditLog::off(), None),
    };
    let key_refresher = match &config.store.path {
        Some(path) => {
            let audit = audit.clone();
            let issued = Arc::clone(&config.issued_keys);
            let refresher = crate::store::keys::start(path, issued, move |action, name| {
                audit.record(crate::audit::AuditEvent::admin(action, name));
            })
            .map_err(ServeError::Keys)?;
            Some(refresher)
        }
        None => None,
    };
    let admin_settings = config.admin.clone();
    let store_path = config.store.path.clone();
    let (limit, grace) = (
        config.limits.max_connections_per_worker,
        config.grace_period,
    );
    let (workers_wanted, driver) = (config.workers, config.io_driver);
    reload::start_upstream_threads(&config);
    let live = LiveConfig::new(config);
    let reloader = Arc::new(reload::Reloader::new(
        Arc::clone(&live),
        source,
        audit.clone(),
    ));
    let admin = match &admin_settings {
        Some(settings) => {
            let ctx = crate::admin::AdminContext {
                key_digest: settings.key_digest,
                store: store_path,
                audit: audit.clone(),
                reloader: Arc::clone(&reloader),
            };
            let server =
                crate::admin::start(settings.listen, ctx).map_err(|source| ServeError::Listen {
                    addr: settings.listen,
                    source,
                })?;
            Some(server)
        }
        None => None,
    };
    let records = Records {
        access_log: log,
        ledger,
        audit,
        metrics,
    };
    let (mut trigger, shutdown) = shutdown_pair();
    let worker_records = records.clone();
    tracing::info!(
        workers = workers_wanted,
        io_driver = driver.effective(),
        listen = %addr,
        "starting"
    );
    let workers = runtime::spawn_workers(
        "sluice-worker",
        driver,
        listeners,
        &shutdown,
        move |id, listener, shutdown| {
            let shutdown = LocalShutdown::follow(shutdown);
            let gw = Rc::new(WorkerGateway::new(
                id,
                Arc::clone(&live),
                worker_records.clone(),
                Rc::clone(&shutdown),
            ));
            monoio::spawn(Rc::clone(&gw).sweep_pool());
            runtime::accept_loop(listener, shutdown, limit, grace, move |stream| {
                serve_connection(stream, Rc::clone(&gw))
            })
        },
    )
    .map_err(ServeError::Workers)?;
    drop(shutdown);
    if let Some(admin) = &admin {
        // Before the main line: scripts and tests that wait for `listening on` then know both.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "admin listening on {}", admin.addr);
    }
    announce(addr);
    let signal = runtime::wait_for_termination(|| {
        let _ = reloader.reload("SIGHUP");
    })
    .map_err(ServeError::Signals)?;
    tracing::info!(signal, "shutting down: draining in-flight requests");
    trigger.trigger();
    for worker in workers {
        let _ = worker.join();
    }
    if let Some(refresher) = key_refresher {
        refresher.stop();
    }
    if let Some(admin) = admin {
        admin.stop();
    }
    // Every record queued by the workers is written before the process exits (the reloader
    // holds a handle on the audit log too).
    drop(reloader);
    drop(records);
    for thread in [Some(log_thread), ledger_thread, audit_thread]
        .into_iter()
        .flatten()
    {
        let _ = thread.join();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Prints the line tests and scripts wait for.
pub fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

fn warn_if_exposed(config: &Config) {
    let exposed = config.open_access()
        && !config.listen.ip().is_loopback()
        && config.upstreams.iter().any(|u| u.credential.is_some());
    if exposed {
        tracing::warn!(
            listen = %config.listen,
            "no virtual keys are configured, so anyone who can reach this address uses the upstream credential; add [[keys]] or listen on loopback"
        );
    }
}
