//! Thread-per-core: one monoio runtime per worker thread (io_uring, falling back to epoll where
//! io_uring is unavailable or disabled), each with its own `SO_REUSEPORT` listener. Nothing is
//! shared between workers on the request path; the only cross-thread signal is shutdown, a
//! channel whose sender is dropped to wake every worker at once.
//!
//! Shutdown: workers stop accepting, connections finish the request in flight (streams
//! included) and close, and a worker whose connections have not finished within the grace
//! period is abandoned as the process exits.

pub mod huge_pages;
pub mod listener;
pub mod local_shutdown;
pub mod panic_guard;
pub mod poll_clock;
pub mod writer_priority;

pub use local_shutdown::LocalShutdown;
pub use panic_guard::OnPanic;

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use monoio::blocking::DefaultThreadPool;
use monoio::net::{TcpListener, TcpStream};

/// Threads shared by all workers for blocking work (DNS resolution).
const BLOCKING_THREADS: usize = 2;

/// Which kernel interface the workers drive their sockets with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoDriver {
    /// io_uring where the kernel allows it, epoll otherwise.
    Auto,
    /// io_uring only (start-up fails without it).
    IoUring,
    /// epoll only.
    Epoll,
}

impl IoDriver {
    /// What `Auto` resolves to on this kernel, for the start-up log.
    pub fn effective(self) -> &'static str {
        match self {
            IoDriver::IoUring => "io_uring",
            IoDriver::Epoll => "epoll",
            IoDriver::Auto if monoio::utils::detect_uring() => "io_uring",
            IoDriver::Auto => "epoll (io_uring unavailable)",
        }
    }
}

/// A worker's view of the shutdown signal.
#[derive(Clone)]
pub struct Shutdown {
    rx: flume::Receiver<()>,
}

/// The sending side: dropping it (or calling [`ShutdownTrigger::trigger`]) shuts every worker down.
pub struct ShutdownTrigger {
    tx: Option<flume::Sender<()>>,
}

/// A new shutdown signal pair.
pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = flume::bounded(1);
    (ShutdownTrigger { tx: Some(tx) }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn trigger(&mut self) {
        self.tx = None;
    }
}

impl Shutdown {
    /// Resolves once shutdown has begun.
    pub async fn wait(&self) {
        let _ = self.rx.recv_async().await;
    }

    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        self.rx.is_disconnected()
    }
}

/// Runs one worker thread per entry of `listeners` (each worker's own set: one socket per
/// listening address); `make` builds each worker's future inside its thread. A worker whose
/// runtime panics is started again on fresh listeners (see [`panic_guard`]).
pub fn spawn_workers<F, Fut>(
    name: &str,
    driver: IoDriver,
    listeners: Vec<Vec<std::net::TcpListener>>,
    shutdown: &Shutdown,
    on_panic: OnPanic,
    make: F,
) -> std::io::Result<Vec<JoinHandle<()>>>
where
    F: Fn(usize, Vec<TcpListener>, Shutdown) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let make = Arc::new(make);
    let pool = DefaultThreadPool::new(BLOCKING_THREADS);
    let mut handles = Vec::new();
    for (id, std_listeners) in listeners.into_iter().enumerate() {
        let make = Arc::clone(&make);
        let shutdown = shutdown.clone();
        let pool = pool.clone();
        let on_panic = Arc::clone(&on_panic);
        let handle = std::thread::Builder::new()
            .name(format!("{name}-{id}"))
            .spawn(move || {
                supervise_worker(
                    id,
                    driver,
                    std_listeners,
                    shutdown,
                    pool,
                    &on_panic,
                    make.as_ref(),
                )
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Runs a worker; if its runtime panics, closes its listeners for good (`shutdown(2)` on a
/// listening socket takes it out of the `SO_REUSEPORT` group, whoever still holds the
/// descriptor), binds fresh ones and runs the worker again.
fn supervise_worker<F, Fut>(
    id: usize,
    driver: IoDriver,
    mut std_listeners: Vec<std::net::TcpListener>,
    shutdown: Shutdown,
    pool: DefaultThreadPool,
    on_panic: &OnPanic,
    make: &F,
) where
    F: Fn(usize, Vec<TcpListener>, Shutdown) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    loop {
        let handles: Vec<_> = std_listeners.iter().map(|l| l.try_clone()).collect();
        let addrs: Vec<_> = std_listeners.iter().map(|l| l.local_addr()).collect();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_worker(
                id,
                driver,
                std_listeners,
                shutdown.clone(),
                pool.clone(),
                make,
            )
        }));
        let Err(payload) = run else { return };
        tracing::error!(
            worker = id,
            panic = %panic_guard::panic_message(payload.as_ref()),
            "worker panicked; replacing it"
        );
        on_panic();
        for handle in handles.iter().flatten() {
            let _ = socket2::SockRef::from(handle).shutdown(std::net::Shutdown::Both);
        }
        drop(handles);
        if shutdown.is_triggered() {
            return;
        }
        let fresh: std::io::Result<Vec<_>> = addrs
            .into_iter()
            .map(|addr| addr.and_then(listener::bind_one))
            .collect();
        match fresh {
            Ok(fresh) => std_listeners = fresh,
            Err(e) => {
                tracing::error!(worker = id, error = %e, "cannot bind a listener for the replacement worker");
                return;
            }
        }
    }
}

