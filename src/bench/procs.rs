//! Child processes for the bench (the mock upstream, sluice, optionally nginx) and what /proc
//! says about them: CPU time and resident memory.
//!
//! Every child started here, and every scratch directory, is registered while it exists, so a
//! signal that ends the bench (SIGTERM from `timeout` or `kill`, SIGINT, SIGHUP) ends the
//! children too and then removes the directories: the bench's own `Drop`s never run when a
//! signal ends it, and without this the children were orphaned, still listening, and the
//! directories (configs, ledgers, audit logs) left in the temp directory. (The cluster bench's
//! PostgreSQL and Redis, started by `stores`, are not covered yet.)

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
#[expect(
    clippy::disallowed_types,
    reason = "the bench's list of children: taken at start, stop and on a signal, never by a gateway worker"
)]
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A signal is ending the bench: its thread is stopping the children and will exit.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// The children running now (process ids).
#[expect(
    clippy::disallowed_types,
    reason = "the bench's list of children: taken at start, stop and on a signal, never by a gateway worker"
)]
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn register(pid: u32) {
    if let Ok(mut running) = RUNNING.lock() {
        running.push(pid);
    }
}

fn unregister(pid: u32) {
    if let Ok(mut running) = RUNNING.lock() {
        running.retain(|p| *p != pid);
    }
}

/// The scratch directories that exist now, removed on a signal once the children are gone.
#[expect(
    clippy::disallowed_types,
    reason = "the bench's list of scratch directories: taken at creation, removal and on a signal, never by a gateway worker"
)]
static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A directory of the bench's own under the system's temp directory (`sluice-NAME-PID`), removed when
/// dropped or when a signal ends the bench.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn create(name: &str) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        if let Ok(mut scratch) = SCRATCH.lock() {
            scratch.push(dir.clone());
        }
        Ok(Self(dir))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        if let Ok(mut scratch) = SCRATCH.lock() {
            scratch.retain(|d| *d != self.0);
        }
    }
}

/// How long a signal's stop waits for killed children to be gone before removing the
/// directories they write to.
const KILLED_GONE: Duration = Duration::from_secs(2);

/// Ends every running child (and its own children: nginx's workers) and then the bench when
/// SIGTERM, SIGINT or SIGHUP arrives.
pub fn stop_children_on_signal() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                STOPPING.store(true, Ordering::SeqCst);
                stop_all_and_clean_up();
                std::process::exit(128 + signal);
            }
        })?;
    Ok(())
}

/// Waits for the process to end when a signal is ending it: a measurement that failed because
/// the signal's stop killed its servers must not end the bench first, with its own error and
/// status, while the children and scratch directories are still being removed.
pub fn let_a_signal_finish() {
    if STOPPING.load(Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
}

/// Kills every registered child and its children, waits (bounded) until they are gone, then
/// removes every scratch directory.
fn stop_all_and_clean_up() {
    let pids = RUNNING.lock().map(|r| r.clone()).unwrap_or_default();
    let mut killed = Vec::new();
    for pid in pids {
        for worker in children(pid) {
            kill(worker);
            killed.push(worker);
        }
        kill(pid);
        killed.push(pid);
    }
    let deadline = Instant::now() + KILLED_GONE;
    while killed.iter().any(|pid| running(*pid)) && Instant::now() < deadline {
        std::thread::yield_now();
    }
    let dirs = SCRATCH.lock().map(|d| d.clone()).unwrap_or_default();
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Still running: present in /proc and not a zombie (a killed direct child stays a zombie
/// until reaped, but has stopped writing).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

fn kill(pid: u32) {
    signal(pid, nix::sys::signal::Signal::SIGKILL);
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// How long a server has to finish after SIGTERM before it is killed.
const GRACEFUL_STOP: Duration = Duration::from_secs(5);

/// A child process that announced `listening on ADDR`; stopped when dropped — SIGTERM, so it
/// exits as it would in production (writers flushed, and an instrumented build writes its
/// profile: `scripts/build-pgo` trains on the bench), then SIGKILL if it is still there after
/// [`GRACEFUL_STOP`].
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// The HTTPS listener, when the child announced one (`tls listening on ADDR`).
    pub tls_addr: Option<SocketAddr>,
}

impl Server {
    /// Starts `sluice ARGS…` (this same executable) and waits for its `listening on` line.
    pub fn start_self(args: &[&str]) -> std::io::Result<Server> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(args)
            .env(
                "SLUICE_LOG",
                std::env::var("SLUICE_BENCH_CHILD_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        register(child.id());
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let mut tls_addr = None;
        let addr = loop {
            line.clear();
            if stdout.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other("child exited before listening"));
            }
            if let Some(addr) = line.strip_prefix("tls listening on ") {
                tls_addr = Some(addr.trim().parse().map_err(std::io::Error::other)?);
            } else if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.trim().parse().map_err(std::io::Error::other)?;
            }
        };
        // Keep draining stdout so the child never blocks on it: discarded in bulk, not split
        // into lines (the drain shares the cores with what is measured).
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Ok(Server {
            child,
            addr,
            tls_addr,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        signal(self.child.id(), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + GRACEFUL_STOP;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            #[expect(
                clippy::disallowed_methods,
                reason = "the bench waiting for a child to exit, not a gateway worker"
            )]
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        unregister(self.child.id());
    }
}

/// CPU time a process and its live children have used, as (user, system): nginx's master and
/// its workers count as one proxy.
pub fn cpu_split(pid: u32) -> Option<(Duration, Duration)> {
    let (mut user, mut system) = own_cpu_split(pid)?;
    for child in children(pid) {
        if let Some((u, s)) = own_cpu_split(child) {
            user += u;
            system += s;
        }
    }
    Some((user, system))
}

/// The live children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

/// CPU time one process has used, as (user, system).
fn own_cpu_split(pid: u32) -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let secs = |t: u64| Duration::from_secs_f64(t as f64 / clock_ticks() as f64);
    Some((secs(utime), secs(stime)))
}

fn clock_ticks() -> u64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on.
    100
}

