//! Starting and stopping the gateway: bind the listeners (refusing a taken port), start the
//! recorder and the record writers, one worker per listener, announce `listening on ADDR`, wait for
//! SIGTERM/SIGINT, then drain: workers stop accepting and finish in-flight requests within the
//! grace period, and every record is written before the process exits.

use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use thiserror::Error;

pub mod cluster;
pub mod reload;

use crate::config::{Config, Overrides};
use crate::proxy::{serve_plain, serve_tls, Records, WorkerGateway};
use crate::runtime::{self, listener::bind_listeners, shutdown_pair, LocalShutdown};
use crate::state::live::{Live, Snapshot};
use crate::state::State;
use crate::store::{ledger, recorder};

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
    #[error("cluster: {0}")]
    Cluster(crate::store::outbox::OutboxError),
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
pub fn serve(config: Config, state: State, source: ConfigSource) -> Result<(), ServeError> {
    warn_if_exposed(&config, &state);
    if !state.budgets.is_empty() {
        for (place, model) in config.unpriced_routes() {
            tracing::warn!(route = %place, model = %model, "this route serves a model without a price: its requests are refused under any budget");
        }
    }
    if let Some(tls) = &state.edge_tls {
        reload::warn_expiring(tls);
    }
    let signals = runtime::catch_termination_signals().map_err(ServeError::Signals)?;
    let fd_limit = runtime::raise_fd_limit();
    tracing::info!(fd_limit, "open-file limit");
    let bound = bind_all(&config)?;
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let (exporter, exporter_thread) = match &config.telemetry.export {
        Some(settings) => {
            let (e, t) =
                crate::telemetry::export::start(settings).map_err(ServeError::AccessLog)?;
            (Some(e), Some(t))
        }
        None => (None, None),
    };
    let export_counts = exporter.as_ref().map(|e| Arc::clone(&e.counts));
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
        crate::state::budget_spend::load_all(&state.budgets, path).map_err(ServeError::Ledger)?;
    }
    let (audit, audit_thread) = match &config.audit.path {
        Some(path) => {
            let (a, t) = crate::audit::start(
                path,
                config.audit.max_bytes,
                config.store.durability == ledger::Durability::Sync,
                config.writer_priority,
                config.cluster.as_ref().map(|c| c.node_id.clone()),
            )
            .map_err(ServeError::Audit)?;
            (a, Some(t))
        }
        None => (crate::audit::AuditLog::off(), None),
    };
    let (recorder, recorder_thread) = recorder::start(
        recorder::Destinations {
            access_log: config.access_log.clone(),
            metrics: Arc::clone(&metrics),
            ledger: ledger.clone(),
            audit: audit.clone(),
            exporter,
        },
        config.writer_priority,
    )
    .map_err(ServeError::AccessLog)?;
    let store_location = crate::store::StoreLocation::of(&config);
    let key_refresher = match &store_location {
        Some(location) => {
            let audit = audit.clone();
            let issued = Arc::clone(&state.issued_keys);
            let cache = config.cluster.as_ref().and(config.store.path.as_deref());
            let refresher =
                crate::store::keys::start(location, cache, issued, move |action, name| {
                    audit.record(crate::audit::AuditEvent::admin(action, name));
                })
                .map_err(ServeError::Keys)?;
            Some(refresher)
        }
        None => None,
    };
    let admin_settings = config.admin.clone();
    let store_path = config.store.path.clone();
    let cluster_settings = config.cluster.clone();
    let (limit, grace) = (
        config.limits.max_connections_per_worker,
        config.grace_period,
    );
    let (workers_wanted, driver) = (config.workers, config.io_driver);
    state.start(&audit);
    let live = Live::new(Snapshot::new(config, state));
    let cluster = match (&cluster_settings, &store_path) {
        (Some(cluster), Some(path)) => {
            Some(cluster::start(cluster, path, &live).map_err(ServeError::Cluster)?)
        }
        _ => None,
    };
    let reloader = Arc::new(reload::Reloader::new(
        Arc::clone(&live),
        source,
        audit.clone(),
    ));
    let records = Records {
        recorder,
        ledger,
        audit,
        metrics,
        cluster: cluster.as_ref().map(|c| Arc::clone(&c.status)),
        export: export_counts,
    };
    let admin = match &admin_settings {
        Some(settings) => {
            let ctx = crate::admin::AdminContext {
                key_digest: settings.key_digest,
                store: store_path,
                store_location,
                cluster_postgres: cluster_settings.as_ref().map(|c| c.postgres.clone()),
                audit: records.audit.clone(),
                reloader: Arc::clone(&reloader),
                records: Some(records.clone()),
                console: crate::admin::ConsoleState::default(),
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
    // In a cluster, a budget, limit or managed-settings change made on any node is applied on
    // this one too.
    let policy_watcher = match &cluster_settings {
        Some(cluster) => {
            let reloader = Arc::clone(&reloader);
            let watcher = crate::store::policies::postgres::watch(&cluster.postgres, move || {
                let _ = reloader.apply_policies("cluster policy change");
            })
            .map_err(ServeError::Workers)?;
            Some(watcher)
        }
        None => None,
    };
    let (mut trigger, shutdown) = shutdown_pair();
    let worker_records = records.clone();
    let panics = Arc::clone(&records.metrics);
    let on_panic: runtime::OnPanic = Arc::new(move || panics.count_worker_panic());
    tracing::info!(
        workers = workers_wanted,
        io_driver = driver.effective(),
        listen = ?bound.plain,
        listen_tls = ?bound.tls,
        "starting"
    );
    let kinds = bound.kinds.clone();
    let workers = runtime::spawn_workers(
        "sluice-worker",
        driver,
        bound.per_worker,
        &shutdown,
        Arc::clone(&on_panic),
        move |id, listeners, shutdown| {
            let shutdown = LocalShutdown::follow(shutdown);
            let gw = Rc::new(WorkerGateway::new(
                id,
                Arc::clone(&live),
                worker_records.clone(),
                Rc::clone(&shutdown),
            ));
            monoio::spawn(Rc::clone(&gw).sweep());
            let active = Rc::default();
            let handshakes = Rc::new(crate::tls::accept::HandshakeSlots::default());
            let loops: Vec<_> = listeners
                .into_iter()
                .zip(kinds.iter().copied())
                .map(|(listener, kind)| {
                    let settings = runtime::AcceptSettings {
                        worker: id,
                        active: Rc::clone(&active),
                        max_connections: limit,
                        grace,
                        on_panic: Arc::clone(&on_panic),
                    };
                    let (gw, shutdown) = (Rc::clone(&gw), Rc::clone(&shutdown));
                    let handshakes = Rc::clone(&handshakes);
                    monoio::spawn(async move {
                        match kind {
                            ListenerKind::Plain => {
                                runtime::accept_loop(listener, shutdown, settings, move |tcp| {
                                    serve_plain(tcp, Rc::clone(&gw))
                                })
                                .await
                            }
                            ListenerKind::Tls => {
                                runtime::accept_loop(listener, shutdown, settings, move |tcp| {
                                    serve_tls(tcp, Rc::clone(&gw), Rc::clone(&handshakes))
                                })
                                .await
                            }
                        }
                    })
                })
                .collect();
            async move {
                for accepting in loops {
                    accepting.await;
                }
                gw.current().finished.flush_now();
            }
        },
    )
    .map_err(ServeError::Workers)?;
    drop(shutdown);
    if let Some(admin) = &admin {
        // Before the main line: scripts and tests that wait for `listening on` then know both.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "admin listening on {}", admin.addr);
        let host = if admin.addr.ip().is_unspecified() {
            "localhost".to_string()
        } else {
            admin
                .addr
                .to_string()
                .replace(&format!(":{}", admin.addr.port()), "")
        };
        let _ = writeln!(
            out,
            "console at http://{host}:{}/ (sign in with the admin key)",
            admin.addr.port()
        );
    }
    if let Some(tls) = bound.tls {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "tls listening on {tls}");
    }
    announce(
        bound
            .plain
            .or(bound.tls)
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
    );
    let signal = runtime::wait_for_termination(signals, || {
        let _ = reloader.reload("SIGHUP");
    })
    .map_err(ServeError::Signals)?;
    tracing::info!(signal, "shutting down: draining in-flight requests");
    let _watchdog = ExitWatchdog::start(grace + WRITER_FLUSH_TIME);
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
    if let Some(watcher) = policy_watcher {
        watcher.stop();
    }
    // Every record queued by the workers is written before the process exits (the reloader
    // holds a handle on the audit log too).
    drop(reloader);
    drop(records);
    // The recorder feeds the ledger, the audit log and the exporter: it ends first, they end
    // once it has.
    for thread in [
        Some(recorder_thread),
        ledger_thread,
        audit_thread,
        exporter_thread,
    ]
    .into_iter()
    .flatten()
    {
        let _ = thread.join();
    }
    if let Some(cluster) = cluster {
        cluster.stop();
    }
    tracing::info!("stopped");
    Ok(())
}

/// What each of a worker's listeners serves.
#[derive(Clone, Copy, Debug)]
enum ListenerKind {
    Plain,
    Tls,
}

/// The bound listeners: per worker one socket per address, in the order of `kinds`.
struct Bound {
    per_worker: Vec<Vec<std::net::TcpListener>>,
    kinds: Vec<ListenerKind>,
    plain: Option<SocketAddr>,
    tls: Option<SocketAddr>,
}

/// Binds the plain and HTTPS listeners (each refused if another process holds its address).
fn bind_all(config: &Config) -> Result<Bound, ServeError> {
    let mut bound = Bound {
        per_worker: (0..config.workers.max(1)).map(|_| Vec::new()).collect(),
        kinds: Vec::new(),
        plain: None,
        tls: None,
    };
    let wanted = [
        (config.listen, ListenerKind::Plain),
        (config.listen_tls, ListenerKind::Tls),
    ];
    for (addr, kind) in wanted {
        let Some(addr) = addr else { continue };
        let sockets = bind_listeners(addr, config.workers)
            .map_err(|source| ServeError::Listen { addr, source })?;
        let actual = sockets
            .first()
            .and_then(|l| l.local_addr().ok())
            .unwrap_or(addr);
        match kind {
            ListenerKind::Plain => bound.plain = Some(actual),
            ListenerKind::Tls => bound.tls = Some(actual),
        }
        bound.kinds.push(kind);
        for (worker, socket) in bound.per_worker.iter_mut().zip(sockets) {
            worker.push(socket);
        }
    }
    Ok(bound)
}

/// How long the record writers get, after the grace period, to write what they hold.
const WRITER_FLUSH_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Ends the process if shutdown has not finished by its deadline: a worker that cannot be
/// joined (stuck, or a leaked task holding a writer's queue open) must never keep the process
/// alive after SIGTERM. Dropping the watchdog (shutdown finished) disarms it.
struct ExitWatchdog {
    _done: std::sync::mpsc::Sender<()>,
}

impl ExitWatchdog {
    fn start(deadline: std::time::Duration) -> Self {
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("sluice-exit-watchdog".into())
            .spawn(move || {
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    finished.recv_timeout(deadline)
                {
                    tracing::error!(
                        after_secs = deadline.as_secs(),
                        "shutdown did not finish in time; exiting now"
                    );
                    std::process::exit(1);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the shutdown watchdog");
        }
        Self { _done: done }
    }
}

/// Prints the line tests and scripts wait for.
pub fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

fn warn_if_exposed(config: &Config, state: &State) {
    let public = [config.listen, config.listen_tls]
        .into_iter()
        .flatten()
        .find(|addr| !addr.ip().is_loopback());
    let exposed = state.open_access(config)
        && public.is_some()
        && state.upstreams.iter().any(|u| u.credential.is_some());
    if let (true, Some(listen)) = (exposed, public) {
        tracing::warn!(
            %listen,
            "no virtual keys are configured, so anyone who can reach this address uses the upstream credential; add [[keys]] or listen on loopback"
        );
    }
}
