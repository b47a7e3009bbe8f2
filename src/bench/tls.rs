//! `sluice bench --tls`: HTTPS termination, sluice with governance on against nginx, in one run.
//! Both serve the same certificate (ECDSA P-256, made with `openssl` for the run) and negotiate
//! the same parameters (the load offers only TLS 1.3, AES-128-GCM and X25519). Measured: latency
//! at concurrency 1 on keep-alive connections with the Claude Code-sized request (added over
//! plain HTTP straight to the mock, and split into what the same proxy adds over plain HTTP and
//! what TLS adds on top), keep-alive throughput, and full handshakes per second (a new
//! connection per request, no resumption), each with the server's CPU per request.
//!
//! The load's TLS client runs on one core of the same machine: when it is the bottleneck both
//! servers are held to the same rate, and the CPU per request tells them apart.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Serialize;

use super::load::{self, Dial};
use super::procs::{cpu_split, Nginx, NginxTls};
use super::{BenchArgs, BenchError, Percentiles, ScratchDir};

/// One HTTPS server's figures.
#[derive(Debug, Serialize, Default)]
pub struct TlsFigures {
    /// Keep-alive, concurrency 1, the Claude Code-sized request.
    pub latency_us: Percentiles,
    /// Over plain HTTP straight to the mock.
    pub latency_added_us: Percentiles,
    /// The same proxy over plain HTTP, over plain HTTP straight to the mock (same run).
    pub plain_latency_added_us: Percentiles,
    /// HTTPS latency minus the same proxy's plain-HTTP latency: what TLS itself costs it.
    pub tls_own_latency_us: Percentiles,
    /// Keep-alive connections at the bench's concurrency, small requests.
    pub throughput_rps: f64,
    pub cpu_us_per_request: f64,
    /// A full handshake and one small request per connection.
    pub handshakes_per_second: f64,
    pub cpu_us_per_handshake: f64,
}

/// The TLS comparison.
#[derive(Debug, Serialize)]
pub struct TlsReport {
    pub cipher_suite: &'static str,
    pub direct_plain_latency_us: Percentiles,
    pub sluice: TlsFigures,
    pub nginx: Option<TlsFigures>,
    pub sluice_vs_nginx_throughput: Option<f64>,
    pub sluice_vs_nginx_handshakes: Option<f64>,
}

/// Runs the TLS comparison and prints it.
pub fn run(args: &BenchArgs) -> Result<TlsReport, BenchError> {
    let scratch = ScratchDir::create("bench-tls")?;
    let dir = scratch.path().to_path_buf();
    let (cert, key) = make_certificate(&dir)?;
    let mock = super::start_mock()?;
    let upstream = format!("http://{}", mock.addr);
    let tls = format!(
        "listen_tls = \"127.0.0.1:0\"\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let records = format!(
        "[store]\npath = \"{}\"\n[audit]\npath = \"{}\"\n",
        dir.join("sluice.db").display(),
        dir.join("sluice-audit.jsonl").display()
    );
    let config = format!("{tls}{}{records}", super::governance_config());
    let sluice = super::start_sluice(args, &dir, "sluice-tls", &config, Some(&upstream))?;
    let sluice_tls = sluice
        .tls_addr
        .ok_or_else(|| std::io::Error::other("sluice announced no HTTPS listener"))?;
    let nginx = Nginx::start_with(
        mock.addr,
        Some(NginxTls {
            cert: &cert,
            key: &key,
        }),
        args.worker_count(),
    );
    let nginx_plain = Nginx::start(mock.addr, args.worker_count());
    let connector = monoio_rustls::TlsConnector::from(client_config()?);
    let mut servers = vec![Proxy {
        tls: Dial::Tls(sluice_tls, connector.clone()),
        plain: sluice.addr,
        pid: sluice.pid(),
        jwt: true,
    }];
    if let (Some(tls), Some(plain)) = (&nginx, &nginx_plain) {
        servers.push(Proxy {
            tls: Dial::Tls(tls.addr, connector.clone()),
            plain: plain.addr,
            pid: tls.child.id(),
            jwt: false,
        });
    }
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()?;
    let report = runtime.block_on(measure(args, mock.addr, &servers))?;
    print(&report);
    super::write_json(args, &report)?;
    Ok(report)
}