fn run_worker<F, Fut>(
    id: usize,
    driver: IoDriver,
    std_listeners: Vec<std::net::TcpListener>,
    shutdown: Shutdown,
    pool: DefaultThreadPool,
    make: &F,
) where
    F: Fn(usize, Vec<TcpListener>, Shutdown) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let work = async move {
        let adopted: std::io::Result<Vec<_>> = std_listeners
            .into_iter()
            .map(TcpListener::from_std)
            .collect();
        match adopted {
            Ok(listeners) => make(id, listeners, shutdown).await,
            Err(e) => tracing::error!(worker = id, error = %e, "cannot adopt listener"),
        }
    };
    if let Err(e) = block_on(driver, pool, work) {
        tracing::error!(worker = id, error = %e, "cannot start a runtime");
    }
}

/// Runs `work` to completion on a runtime of the chosen driver, with timers and the shared
/// blocking pool.
fn block_on<Fut: Future<Output = ()>>(
    driver: IoDriver,
    pool: DefaultThreadPool,
    work: Fut,
) -> std::io::Result<()> {
    let pool = Box::new(pool);
    match driver {
        IoDriver::Auto => monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .uring_builder(ring_setup())
            .enable_timer()
            .attach_thread_pool(pool)
            .build()?
            .block_on(work),
        IoDriver::IoUring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .uring_builder(ring_setup())
            .enable_timer()
            .attach_thread_pool(pool)
            .build()?
            .block_on(work),
        IoDriver::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .attach_thread_pool(pool)
            .build()?
            .block_on(work),
    }
    Ok(())
}

/// A worker's io_uring, set up for one thread that alone submits to it: `SINGLE_ISSUER`, and
/// `COOP_TASKRUN` so completions do not interrupt the worker with an inter-processor interrupt
/// and task work on every return to user space — it runs when the worker next enters the
/// kernel, which a busy worker does every loop turn. A kernel without these flags (before 6.0)
/// gets the default ring: the flags are probed once, never a reason to fall back to epoll.
fn ring_setup() -> io_uring::Builder {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let mut tuned = io_uring::IoUring::builder();
    tuned.setup_coop_taskrun().setup_single_issuer();
    let supported = *SUPPORTED.get_or_init(|| {
        let probe = tuned.build(8);
        if let Err(e) = &probe {
            tracing::info!(error = %e, "io_uring without COOP_TASKRUN and SINGLE_ISSUER");
        }
        probe.is_ok()
    });
    if supported {
        tuned
    } else {
        io_uring::IoUring::builder()
    }
}

/// What a worker's accept loop needs besides its listener.
pub struct AcceptSettings {
    pub worker: usize,
    /// Open connections of the worker (shared by its listeners), and their bound.
    pub active: Rc<Cell<usize>>,
    pub max_connections: usize,
    pub grace: Duration,
    pub on_panic: OnPanic,
}

/// Accepts connections until shutdown, runs `serve` on each (at most `max_connections` open on
/// the worker at once; beyond that a new connection is closed at once), then waits up to
/// `grace` for them to end.
/// A connection whose task panics is closed; the others go on ([`panic_guard`]).
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    shutdown: Rc<LocalShutdown>,
    settings: AcceptSettings,
    serve: F,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let active = Rc::clone(&settings.active);
    loop {
        let accepted = monoio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait() => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                // EMFILE and friends: back off briefly rather than spin.
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if active.get() >= settings.max_connections {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        active.set(active.get() + 1);
        let guard = ActiveGuard(Rc::clone(&active));
        let fut = panic_guard::CatchPanic::new(
            serve(stream),
            settings.worker,
            Arc::clone(&settings.on_panic),
        );
        monoio::spawn(async move {
            let _ = fut.await;
            drop(guard);
        });
    }
    drop(listener);
    let deadline = Instant::now() + settings.grace;
    while active.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    if active.get() > 0 {
        tracing::warn!(
            open = active.get(),
            "grace period over; closing connections"
        );
    }
}