/// Resident set size and its peak, in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Anonymous resident memory (heap, stacks, rings: what the process itself holds, not its
/// executable's pages), in KiB.
pub fn anonymous_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Anonymous:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// nginx's HTTPS settings for the TLS bench: the same certificate and key as sluice's, TLS 1.3
/// only, the cipher suite and group the load offers, session tickets on.
pub struct NginxTls<'a> {
    pub cert: &'a std::path::Path,
    pub key: &'a std::path::Path,
}

/// nginx as a reverse proxy to `upstream`, when nginx is installed.
pub struct Nginx {
    pub child: Child,
    pub addr: SocketAddr,
    /// nginx's prefix: config, pid file, logs; removed after nginx stops.
    _dir: ScratchDir,
}

impl Nginx {
    /// nginx with `workers` worker processes (one: a single process, no master).
    pub fn start(upstream: SocketAddr, workers: usize) -> Option<Nginx> {
        Self::start_with(upstream, None, workers)
    }

    /// nginx terminating HTTPS (`tls`) or plain HTTP in front of `upstream`.
    pub fn start_with(
        upstream: SocketAddr,
        tls: Option<NginxTls<'_>>,
        workers: usize,
    ) -> Option<Nginx> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let scratch = ScratchDir::create(&format!("bench-nginx-{port}")).ok()?;
        let dir = scratch.path();
        let listen = match &tls {
            Some(t) => format!(
                "listen 127.0.0.1:{port} ssl;\n  ssl_certificate {};\n  ssl_certificate_key {};\n  ssl_protocols TLSv1.3;\n  ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;\n  ssl_ecdh_curve X25519;\n  ssl_session_tickets on;",
                t.cert.display(),
                t.key.display()
            ),
            None => format!("listen 127.0.0.1:{port};"),
        };
        std::fs::create_dir_all(dir.join("logs")).ok()?;
        let conf = format!(
            "worker_processes {workers};\nmaster_process {master};\ndaemon off;\nerror_log {d}/logs/error.log;\npid {d}/nginx.pid;\nevents {{ worker_connections 4096; }}\nhttp {{\n log_format combined_times '$remote_addr - [$time_local] \"$request\" $status $body_bytes_sent $request_time $upstream_response_time';\n access_log {d}/logs/access.log combined_times;\n client_body_temp_path {d};\n proxy_temp_path {d};\n upstream mock {{ server {upstream}; keepalive 128; keepalive_requests 100000000; }}\n server {{\n  {listen}\n  keepalive_requests 100000000;\n  client_max_body_size 32m;\n  client_body_buffer_size 1m;\n  location / {{ proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; proxy_request_buffering on; }}\n }}\n}}\n",
            d = dir.display(),
            workers = workers.max(1),
            master = if workers > 1 { "on" } else { "off" },
        );
        let conf_path = dir.join("nginx.conf");
        #[expect(
            clippy::disallowed_methods,
            reason = "bench set-up, not a gateway worker"
        )]
        std::fs::write(&conf_path, conf).ok()?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        register(child.id());
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
        // Stopped and cleaned up by its Drop if it never comes up.
        let nginx = Nginx {
            child,
            addr,
            _dir: scratch,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::yield_now();
        }
        Some(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // A killed master leaves its workers behind: they go first.
        for worker in children(self.child.id()) {
            kill(worker);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        unregister(self.child.id());
        // `_dir` is removed as it drops, after this.
    }
}