/// One proxy under test: its HTTPS and plain listeners (the plain one for latency only).
struct Proxy {
    tls: Dial,
    plain: std::net::SocketAddr,
    /// The process serving HTTPS (its CPU is measured).
    pid: u32,
    /// Every other request carries a JWT (the governed sluice).
    jwt: bool,
}

impl Proxy {
    fn requests(&self, addr: std::net::SocketAddr, path: &str, body: &[u8]) -> load::Requests {
        super::Target {
            addr,
            pid: self.pid,
            jwt: self.jwt,
        }
        .requests(path, body)
    }
}

async fn measure(
    args: &BenchArgs,
    direct: std::net::SocketAddr,
    servers: &[Proxy],
) -> std::io::Result<TlsReport> {
    let big = super::claude_code_sized_body(false);
    let path = "/v1/messages?beta=true";
    // Latency in alternating blocks: direct, then each proxy over HTTPS and over plain HTTP.
    let dials: Vec<(Dial, load::Requests)> = std::iter::once((
        Dial::Plain(direct),
        load::request(direct, path, &big).into(),
    ))
    .chain(servers.iter().flat_map(|p| {
        let tls_addr = match &p.tls {
            Dial::Plain(a) | Dial::Tls(a, _) => *a,
        };
        [
            (p.tls.clone(), p.requests(tls_addr, path, &big)),
            (Dial::Plain(p.plain), p.requests(p.plain, path, &big)),
        ]
    }))
    .collect();
    let mut lats = Vec::new();
    for (dial, reqs) in &dials {
        lats.push(load::measure(dial.clone(), reqs.clone(), 200).await?);
    }
    let block = 250.min(args.requests.max(1));
    let mut done = 0;
    while done < args.requests {
        let n = block.min(args.requests - done);
        for ((dial, reqs), lat) in dials.iter().zip(lats.iter_mut()) {
            load::sequential(dial.clone(), reqs.clone(), n, lat).await?;
        }
        done += n;
    }
    let p = |i: usize| {
        lats.get(i)
            .map(|l| Percentiles::of(&l.total))
            .unwrap_or_default()
    };
    let direct_p = p(0);
    let mut figures = Vec::new();
    for (i, proxy) in servers.iter().enumerate() {
        let (tls, plain) = (p(1 + 2 * i), p(2 + 2 * i));
        let (throughput_rps, cpu_us_per_request) =
            rate(args, proxy, args.throughput_requests, false).await?;
        let (handshakes_per_second, cpu_us_per_handshake) =
            rate(args, proxy, args.throughput_requests / 10, true).await?;
        figures.push(TlsFigures {
            latency_us: tls,
            latency_added_us: tls.minus(&direct_p),
            plain_latency_added_us: plain.minus(&direct_p),
            tls_own_latency_us: tls.minus(&plain),
            throughput_rps,
            cpu_us_per_request,
            handshakes_per_second,
            cpu_us_per_handshake,
        });
    }
    let mut figures = figures.into_iter();
    let sluice = figures.next().unwrap_or_default();
    let nginx = figures.next();
    Ok(TlsReport {
        cipher_suite: "TLS13_AES_128_GCM_SHA256, X25519, ECDSA P-256",
        direct_plain_latency_us: direct_p,
        sluice_vs_nginx_throughput: nginx
            .as_ref()
            .map(|n| sluice.throughput_rps / n.throughput_rps),
        sluice_vs_nginx_handshakes: nginx
            .as_ref()
            .map(|n| sluice.handshakes_per_second / n.handshakes_per_second),
        sluice,
        nginx,
    })
}