struct ActiveGuard(Rc<Cell<usize>>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// Raises the soft limit on open files to the hard limit (each connection through sluice is
/// two descriptors: a default soft limit of 1024 would cap it at ~500 streams). Returns the
/// limit now in force.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft)
        }
    }
}

/// The signals sluice handles (SIGTERM, SIGINT, SIGHUP, SIGXFSZ), caught from the moment this
/// exists: made before the process announces it is listening, so a SIGTERM sent as soon as the
/// announcement is seen still shuts down gracefully instead of killing the process.
pub type TerminationSignals = signal_hook::iterator::Signals;

/// Starts catching the signals [`wait_for_termination`] handles.
pub fn catch_termination_signals() -> std::io::Result<TerminationSignals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGXFSZ};
    signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGXFSZ])
}

/// Blocks the calling thread until SIGTERM or SIGINT, calling `on_hangup` for each SIGHUP.
/// SIGXFSZ (a file reached the size limit) is caught so it does not kill the process: the
/// write fails instead, and the ledger and audit log keep their records and retry.
pub fn wait_for_termination(
    mut signals: TerminationSignals,
    mut on_hangup: impl FnMut(),
) -> std::io::Result<i32> {
    use signal_hook::consts::{SIGHUP, SIGTERM, SIGXFSZ};
    let mut file_limit_reported = false;
    for signal in signals.forever() {
        match signal {
            SIGHUP => on_hangup(),
            SIGXFSZ if !file_limit_reported => {
                file_limit_reported = true;
                tracing::error!("a file reached the process's size limit (RLIMIT_FSIZE): writes fail until it is raised");
            }
            SIGXFSZ => {}
            _ => return Ok(signal),
        }
    }
    Ok(SIGTERM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A worker whose runtime panics is replaced on a fresh listener: the port keeps answering,
    /// and the panic is counted.
    #[test]
    fn a_panicking_worker_is_replaced_and_its_listener_shut_down() {
        let listeners = listener::bind_listeners("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let addr = listeners[0].local_addr().unwrap();
        let listeners = vec![listeners];
        let (mut trigger, shutdown) = shutdown_pair();
        let panics = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&panics);
        let on_panic: OnPanic = Arc::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
        });
        let starts = Arc::new(AtomicUsize::new(0));
        let workers = spawn_workers(
            "test-worker",
            IoDriver::Epoll,
            listeners,
            &shutdown,
            on_panic,
            move |_, listeners, _| {
                let first = starts.fetch_add(1, Ordering::Relaxed) == 0;
                async move {
                    let accepted = listeners[0].accept().await;
                    assert!(!first, "the first worker dies on its first connection");
                    if let Ok((mut stream, _)) = accepted {
                        use monoio::io::AsyncWriteRentExt;
                        let _ = stream.write_all(b"ok".to_vec()).await;
                    }
                }
            },
        )
        .unwrap();
        // The first connection lands on the worker that panics: it is reset, unanswered.
        let mut first = std::net::TcpStream::connect(addr).unwrap();
        let mut buf = Vec::new();
        let _ = first.read_to_end(&mut buf);
        assert!(buf.is_empty());
        // The replacement answers on the same port (polled until a deadline: starting a runtime
        // and binding again takes a while on a loaded machine).
        let deadline = Instant::now() + Duration::from_secs(20);
        let answered = std::iter::from_fn(|| {
            (Instant::now() < deadline).then(|| {
                let attempt = (|| {
                    let mut s = std::net::TcpStream::connect(addr).ok()?;
                    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                    let mut buf = Vec::new();
                    s.read_to_end(&mut buf).ok()?;
                    (buf == b"ok").then_some(())
                })();
                if attempt.is_none() {
                    #[expect(clippy::disallowed_methods, reason = "the poll's interval")]
                    std::thread::sleep(Duration::from_millis(10));
                }
                attempt
            })
        })
        .flatten()
        .next();
        assert!(answered.is_some(), "the replacement worker answered");
        assert_eq!(panics.load(Ordering::Relaxed), 1);
        trigger.trigger();
        for w in workers {
            w.join().unwrap();
        }
    }
}
