//! Test harness: the built `sluice` binary as gateway and as mock upstream, each on port 0 (the
//! port read back from its `listening on` line), plus a raw HTTP/1.1 client and helpers that
//! wait on conditions with deadlines (never a bare sleep).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "test harness: a failure here is a failed test"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod browser;
pub mod pki;
#[path = "../../src/bench/stores.rs"]
pub mod store_servers;
pub mod stores;

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// The gateway binary under test: this build's, or `SLUICE_TEST_GATEWAY_BIN` (to run a test
/// against another build, e.g. to show it fails on the previous commit). The mock is always
/// this build's.
pub fn gateway_bin() -> String {
    std::env::var("SLUICE_TEST_GATEWAY_BIN").unwrap_or_else(|_| BIN.to_string())
}

/// A spawned `sluice` process; killed (SIGKILL) when dropped unless already stopped.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin listener, when `[admin]` is configured (its line comes before the main one).
    pub admin_addr: Option<SocketAddr>,
    /// The console's address, as `serve` printed it.
    pub console_url: Option<String>,
    /// The HTTPS listener, when `server.listen_tls` is set (its line comes before the main one).
    pub tls_addr: Option<SocketAddr>,
    pub stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    fn spawn(bin: &str, args: &[&str], env: &[(&str, &str)], dir: tempfile::TempDir) -> Proc {
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn sluice");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("admin listening on ") {
                    let _ = tx.send(format!("admin {}", addr.trim()));
                }
                if let Some(rest) = line.strip_prefix("console at ") {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(format!("console {url}"));
                }
                if let Some(addr) = line.strip_prefix("tls listening on ") {
                    let _ = tx.send(format!("tls {}", addr.trim()));
                }
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                    break;
                }
            }
            for _ in lines {}
        });
        let (mut admin_addr, mut tls_addr, mut console_url) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(wait) else {
                let _ = child.kill();
                panic!(
                    "sluice {args:?} did not start: {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            };
            if let Some(admin) = line.strip_prefix("admin ") {
                admin_addr = Some(admin.parse().unwrap());
            } else if let Some(url) = line.strip_prefix("console ") {
                console_url = Some(url.to_string());
            } else if let Some(tls) = line.strip_prefix("tls ") {
                tls_addr = Some(tls.parse().unwrap());
            } else {
                break line.parse().unwrap();
            }
        };
        Proc {
            child,
            addr,
            admin_addr,
            tls_addr,
            console_url,
            stderr: stderr_path,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    /// Sends SIGHUP (sluice reloads its config).
    pub fn hangup(&self) {
        let _ = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits for the process to exit (bounded) and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::yield_now();
        }
        None
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The mock upstream.
pub fn mock(extra: &[&str]) -> Proc {
    let mut args = vec!["mock-upstream", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Proc::spawn(BIN, &args, &[], tempfile::tempdir().unwrap())
}

/// A gateway with its access log in a temp file.
pub struct Gateway {
    pub proc: Proc,
    pub access_log: PathBuf,
}

impl Gateway {
    /// The directory holding this gateway's files (access log, ledger, audit log).
    pub fn dir(&self) -> PathBuf {
        self.access_log
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default()
    }
}

impl std::ops::Deref for Gateway {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl std::ops::DerefMut for Gateway {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

/// Starts sluice with `config` (TOML; `[log]` is added by the harness) in front of `upstream`.
pub fn gateway(upstream: &str, config: &str) -> Gateway {
    gateway_with(upstream, config, &[])
}

pub fn gateway_with(upstream: &str, config: &str, extra: &[&str]) -> Gateway {
    gateway_env(upstream, config, extra, &[])
}

/// Like [`gateway_with`], with extra environment variables for the gateway process.
pub fn gateway_env(upstream: &str, config: &str, extra: &[&str], env: &[(&str, &str)]) -> Gateway {
    gateway_of(&gateway_bin(), upstream, config, extra, env)
}

/// Like [`gateway_env`], running the sluice executable at `bin`.
pub fn gateway_of(
    bin: &str,
    upstream: &str,
    config: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let access_log = dir.path().join("access.jsonl");
    let config_path = dir.path().join("sluice.toml");
    let mut text = format!(
        "{config}\n[log]\naccess_log = \"{}\"\nlevel = \"info\"\n",
        access_log.display()
    );
    // Ledger and audit log in the test's own directory (never in the working tree).
    if !config.contains("[store]") {
        text.push_str(&format!(
            "[store]\npath = \"{}\"\n",
            dir.path().join("sluice.db").display()
        ));
    }
    if !config.contains("[audit]") {
        text.push_str(&format!(
            "[audit]\npath = \"{}\"\n",
            dir.path().join("audit.jsonl").display()
        ));
    }
    std::fs::write(&config_path, text).unwrap();
    let config_arg = config_path.to_str().unwrap().to_string();
    let mut args = vec!["serve", "--config", &config_arg];
    if !extra.contains(&"--workers") && !config.contains("workers =") {
        args.extend_from_slice(&["--workers", "2"]);
    }
    if !extra.contains(&"--listen") {
        args.extend_from_slice(&["--listen", "127.0.0.1:0"]);
    }
    // `scripts/test` runs the integration suite a second time with SLUICE_TEST_IO_DRIVER=epoll.
    let driver = std::env::var("SLUICE_TEST_IO_DRIVER").unwrap_or_default();
    if !driver.is_empty() && !extra.contains(&"--io-driver") && !config.contains("io_driver") {
        args.extend_from_slice(&["--io-driver", &driver]);
    }
    if !upstream.is_empty() {
        args.extend_from_slice(&["--upstream", upstream]);
    }
    args.extend_from_slice(extra);
    Gateway {
        proc: Proc::spawn(bin, &args, env, dir),
        access_log,
    }
}

/// Starts sluice on the config file at `config` (whose files live where the test keeps them,
/// so a node can be killed and started again on the same ledger).
pub fn gateway_on_file(upstream: &str, config: &std::path::Path) -> Proc {
    let config_arg = config.to_str().unwrap().to_string();
    let mut args = vec![
        "serve",
        "--config",
        &config_arg,
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        upstream,
    ];
    let driver = std::env::var("SLUICE_TEST_IO_DRIVER").unwrap_or_default();
    if !driver.is_empty() {
        args.extend_from_slice(&["--io-driver", &driver]);
    }
    Proc::spawn(&gateway_bin(), &args, &[], tempfile::tempdir().unwrap())
}

impl Gateway {
    /// Access records written so far.
    /// The access records, in the order the requests arrived (their `time`, to the
    /// microsecond): each worker hands its records over in batches, so across workers the
    /// log's own order is not the requests' order.
    pub fn records(&self) -> Vec<Value> {
        let mut records: Vec<Value> = std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        records.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
        records
    }

    /// Waits until at least `n` access records exist, then returns them all.
    pub fn wait_records(&self, n: usize) -> Vec<Value> {
        wait_for(Duration::from_secs(10), || {
            let r = self.records();
            (r.len() >= n).then_some(r)
        })
        .unwrap_or_else(|| panic!("expected {n} access records, have {:?}", self.records()))
    }
}

impl Gateway {
    /// Sends with `send` (which returns the status and what the caller wants back) until a
    /// refusal holds with nothing in flight: after a refusal, waits until every request sent so
    /// far is in the access log (its reservation settled), then sends once more; returns that
    /// confirming refusal. Fails after 60 requests.
    pub fn spend_until_refused<R>(&self, mut send: impl FnMut() -> (u16, R)) -> R {
        let mut sent = self.records().len();
        for _ in 0..60 {
            let (status, _) = send();
            sent += 1;
            if status == 200 {
                continue;
            }
            self.wait_records(sent);
            let (status, confirmed) = send();
            sent += 1;
            if status != 200 {
                return confirmed;
            }
        }
        panic!("never refused in 60 requests");
    }
}

/// Polls `check` until it gives a value or `within` passes.
pub fn wait_for<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A JSON list of `[name, value]` pairs (captures, the mock's request log) as pairs.
pub fn header_pairs(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap_or_default().to_string(),
                        h[1].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What the mock upstream received, oldest first.
pub fn mock_requests(mock: &Proc) -> Vec<Value> {
    let resp = request(
        mock.addr,
        "GET /__mock/requests HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
    );
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    v["requests"].as_array().cloned().unwrap_or_default()
}

/// Empties the mock upstream's request log.
pub fn reset_mock(mock: &Proc) {
    request(
        mock.addr,
        "GET /__mock/reset HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
    );
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Asserts `resp` is `status` with an Anthropic error body of type `kind`.
pub fn assert_error(resp: &Response, status: u16, kind: &str) {
    assert_eq!(
        resp.status,
        status,
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    let v = resp.json();
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some(kind)),
        "{v}"
    );
}

/// A raw client connection (plain, or TLS with [`Client::connect_tls`]).
pub struct Client {
    pub stream: TcpStream,
    pub tls: Option<Box<rustls::ClientConnection>>,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).unwrap()
    }

    /// Like [`Client::connect`], for a server that may be down.
    pub fn try_connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Client {
            stream,
            tls: None,
            buf: Vec::new(),
        })
    }

    /// Connects and completes a TLS handshake for `server_name` (SNI) under `config`.
    pub fn connect_tls(
        addr: SocketAddr,
        config: std::sync::Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<Client, std::io::Error> {
        let mut client = Client::connect(addr);
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(config, name).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut client.stream)?;
        }
        client.tls = Some(Box::new(conn));
        Ok(client)
    }

    fn io(&mut self) -> Box<dyn ReadWrite + '_> {
        match &mut self.tls {
            Some(conn) => Box::new(rustls::Stream::new(conn.as_mut(), &mut self.stream)),
            None => Box::new(&mut self.stream),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).unwrap();
    }

    /// Like [`Client::send`], for a server that may go away meanwhile.
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut io = self.io();
        io.write_all(bytes)?;
        io.flush()
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        let read = self.io().read(&mut chunk);
        match read {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(_) => 0,
        }
    }

    /// Reads one response head (skipping 1xx ones); `None` if the connection closed first.
    fn next_head(&mut self) -> Option<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(len)) = resp.parse(&self.buf) {
                let status = resp.code.unwrap();
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                self.buf.drain(..len);
                if (100..200).contains(&status) {
                    continue;
                }
                return Some(Response {
                    status,
                    headers,
                    body: Vec::new(),
                });
            }
            if self.fill() == 0 {
                return None;
            }
        }
    }

    /// Reads one response (for a request with `method`); `None` if the connection closed first.
    pub fn read_response_for(&mut self, method: &str) -> Option<Response> {
        let mut resp = self.next_head()?;
        let status = resp.status;
        resp.body = if method == "HEAD" || status == 204 || status == 304 {
            Vec::new()
        } else if resp.header("transfer-encoding").is_some() {
            self.read_chunked()
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                if self.fill() == 0 {
                    panic!("body truncated");
                }
            }
            self.buf.drain(..len).collect()
        } else {
            while self.fill() > 0 {}
            std::mem::take(&mut self.buf)
        };
        Some(resp)
    }

    pub fn read_response(&mut self) -> Option<Response> {
        self.read_response_for("POST")
    }

    /// Reads one response to a POST and returns it only if it arrived whole: a chunked body
    /// up to its last chunk, a Content-Length body to its last byte (`None` when the
    /// connection ended first).
    pub fn read_whole_response(&mut self) -> Option<Response> {
        let head = self.next_head()?;
        let mut resp = head;
        if resp.header("transfer-encoding").is_some() {
            let mut body = Vec::new();
            let whole = self.read_chunks(|_, data| body.extend_from_slice(data));
            resp.body = body;
            return whole.then_some(resp);
        }
        let len: usize = resp.header("content-length")?.parse().ok()?;
        while self.buf.len() < len {
            if self.fill() == 0 {
                return None;
            }
        }
        resp.body = self.buf.drain(..len).collect();
        Some(resp)
    }

    fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if self.fill() == 0 {
                    return body;
                }
            };
            let size = usize::from_str_radix(
                std::str::from_utf8(&self.buf[..line_end])
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap(),
                16,
            )
            .unwrap();
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                if self.fill() == 0 {
                    return body;
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
            if size == 0 {
                return body;
            }
        }
    }

    /// Reads chunks as they come, calling `each` with (arrival time, payload) per chunk, until
    /// the terminating chunk. Returns false if the stream ended without one.
    pub fn read_chunks(&mut self, mut each: impl FnMut(Instant, &[u8])) -> bool {
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if self.fill() == 0 {
                    return false;
                }
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).unwrap(), 16)
                    .unwrap();
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                if self.fill() == 0 {
                    return false;
                }
            }
            let data: Vec<u8> = self.buf.drain(..size).collect();
            self.buf.drain(..2);
            if size == 0 {
                return true;
            }
            each(Instant::now(), &data);
        }
    }

    /// Reads the response head only.
    pub fn read_head(&mut self) -> Response {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(len)) = resp.parse(&self.buf) {
                let r = Response {
                    status: resp.code.unwrap(),
                    headers: resp
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    body: Vec::new(),
                };
                self.buf.drain(..len);
                return r;
            }
            assert!(self.fill() > 0, "connection closed before a response head");
        }
    }

    /// True if the server closes the connection (reads EOF) within the read timeout.
    pub fn closed(&mut self) -> bool {
        self.buf.clear();
        self.fill() == 0
    }
}