/// Requests per second over `n` small requests, and the server's CPU per request.
async fn rate(
    args: &BenchArgs,
    proxy: &Proxy,
    n: usize,
    new_connections: bool,
) -> std::io::Result<(f64, f64)> {
    let small = br#"{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let addr = match &proxy.tls {
        Dial::Plain(a) | Dial::Tls(a, _) => *a,
    };
    let req = proxy.requests(addr, "/v1/messages?beta=true", small);
    let run = |count: usize| {
        let (dial, req) = (proxy.tls.clone(), req.clone());
        async move {
            if new_connections {
                load::concurrent_new_connections(dial, req, args.concurrency, count).await
            } else {
                load::concurrent(dial, req, args.concurrency, count).await
            }
        }
    };
    run(n / 10).await?;
    let before = cpu_split(proxy.pid).unwrap_or_default();
    let elapsed = run(n).await?;
    let after = cpu_split(proxy.pid).unwrap_or_default();
    let cpu = (after.0 + after.1).saturating_sub(before.0 + before.1);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    Ok((n as f64 / elapsed.as_secs_f64(), per(cpu)))
}

/// A self-signed ECDSA P-256 certificate for `localhost`, valid two days.
fn make_certificate(dir: &Path) -> std::io::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| {
            std::io::Error::other(format!(
                "openssl (needed to make the bench's certificate): {e}"
            ))
        })?;
    if !status.success() {
        return Err(std::io::Error::other(
            "openssl could not make a certificate",
        ));
    }
    Ok((cert, key))
}

/// The load's TLS client: TLS 1.3 with AES-128-GCM and X25519 only, ALPN http/1.1, no
/// resumption (every new connection is a full handshake), and the bench's own certificate
/// accepted without a chain (the handshake signature is still verified).
fn client_config() -> std::io::Result<Arc<rustls::ClientConfig>> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .retain(|s| s.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    provider
        .kx_groups
        .retain(|g| g.name() == rustls::NamedGroup::X25519);
    let provider = Arc::new(provider);
    let verifier = Arc::new(BenchCertificate(Arc::clone(&provider)));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Accepts the bench's self-signed certificate; verifies handshake signatures as usual.
#[derive(Debug)]
struct BenchCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for BenchCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[allow(clippy::print_stdout, reason = "the bench's report")]
fn print(r: &TlsReport) {
    let p = |x: &Percentiles| format!("{:>8.1} {:>8.1} {:>8.1}", x.p50, x.p99, x.p999);
    println!(
        "sluice bench --tls ({}); µs as p50 p99 p99.9",
        r.cipher_suite
    );
    println!(
        "{:<34} {}",
        "direct (plain HTTP), conc. 1",
        p(&r.direct_plain_latency_us)
    );
    let rows = std::iter::once(("sluice HTTPS (governance on)", Some(&r.sluice)))
        .chain(std::iter::once(("nginx HTTPS", r.nginx.as_ref())));
    for (name, figures) in rows {
        let Some(f) = figures else {
            println!("{name:<34} (nginx not installed)");
            continue;
        };
        println!("{name}");
        println!("  {:<32} {}", "latency, conc. 1", p(&f.latency_us));
        println!("  {:<32} {}", "added over direct", p(&f.latency_added_us));
        println!(
            "  {:<32} {}",
            "  of which plain HTTP (same proxy)",
            p(&f.plain_latency_added_us)
        );
        println!("  {:<32} {}", "  of which TLS", p(&f.tls_own_latency_us));
        println!(
            "  {:<32} {:>10.0} req/s, {:.1} µs CPU/req",
            "keep-alive throughput", f.throughput_rps, f.cpu_us_per_request
        );
        println!(
            "  {:<32} {:>10.0} /s, {:.1} µs CPU/handshake",
            "new connections (full handshake)", f.handshakes_per_second, f.cpu_us_per_handshake
        );
    }
    if let (Some(t), Some(h)) = (r.sluice_vs_nginx_throughput, r.sluice_vs_nginx_handshakes) {
        println!("sluice/nginx: throughput {t:.2}x, handshakes {h:.2}x");
    }
}
