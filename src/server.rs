//! Starting and stopping the gateway: bind the listeners (refusing a taken port), start the
//! access-log writer and one worker per listener, announce `listening on ADDR`, wait for
//! SIGTERM/SIGINT, then drain: workers stop accepting and finish in-flight requests within the
//! grace period, and the access log is flushed before the process exits.

use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use thiserror::Error;

use crate::config::Config;
use crate::provider::connect::Connector;
use crate::proxy::{serve_connection, Gateway, Records};
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

/// Runs the gateway until SIGTERM or SIGINT.
pub fn serve(config: Config) -> Result<(), ServeError> {
    warn_if_exposed(&config);
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
    let (log, log_thread) = access_log::start(&config.access_log, Arc::clone(&metrics))
        .map_err(ServeError::AccessLog)?;
    let (ledger, ledger_thread) = match &config.store.path {
        Some(path) => {
            let (l, t) =
                ledger::start(path, config.store.commit_interval).map_err(ServeError::Ledger)?;
            (l, Some(t))
        }
        None => (ledger::Ledger::off(), None),
    };
    if let Some(path) = &config.store.path {
        load_budget_spend(&config.budgets, path).map_err(ServeError::Ledger)?;
    }
    let (audit, audit_thread) = match &config.audit.path {
        Some(path) => {
            let (a, t) =
                crate::audit::start(path, config.audit.max_bytes).map_err(ServeError::Audit)?;
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
    let admin = match &config.admin {
        Some(settings) => {
            let ctx = crate::admin::AdminContext {
                key_digest: settings.key_digest,
                store: config.store.path.clone(),
                audit: audit.clone(),
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
    for upstream in &config.upstreams {
        upstream.provider.start_refreshers();
    }
    let health = crate::provider::health::HealthBoard::new(config.upstreams.len());
    crate::provider::health::start(&health, &config.upstreams);
    let (mut trigger, shutdown) = shutdown_pair();
    let config = Arc::new(config);
    let worker_records = records.clone();
    tracing::info!(
        workers = config.workers,
        io_driver = config.io_driver.effective(),
        listen = %addr,
        "starting"
    );
    let driver = config.io_driver;
    let workers = runtime::spawn_workers(
        "sluice-worker",
        driver,
        listeners,
        &shutdown,
        move |id, listener, shutdown| {
            let shutdown = LocalShutdown::follow(shutdown);
            let gw = Rc::new(Gateway::new(
                id,
                Arc::clone(&config),
                Connector::new(),
                worker_records.clone(),
                Rc::clone(&shutdown),
                Arc::clone(&health),
            ));
            let limit = gw.config.limits.max_connections_per_worker;
            let grace = gw.config.grace_period;
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
    let signal = runtime::wait_for_termination().map_err(ServeError::Signals)?;
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
    // Every record queued by the workers is written before the process exits.
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

/// Starts every budget from the spend the ledger holds for its current window, so a restart
/// does not hand out a fresh budget.
fn load_budget_spend(
    budgets: &crate::limits::budget::Budgets,
    path: &std::path::Path,
) -> Result<(), ledger::LedgerError> {
    for (scope, name, period) in budgets.each() {
        let first_day = first_day_of(period);
        let key = match scope {
            crate::limits::Scope::Key => format!("key:{name}"),
            _ => name.to_string(),
        };
        let spent = ledger::spent_since(path, scope.label(), &key, &first_day)?;
        budgets.load_spent(scope, name, period, spent);
        if spent > 0 {
            tracing::info!(
                scope = scope.label(),
                name,
                spent_usd = spent as f64 / 1e12,
                "budget spend loaded"
            );
        }
    }
    for period in budgets.session_periods() {
        let first_day = first_day_of(period);
        let sessions = ledger::spent_per_key_since(
            path,
            "session",
            &first_day,
            crate::limits::session_budget::CAPACITY,
        )?;
        for (session, spent) in &sessions {
            budgets.load_session_spent(period, session, *spent);
        }
        if !sessions.is_empty() {
            tracing::info!(
                period = period.label(),
                sessions = sessions.len(),
                "session budget spend loaded"
            );
        }
    }
    Ok(())
}

/// `YYYY-MM-DD` of the first day of the current window ("" for a total budget).
fn first_day_of(period: crate::limits::budget::Period) -> String {
    use crate::limits::budget::{day_string, today};
    let first = period.first_day(today());
    if first == i64::MIN {
        String::new()
    } else {
        day_string(first)
    }
}