/// A byte stream a test client reads and writes: a socket, or TLS over one.
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// One request on a fresh connection.
pub fn request(addr: SocketAddr, raw: &str) -> Response {
    let mut c = Client::connect(addr);
    c.send(raw.as_bytes());
    let method = raw.split(' ').next().unwrap_or("GET").to_string();
    c.read_response_for(&method).expect("a response")
}

/// A POST /v1/messages request with `body` and extra header lines.
/// One admin API call with bearer `key`: the status and the JSON answer (`Null` if none).
pub fn admin_call(
    addr: SocketAddr,
    key: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Value) {
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = request(addr, &raw);
    let value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    (resp.status, value)
}

pub fn messages_request(body: &str, extra_headers: &str) -> String {
    format!(
        "POST /v1/messages?beta=true HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nanthropic-version: 2023-06-01\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub const SMALL_BODY: &str =
    r#"{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
pub const STREAM_BODY: &str = r#"{"model":"claude-opus-4-8","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// The shared captures directory (`../shared/captures`).
pub fn captures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/captures")
}

/// `/proc/net/tcp`'s state code for CLOSE_WAIT (the peer closed its side).
pub const TCP_CLOSE_WAIT: u8 = 0x08;

/// One socket as `/proc/net/tcp` lists it.
#[derive(Clone, Copy, Debug)]
pub struct SocketState {
    pub state: u8,
    /// Bytes received and not yet read by the process.
    pub rx_queue: u64,
}

/// The IPv4 TCP sockets on this machine connected to `port` (their remote end), from
/// `/proc/net/tcp`: a readiness probe for what happened on a connection inside another process.
pub fn sockets_towards(port: u16) -> Vec<SocketState> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if !fields.get(2)?.ends_with(&remote) {
                return None;
            }
            let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
            let (_, rx) = fields.get(4)?.split_once(':')?;
            Some(SocketState {
                state,
                rx_queue: u64::from_str_radix(rx, 16).ok()?,
            })
        })
        .collect()
}

/// Where the real clients live (the Claude Code CLI, the anthropic SDK, oidc-provider),
/// installing them first if needed (once per test binary); fails loudly when they cannot be.
pub fn real_clients() -> &'static PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dest = std::env::var_os("SLUICE_REAL_CLIENTS")
            .map_or_else(|| root.join(".real-clients"), PathBuf::from);
        let status = Command::new("bash")
            .arg(root.join("scripts/install-real-clients"))
            .env("SLUICE_REAL_CLIENTS", &dest)
            .status()
            .expect("run scripts/install-real-clients");
        assert!(
            status.success(),
            "REAL CLIENTS UNAVAILABLE: scripts/install-real-clients failed; see its output above"
        );
        dest
    })
}
