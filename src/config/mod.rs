//! Configuration: the TOML file ([`file`]) is parsed with `deny_unknown_fields`, command-line
//! overrides are applied, and [`build`] converts the result once into a [`Config`] that cannot
//! hold an invalid value (durations are `Duration`, every route names an existing upstream).
//! Every error names the exact path of the offending field (`upstreams[1].url`).
//! `sluice check-config` runs the same code.

pub mod file;
pub mod jwt;
pub mod keys;
pub mod live;
pub mod tls;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use thiserror::Error;

use crate::http1::HeadLimits;
use crate::provider::aws_credentials::{AwsCredentialCell, AwsCredentialsConfig, CredentialSource};
use crate::provider::connect::tls_connector;
use crate::provider::google_auth::{GoogleTokenCell, ServiceAccount, TokenSource};
use crate::provider::upstream::{
    vertex_url, AuthHeader, Credential, Provider, TlsClient, Upstream,
};
use crate::runtime::writer_priority::WriterPriority;
use crate::runtime::IoDriver;
use crate::usage::pricing::{Price, PriceTable};
use file::FileConfig;
pub use keys::{KeyTable, VirtualKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::sync::Arc;

/// A configuration problem, with the path of the field at fault.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// Command-line settings that override the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub upstream_api_key: Option<String>,
    pub workers: Option<usize>,
    pub io_driver: Option<String>,
}

/// Size limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub head: HeadLimits,
    pub max_body_bytes: u64,
    pub replay_buffer_bytes: usize,
    pub max_connections_per_worker: usize,
}

/// Every timeout sluice applies.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From a connection's first byte (or a request's start) to its complete head.
    pub head_read: Duration,
    /// How long an idle keep-alive client connection is kept.
    pub idle_keep_alive: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_read: Duration,
    /// Longest a whole request body may take to arrive.
    pub body_total: Duration,
    /// Longest wait for a client to take a piece of the response.
    pub client_write: Duration,
    pub upstream_connect: Duration,
    /// From the request sent to the first byte of the upstream's response.
    pub upstream_first_byte: Duration,
    /// Longest silence inside an upstream response body (streams ping well within it).
    pub stream_idle: Duration,
    /// Pooled upstream connections idle longer than this are closed, not reused.
    pub pool_idle: Duration,
    /// Silence after which sluice pings the client of a stream it converts to SSE.
    pub ping_interval: Duration,
}

/// Which models go where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelPattern {
    Any,
    Exact(String),
    Prefix(String),
}

impl ModelPattern {
    pub(crate) fn parse(text: &str) -> ModelPattern {
        match text.strip_suffix('*') {
            Some("") => ModelPattern::Any,
            Some(prefix) => ModelPattern::Prefix(prefix.to_string()),
            None => ModelPattern::Exact(text.to_string()),
        }
    }

    /// Whether `model` matches.
    pub fn matches(&self, model: &str) -> bool {
        match self {
            ModelPattern::Any => true,
            ModelPattern::Exact(m) => m == model,
            ModelPattern::Prefix(p) => model.starts_with(p.as_str()),
        }
    }
}

/// One deployment of a route: an upstream, the model id it serves, its share of first picks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// Index into `config.upstreams`.
    pub upstream: usize,
    /// Send this model id upstream instead of the client's.
    pub upstream_model: Option<String>,
    pub weight: u32,
}

/// How a route picks its first deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    Weighted,
    LeastInFlight,
    PowerOfTwo,
    Ordered,
}

/// A model route: models matching `pattern` go to one of `deployments`, the others being the
/// fallbacks, in order.
#[derive(Clone, Debug)]
pub struct Route {
    pub pattern: ModelPattern,
    pub deployments: Vec<Deployment>,
    pub balance: Balance,
    pub max_attempts: usize,
}

/// What sluice does with the Message Batches API, whose requests name their models inside
/// the batch body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageBatches {
    /// Refused (403): the default.
    Refuse,
    /// A batch is created only if every request in it passes the key's model allow-list and
    /// routes unaliased; the maximum cost of all of them is reserved and kept (results arrive
    /// later, outside any request sluice sees). Reading and cancelling batches pass through.
    Governed,
}

/// Ejection and retry-budget settings.
#[derive(Clone, Copy, Debug)]
pub struct Routing {
    pub eject_after_failures: u32,
    pub eject_base: Duration,
    pub eject_max: Duration,
    pub retry_budget_ratio: f64,
    pub retry_budget_min_per_second: u32,
}

/// A model `/v1/models` lists.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub id: String,
    pub display_name: String,
    pub created_at: String,
}

/// Where access records go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(String),
    Off,
}

/// The validated configuration snapshot every worker reads.
#[derive(Clone, Debug)]
pub struct Config {
    /// The plain HTTP listener, if any.
    pub listen: Option<SocketAddr>,
    /// The HTTPS listener, if any (with [`Config::tls`]).
    pub listen_tls: Option<SocketAddr>,
    pub tls: Option<Arc<crate::tls::EdgeTls>>,
    pub workers: usize,
    pub io_driver: IoDriver,
    /// How the record writer threads are scheduled.
    pub writer_priority: WriterPriority,
    /// Whether the Message Batches API is refused or governed per batched request.
    pub message_batches: MessageBatches,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub grace_period: Duration,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
    pub routing: Routing,
    /// Where requests without a model (other `/v1/*` calls) go: the first upstream.
    pub default_upstream: usize,
    pub models: Vec<ModelInfo>,
    pub keys: KeyTable,
    /// Keys issued with `sluice keys create`, kept current by the key store's refresher.
    pub issued_keys: std::sync::Arc<crate::store::keys::IssuedKeys>,
    pub pricing: PriceTable,
    pub access_log: AccessLogTarget,
    pub log_level: String,
    pub store: StoreSettings,
    pub audit: AuditSettings,
    pub admin: Option<AdminSettings>,
    pub jwt: Option<std::sync::Arc<jwt::JwtVerifier>>,
    /// Rate-limit counters, shared by all workers (atomics).
    pub limiter: std::sync::Arc<crate::limits::RateLimiter>,
    pub budgets: std::sync::Arc<crate::limits::budget::Budgets>,
    /// Active health of the upstreams, shared by every worker's balancer.
    pub health: std::sync::Arc<crate::provider::health::HealthBoard>,
    /// Identifies the upstream and routing settings: a reload that keeps it keeps the workers'
    /// pooled connections, balancer state, health probes and upstream credentials.
    pub upstreams_fingerprint: u64,
}

/// When a committed record is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Committed every commit interval; a crash loses at most that window.
    Interval,
    /// Committed and fsynced before the response's last byte is released.
    Sync,
}

/// The spend ledger's settings.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    pub path: Option<std::path::PathBuf>,
    pub commit_interval: Duration,
    /// Refuse new requests while the ledger is failing or behind.
    pub fail_closed: bool,
    pub durability: Durability,
}

/// The admin API's listener and key (only its digest).
#[derive(Clone, Debug)]
pub struct AdminSettings {
    pub listen: std::net::SocketAddr,
    pub key_digest: [u8; 32],
}

/// The audit log's settings.
#[derive(Clone, Debug)]
pub struct AuditSettings {
    pub path: Option<std::path::PathBuf>,
    pub max_bytes: u64,
}

impl Config {
    /// The routes whose served model has no price (and no fallback price is declared), as
    /// (`routes[i]` or `routes[i].deployments[j]`, served model): requests to them are refused
    /// under any budget. A route that forwards models as sent (a `*` or prefix pattern without
    /// `upstream_model`) is priced per request and not listed.
    pub fn unpriced_routes(&self) -> Vec<(String, String)> {
        let mut unpriced = Vec::new();
        for (i, route) in self.routes.iter().enumerate() {
            for (j, deployment) in route.deployments.iter().enumerate() {
                let served = match (&deployment.upstream_model, &route.pattern) {
                    (Some(alias), _) => alias.as_str(),
                    (None, ModelPattern::Exact(model)) => model.as_str(),
                    (None, _) => continue,
                };
                if self.pricing.lookup(served).is_none() {
                    let place = if route.deployments.len() == 1 {
                        format!("routes[{i}]")
                    } else {
                        format!("routes[{i}].deployments[{j}]")
                    };
                    unpriced.push((place, served.to_string()));
                }
            }
        }
        unpriced
    }

    /// True when no credential is configured (no virtual or AWS keys, no JWT): every client is
    /// accepted.
    pub fn open_access(&self) -> bool {
        self.keys.is_empty()
            && self.jwt.is_none()
            && !self.issued_keys.issued_any()
            && self
                .tls
                .as_ref()
                .is_none_or(|t| t.client_identities.is_empty())
    }
}

/// Reads and parses a config file (no overrides applied yet).
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.display().to_string(),
        source,
    })?;
    parse_text(&text)
}

/// Parses config text; errors carry the path of the field (`server.listen`).
pub fn parse_text(text: &str) -> Result<FileConfig, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().to_string();
        let where_ = inner
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        invalid(
            if path == "." {
                "(top level)".into()
            } else {
                path
            },
            format!("{message}{where_}"),
        )
    })
}

/// Applies overrides and validates: the one way a [`Config`] comes into being.
pub fn build(mut file: FileConfig, overrides: &Overrides) -> Result<Config, ConfigError> {
    apply_overrides(&mut file, overrides);
    let (listen, listen_tls, tls) = build_listeners(&file)?;
    let workers = match file.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let upstreams_fingerprint = fingerprint(&(&file.upstreams, &file.routing));
    let upstreams = build_upstreams(&file)?;
    let upstream_count = upstreams.len();
    let routes = build_routes(&file, &upstreams)?;
    let io_driver = match file.server.io_driver.as_str() {
        "auto" => IoDriver::Auto,
        "io_uring" => IoDriver::IoUring,
        "epoll" => IoDriver::Epoll,
        other => {
            return Err(invalid(
                "server.io_driver",
                format!("`{other}`: expected `auto`, `io_uring` or `epoll`"),
            ))
        }
    };
    let writer_priority = match file.server.writer_priority.as_str() {
        "idle" => WriterPriority::Idle,
        "normal" => WriterPriority::Normal,
        other => {
            return Err(invalid(
                "server.writer_priority",
                format!("`{other}`: expected `idle` or `normal`"),
            ))
        }
    };
    let message_batches = match file.server.message_batches.as_str() {
        "refuse" => MessageBatches::Refuse,
        "governed" => MessageBatches::Governed,
        other => {
            return Err(invalid(
                "server.message_batches",
                format!("`{other}`: expected `refuse` or `governed`"),
            ))
        }
    };
    Ok(Config {
        listen,
        listen_tls,
        tls,
        workers,
        io_driver,
        writer_priority,
        message_batches,
        limits: build_limits(&file)?,
        timeouts: build_timeouts(&file)?,
        grace_period: duration("server.grace_period", &file.server.grace_period)?,
        default_upstream: 0,
        upstreams,
        routes,
        routing: build_routing(&file)?,
        models: build_models(&file),
        keys: KeyTable::build(&file.keys, &file.aws_keys)?,
        issued_keys: std::sync::Arc::default(),
        pricing: build_pricing(&file)?,
        access_log: match file.log.access_log.as_str() {
            "-" => AccessLogTarget::Stdout,
            "off" | "" => AccessLogTarget::Off,
            path => AccessLogTarget::File(path.to_string()),
        },
        log_level: file.log.level.clone(),
        store: StoreSettings {
            path: (file.store.path != "off").then(|| file.store.path.clone().into()),
            commit_interval: duration("store.commit_interval", &file.store.commit_interval)?,
            fail_closed: match file.store.on_failure.as_str() {
                "open" => false,
                "closed" => true,
                other => {
                    return Err(invalid(
                        "store.on_failure",
                        format!("`{other}`: expected open or closed"),
                    ))
                }
            },
            durability: match file.store.durability.as_str() {
                "interval" => Durability::Interval,
                "sync" => Durability::Sync,
                other => {
                    return Err(invalid(
                        "store.durability",
                        format!("`{other}`: expected interval or sync"),
                    ))
                }
            },
        },
        admin: build_admin(&file)?,
        limiter: std::sync::Arc::new(build_limiter(&file)),
        budgets: std::sync::Arc::new(build_budgets(&file)?),
        health: crate::provider::health::HealthBoard::new(upstream_count),
        upstreams_fingerprint,
        jwt: match &file.jwt {
            Some(j) => Some(std::sync::Arc::new(jwt::JwtVerifier::build(j)?)),
            None => None,
        },
        audit: AuditSettings {
            path: (file.audit.path != "off").then(|| file.audit.path.clone().into()),
            max_bytes: file.audit.max_bytes.max(4096),
        },
    })
}

/// The plain and HTTPS listeners (at least one), and the HTTPS settings.
#[allow(clippy::type_complexity)]
fn build_listeners(
    file: &FileConfig,
) -> Result<
    (
        Option<SocketAddr>,
        Option<SocketAddr>,
        Option<Arc<crate::tls::EdgeTls>>,
    ),
    ConfigError,
> {
    let address = |path: &str, text: &str| -> Result<Option<SocketAddr>, ConfigError> {
        match text {
            "off" | "" => Ok(None),
            _ => text
                .parse()
                .map(Some)
                .map_err(|_| invalid(path, format!("`{text}` is not an address:port"))),
        }
    };
    let listen = address("server.listen", &file.server.listen)?;
    let listen_tls = address("server.listen_tls", &file.server.listen_tls)?;
    let tls = match (&file.server.tls, listen_tls) {
        (Some(tls), Some(_)) => Some(Arc::new(tls::build(tls, std::time::SystemTime::now())?)),
        (None, None) => None,
        (None, Some(_)) => {
            return Err(invalid(
                "server.listen_tls",
                "an HTTPS listener needs [server.tls] with cert_file and key_file",
            ))
        }
        (Some(_), None) => {
            return Err(invalid(
                "server.tls",
                "set server.listen_tls to the HTTPS listener's address",
            ))
        }
    };
    if listen.is_none() && listen_tls.is_none() {
        return Err(invalid(
            "server.listen",
            "`off` needs an HTTPS listener (server.listen_tls)",
        ));
    }
    Ok((listen, listen_tls, tls))
}

fn apply_overrides(file: &mut FileConfig, o: &Overrides) {
    if let Some(listen) = &o.listen {
        file.server.listen = listen.clone();
    }
    if let Some(workers) = o.workers {
        file.server.workers = workers;
    }
    if let Some(driver) = &o.io_driver {
        file.server.io_driver = driver.clone();
    }
    if file.upstreams.is_empty() {
        file.upstreams.push(file::UpstreamFile {
            name: "anthropic".into(),
            provider: None,
            url: Some("https://api.anthropic.com".into()),
            region: None,
            aws_access_key_id: None,
            aws_secret_access_key: None,
            aws_session_token: None,
            aws_profile: None,
            aws_credential_process: None,
            project: None,
            gcp_service_account_file: None,
            gcp_token_command: None,
            health_check_path: None,
            health_check_interval: None,
            api_key: None,
            api_key_env: Some("ANTHROPIC_API_KEY".into()),
            auth_header: None,
            ca_file: None,
        });
    }
    if let Some(first) = file.upstreams.first_mut() {
        if let Some(url) = &o.upstream {
            first.url = Some(url.clone());
        }
        if let Some(key) = &o.upstream_api_key {
            first.api_key = Some(key.clone());
            first.api_key_env = None;
        }
    }
    if file.routes.is_empty() {
        let name = file
            .upstreams
            .first()
            .map(|u| u.name.clone())
            .unwrap_or_default();
        file.routes.push(file::RouteFile {
            model: "*".into(),
            upstream: Some(name),
            upstream_model: None,
            deployments: Vec::new(),
            balance: None,
            max_attempts: None,
        });
    }
}

fn build_upstreams(file: &FileConfig) -> Result<Vec<Upstream>, ConfigError> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, u) in file.upstreams.iter().enumerate() {
        let path = format!("upstreams[{i}]");
        if u.name.is_empty() || !names.insert(u.name.clone()) {
            return Err(invalid(
                format!("{path}.name"),
                "must be a unique, non-empty name",
            ));
        }
        let header = match u.auth_header.as_deref() {
            None | Some("x-api-key") => AuthHeader::XApiKey,
            Some("authorization") | Some("bearer") => AuthHeader::Bearer,
            Some(other) => {
                return Err(invalid(
                    format!("{path}.auth_header"),
                    format!("`{other}`: expected `x-api-key` or `authorization`"),
                ))
            }
        };
        if u.api_key.is_some() && u.api_key_env.is_some() {
            return Err(invalid(
                format!("{path}.api_key"),
                "set api_key or api_key_env, not both",
            ));
        }
        let secret = match (&u.api_key, &u.api_key_env) {
            (Some(key), _) => Some(key.clone()),
            (None, Some(var)) => std::env::var(var).ok().filter(|v| !v.is_empty()),
            (None, None) => None,
        };
        let provider = build_provider(u, &path, secret.is_some())?;
        let header = if provider.is_bedrock() || provider.is_vertex() {
            AuthHeader::Bearer
        } else {
            header
        };
        let credential = secret.map(|s| Credential::new(header, s));
        let url = match (&u.url, &provider) {
            (Some(url), _) => url.clone(),
            (None, Provider::Bedrock { region, .. }) => {
                format!("https://bedrock-runtime.{region}.amazonaws.com")
            }
            (None, Provider::Vertex { region, .. }) => vertex_url(region),
            (None, Provider::Anthropic) => {
                return Err(invalid(format!("{path}.url"), "missing field `url`"))
            }
        };
        let mut upstream = Upstream::from_url(&u.name, &url, credential)
            .map_err(|m| invalid(format!("{path}.url"), m.to_string()))?;
        upstream.provider = provider;
        upstream.health_probe = match &u.health_check_path {
            Some(p) if !p.starts_with('/') => {
                return Err(invalid(
                    format!("{path}.health_check_path"),
                    "must start with /",
                ))
            }
            Some(p) => Some(crate::provider::health::Probe {
                path: p.clone(),
                interval: duration(
                    &format!("{path}.health_check_interval"),
                    u.health_check_interval.as_deref().unwrap_or("10s"),
                )?,
            }),
            None => None,
        };
        if upstream.tls {
            let roots = match &u.ca_file {
                Some(file) => CertificateDer::pem_file_iter(file)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        invalid(
                            format!("{path}.ca_file"),
                            format!("cannot read `{file}`: {e}"),
                        )
                    })?,
                None => Vec::new(),
            };
            let client = tls_connector(&roots)
                .map_err(|e| invalid(format!("{path}.ca_file"), e.to_string()))?;
            upstream.tls_client = Some(TlsClient(client));
        } else if u.ca_file.is_some() {
            return Err(invalid(
                format!("{path}.ca_file"),
                "only an https upstream uses a ca_file",
            ));
        }
        out.push(upstream);
    }
    Ok(out)
}

/// The provider of upstream `u` and its credentials (a missing or broken source is a config
/// error, not a failed request).
fn build_provider(
    u: &file::UpstreamFile,
    path: &str,
    has_api_key: bool,
) -> Result<Provider, ConfigError> {
    let aws_fields = [
        &u.aws_access_key_id,
        &u.aws_secret_access_key,
        &u.aws_session_token,
        &u.aws_profile,
        &u.aws_credential_process,
    ];
    let gcp_fields = [
        &u.project,
        &u.gcp_service_account_file,
        &u.gcp_token_command,
    ];
    let kind = u.provider.as_deref().unwrap_or("anthropic");
    if kind != "bedrock" && aws_fields.iter().any(|f| f.is_some()) {
        return Err(invalid(path, "aws_* fields are for provider = \"bedrock\""));
    }
    if kind != "vertex" && gcp_fields.iter().any(|f| f.is_some()) {
        return Err(invalid(
            path,
            "project and gcp_* fields are for provider = \"vertex\"",
        ));
    }
    let required = |v: &Option<String>, name: &str, why: &str| {
        v.clone()
            .ok_or_else(|| invalid(format!("{path}.{name}"), why.to_string()))
    };
    match kind {
        "anthropic" if u.region.is_some() => Err(invalid(
            format!("{path}.region"),
            "region is for bedrock and vertex upstreams",
        )),
        "anthropic" => Ok(Provider::Anthropic),
        "bedrock" => {
            let region = required(
                &u.region,
                "region",
                "a bedrock upstream needs its AWS region",
            )?;
            let aws = match aws_source(u, path, has_api_key)? {
                Some(source) => Some(
                    AwsCredentialCell::load(source).map_err(|e| invalid(path, e.to_string()))?,
                ),
                None => None,
            };
            Ok(Provider::Bedrock { region, aws })
        }
        "vertex" => {
            let project = required(
                &u.project,
                "project",
                "a vertex upstream needs its Google Cloud project",
            )?;
            let region = required(
                &u.region,
                "region",
                "a vertex upstream needs its location (global, us, eu, or a region)",
            )?;
            let source = match (&u.gcp_service_account_file, &u.gcp_token_command) {
                (Some(file), None) => Some(TokenSource::ServiceAccount(Arc::new(
                    ServiceAccount::from_file(file).map_err(|e| invalid(format!("{path}.gcp_service_account_file"), e.to_string()))?,
                ))),
                (None, Some(command)) => Some(TokenSource::Command(command.clone())),
                (None, None) if has_api_key => None,
                _ => {
                    return Err(invalid(
                        path,
                        "give one token source: gcp_service_account_file, gcp_token_command, or api_key (a static access token)",
                    ))
                }
            };
            Ok(Provider::Vertex {
                project,
                region,
                token: source.map(GoogleTokenCell::new),
            })
        }
        other => Err(invalid(
            format!("{path}.provider"),
            format!("`{other}`: expected anthropic, bedrock or vertex"),
        )),
    }
}

/// A Bedrock upstream's credential source, or `None` when it uses a Bedrock API key.
fn aws_source(
    u: &file::UpstreamFile,
    path: &str,
    has_api_key: bool,
) -> Result<Option<CredentialSource>, ConfigError> {
    Ok(match (&u.aws_access_key_id, &u.aws_secret_access_key, &u.aws_profile, &u.aws_credential_process) {
        (Some(id), Some(secret), None, None) => Some(CredentialSource::Static(AwsCredentialsConfig {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
            session_token: u.aws_session_token.clone(),
        })),
        (None, None, Some(profile), None) => Some(CredentialSource::Profile(profile.clone())),
        (None, None, None, Some(command)) => Some(CredentialSource::Process(command.clone())),
        (None, None, None, None) if has_api_key => None,
        (None, None, None, None) => Some(CredentialSource::Environment),
        _ => {
            return Err(invalid(
                path,
                "give one credential source: aws_access_key_id + aws_secret_access_key, aws_profile, aws_credential_process, or api_key (a Bedrock API key)",
            ))
        }
    })
}

pub fn build_limiter(file: &FileConfig) -> crate::limits::RateLimiter {
    use crate::limits::{LimitSpec, Scope};
    let mut limiter = crate::limits::RateLimiter::default();
    for k in &file.keys {
        limiter.add(
            Scope::Key,
            &k.name,
            LimitSpec {
                rpm: k.rpm,
                tpm: k.tpm,
                max_streams: k.max_streams,
            },
        );
    }
    for (scope, list) in [
        (Scope::Key, &file.key_limits),
        (Scope::Team, &file.teams),
        (Scope::User, &file.users),
    ] {
        for e in list {
            limiter.add(
                scope,
                &e.name,
                LimitSpec {
                    rpm: e.rpm,
                    tpm: e.tpm,
                    max_streams: e.max_streams,
                },
            );
        }
    }
    limiter
}

fn build_admin(file: &FileConfig) -> Result<Option<AdminSettings>, ConfigError> {
    let Some(admin) = &file.admin else {
        return Ok(None);
    };
    let listen = admin.listen.parse().map_err(|_| {
        invalid(
            "admin.listen",
            format!("`{}` is not an address:port", admin.listen),
        )
    })?;
    let mut key_digest = [0u8; 32];
    hex::decode_to_slice(admin.key_sha256.trim(), &mut key_digest).map_err(|_| {
        invalid(
            "admin.key_sha256",
            "must be 64 hex digits (see `sluice keys hash`)",
        )
    })?;
    Ok(Some(AdminSettings { listen, key_digest }))
}

/// A hash of settings' debug form (stable within one process, which is all a reload needs).
fn fingerprint<T: std::fmt::Debug>(settings: &T) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{settings:?}").hash(&mut h);
    h.finish()
}

pub fn build_budgets(file: &FileConfig) -> Result<crate::limits::budget::Budgets, ConfigError> {
    use crate::limits::budget::{Budgets, MAX_BUDGET_USD};
    use crate::limits::Scope;
    let mut budgets = Budgets::default();
    for (i, b) in file.budgets.iter().enumerate() {
        let at = |field: &str| format!("budgets[{i}].{field}");
        let scope = match b.scope.as_str() {
            "key" => Scope::Key,
            "user" => Scope::User,
            "team" => Scope::Team,
            "session" => {
                budgets.add_session(session_budget_spec(b, i)?);
                continue;
            }
            other => {
                return Err(invalid(
                    at("scope"),
                    format!("`{other}`: expected key, user, team or session"),
                ))
            }
        };
        // A key budget names a key from the file or, with the store on, an issued one.
        let store_on = file.store.path != "off";
        if scope == Scope::Key && !store_on && !file.keys.iter().any(|k| k.name == b.name) {
            return Err(invalid(at("name"), format!("no key named `{}`", b.name)));
        }
        if b.name.is_empty() {
            return Err(invalid(at("name"), "a key, user or team budget names one"));
        }
        budgets.add(scope, &b.name, budget_spec(b, i, MAX_BUDGET_USD)?);
    }
    Ok(budgets)
}

/// A budget per Claude Code session applies to every session: its name is `*` or left out.
fn session_budget_spec(
    b: &file::BudgetFile,
    i: usize,
) -> Result<crate::limits::budget::BudgetSpec, ConfigError> {
    use crate::limits::session_budget::MAX_SESSION_BUDGET_USD;
    if !(b.name.is_empty() || b.name == "*") {
        return Err(invalid(
            format!("budgets[{i}].name"),
            "a session budget applies to every session: use `*` or leave it out",
        ));
    }
    budget_spec(b, i, MAX_SESSION_BUDGET_USD)
}

fn budget_spec(
    b: &file::BudgetFile,
    i: usize,
    max_usd: f64,
) -> Result<crate::limits::budget::BudgetSpec, ConfigError> {
    use crate::limits::budget::{BudgetSpec, Period};
    let at = |field: &str| format!("budgets[{i}].{field}");
    let period = Period::parse(&b.period).ok_or_else(|| {
        invalid(
            at("period"),
            format!("`{}`: expected daily, weekly, monthly or total", b.period),
        )
    })?;
    if !(b.limit_usd > 0.0 && b.limit_usd <= max_usd) {
        return Err(invalid(
            at("limit_usd"),
            format!("expected more than 0 and at most {max_usd}"),
        ));
    }
    if b.soft_usd.is_some_and(|s| !(s > 0.0 && s <= b.limit_usd)) {
        return Err(invalid(
            at("soft_usd"),
            "expected more than 0 and at most limit_usd",
        ));
    }
    Ok(BudgetSpec {
        limit_usd: b.limit_usd,
        soft_usd: b.soft_usd,
        period,
    })
}

fn build_routes(file: &FileConfig, upstreams: &[Upstream]) -> Result<Vec<Route>, ConfigError> {
    file.routes
        .iter()
        .enumerate()
        .map(|(i, r)| build_route(i, r, upstreams))
        .collect()
}

fn build_route(
    i: usize,
    r: &file::RouteFile,
    upstreams: &[Upstream],
) -> Result<Route, ConfigError> {
    let path = format!("routes[{i}]");
    if r.model.is_empty() {
        return Err(invalid(format!("{path}.model"), "must not be empty"));
    }
    let find = |name: &str, at: String| {
        upstreams
            .iter()
            .position(|u| u.name == name)
            .ok_or_else(|| invalid(at, format!("no upstream is named `{name}`")))
    };
    let deployments = match (&r.upstream, r.deployments.is_empty()) {
        (Some(name), true) => vec![Deployment {
            upstream: find(name, format!("{path}.upstream"))?,
            upstream_model: r.upstream_model.clone(),
            weight: 1,
        }],
        (None, false) if r.upstream_model.is_none() => r
            .deployments
            .iter()
            .enumerate()
            .map(|(j, d)| {
                let weight = d.weight.unwrap_or(1);
                if weight == 0 {
                    return Err(invalid(
                        format!("{path}.deployments[{j}].weight"),
                        "must be at least 1",
                    ));
                }
                Ok(Deployment {
                    upstream: find(&d.upstream, format!("{path}.deployments[{j}].upstream"))?,
                    upstream_model: d.upstream_model.clone(),
                    weight,
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(invalid(
                path,
                "give either `upstream` (and optionally `upstream_model`) or `deployments`",
            ))
        }
    };
    let balance = match r.balance.as_deref() {
        None | Some("weighted") => Balance::Weighted,
        Some("least_in_flight") => Balance::LeastInFlight,
        Some("p2c") => Balance::PowerOfTwo,
        Some("ordered") => Balance::Ordered,
        Some(other) => {
            return Err(invalid(
                format!("{path}.balance"),
                format!("`{other}`: expected weighted, least_in_flight, p2c or ordered"),
            ))
        }
    };
    let max_attempts = r.max_attempts.unwrap_or(deployments.len().min(3));
    if max_attempts == 0 {
        return Err(invalid(
            format!("{path}.max_attempts"),
            "must be at least 1",
        ));
    }
    Ok(Route {
        pattern: ModelPattern::parse(&r.model),
        deployments,
        balance,
        max_attempts,
    })
}

fn build_routing(file: &FileConfig) -> Result<Routing, ConfigError> {
    let r = &file.routing;
    if !(0.0..=1.0).contains(&r.retry_budget_ratio) {
        return Err(invalid(
            "routing.retry_budget_ratio",
            "must be between 0 and 1",
        ));
    }
    if r.eject_after_failures == 0 {
        return Err(invalid(
            "routing.eject_after_failures",
            "must be at least 1",
        ));
    }
    Ok(Routing {
        eject_after_failures: r.eject_after_failures,
        eject_base: duration("routing.eject_base", &r.eject_base)?,
        eject_max: duration("routing.eject_max", &r.eject_max)?,
        retry_budget_ratio: r.retry_budget_ratio,
        retry_budget_min_per_second: r.retry_budget_min_per_second,
    })
}

fn build_limits(file: &FileConfig) -> Result<Limits, ConfigError> {
    let s = &file.server;
    if !(1024..=1024 * 1024).contains(&s.max_head_bytes) {
        return Err(invalid(
            "server.max_head_bytes",
            "must be between 1 KiB and 1 MiB",
        ));
    }
    if !(8..=crate::http1::head::MAX_HEADERS_CEILING).contains(&s.max_headers) {
        return Err(invalid("server.max_headers", "must be between 8 and 512"));
    }
    if s.max_connections_per_worker == 0 {
        return Err(invalid(
            "server.max_connections_per_worker",
            "must be at least 1",
        ));
    }
    Ok(Limits {
        head: HeadLimits {
            max_head_bytes: s.max_head_bytes,
            max_headers: s.max_headers,
        },
        max_body_bytes: s.max_body_bytes,
        replay_buffer_bytes: s.replay_buffer_bytes,
        max_connections_per_worker: s.max_connections_per_worker,
    })
}

fn build_timeouts(file: &FileConfig) -> Result<Timeouts, ConfigError> {
    let t = &file.timeouts;
    let d = |name: &str, v: &str| duration(&format!("timeouts.{name}"), v);
    Ok(Timeouts {
        head_read: d("head_read", &t.head_read)?,
        idle_keep_alive: d("idle_keep_alive", &t.idle_keep_alive)?,
        body_read: d("body_read", &t.body_read)?,
        body_total: d("body_total", &t.body_total)?,
        client_write: d("client_write", &t.client_write)?,
        upstream_connect: d("upstream_connect", &t.upstream_connect)?,
        upstream_first_byte: d("upstream_first_byte", &t.upstream_first_byte)?,
        stream_idle: d("stream_idle", &t.stream_idle)?,
        pool_idle: d("pool_idle", &t.pool_idle)?,
        ping_interval: d("ping_interval", &t.ping_interval)?,
    })
}

fn duration(path: &str, text: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(text).map_err(|e| {
        invalid(
            path,
            format!("`{text}` is not a duration ({e}); write e.g. `30s` or `500ms`"),
        )
    })?;
    if d.is_zero() {
        return Err(invalid(path, "must be longer than zero"));
    }
    Ok(d)
}

fn build_models(file: &FileConfig) -> Vec<ModelInfo> {
    if file.models.is_empty() {
        return default_models();
    }
    file.models
        .iter()
        .map(|m| ModelInfo {
            id: m.id.clone(),
            display_name: m.display_name.clone().unwrap_or_else(|| m.id.clone()),
            created_at: m
                .created_at
                .clone()
                .unwrap_or_else(|| "2025-01-01T00:00:00Z".into()),
        })
        .collect()
}

fn default_models() -> Vec<ModelInfo> {
    [
        ("claude-opus-5-5", "Claude Opus 5.5", "2026-10-01T00:00:00Z"),
        (
            "claude-sonnet-5-5",
            "Claude Sonnet 5.5",
            "2026-10-01T00:00:00Z",
        ),
        (
            "claude-haiku-5-5",
            "Claude Haiku 5.5",
            "2026-10-01T00:00:00Z",
        ),
        ("claude-opus-4-8", "Claude Opus 4.8", "2026-06-01T00:00:00Z"),
        (
            "claude-sonnet-4-6",
            "Claude Sonnet 4.6",
            "2026-02-01T00:00:00Z",
        ),
        (
            "claude-sonnet-4-5",
            "Claude Sonnet 4.5",
            "2025-09-29T00:00:00Z",
        ),
        (
            "claude-haiku-4-5",
            "Claude Haiku 4.5",
            "2025-10-01T00:00:00Z",
        ),
    ]
    .into_iter()
    .map(|(id, name, at)| ModelInfo {
        id: id.into(),
        display_name: name.into(),
        created_at: at.into(),
    })
    .collect()
}

fn build_pricing(file: &FileConfig) -> Result<PriceTable, ConfigError> {
    let mut table = PriceTable::default();
    for (i, p) in file.pricing.iter().enumerate() {
        let all = [
            Some(p.input),
            Some(p.output),
            p.cache_write_5m,
            p.cache_write_1h,
            p.cache_read,
        ];
        if all.iter().flatten().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(invalid(
                format!("pricing[{i}]"),
                "prices must be finite and not negative",
            ));
        }
        if p.model.is_empty() {
            return Err(invalid(format!("pricing[{i}].model"), "must not be empty"));
        }
        let price = Price::from_usd_per_mtok(
            p.input,
            p.output,
            p.cache_write_5m,
            p.cache_write_1h,
            p.cache_read,
        );
        table.set(&p.model, price);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_text(text: &str) -> Result<Config, ConfigError> {
        build(parse_text(text)?, &Overrides::default())
    }

    #[test]
    fn defaults_build() {
        let c = build_text("").unwrap();
        assert_eq!(c.listen.unwrap().to_string(), "127.0.0.1:4100");
        assert_eq!(c.upstreams[0].host, "api.anthropic.com");
        assert!(c.routes[0].pattern.matches("claude-opus-4-8"));
    }

    #[test]
    fn errors_name_their_path() {
        let cases = [
            ("[server]\nlisten = 5\n", "server.listen"),
            ("[server]\nlisen = \"x\"\n", "server"),
            ("[[upstreams]]\nname = \"a\"\nurl = \"ftp://x\"\n", "upstreams[0].url"),
            ("[[upstreams]]\nname = \"a\"\nurl = \"http://x\"\n[[routes]]\nmodel = \"*\"\nupstream = \"b\"\n", "routes[0].upstream"),
            ("[timeouts]\nhead_read = \"soon\"\n", "timeouts.head_read"),
            ("[[keys]]\nname = \"k\"\nsha256 = \"zz\"\n", "keys[0].sha256"),
            ("[[budgets]]\nscope = \"org\"\nname = \"x\"\nlimit_usd = 1.0\n", "budgets[0].scope"),
            ("[[budgets]]\nscope = \"session\"\nname = \"s1\"\nlimit_usd = 1.0\n", "budgets[0].name"),
            ("[[budgets]]\nscope = \"session\"\nlimit_usd = 20000.0\n", "budgets[0].limit_usd"),
            ("[[budgets]]\nscope = \"team\"\nlimit_usd = 1.0\n", "budgets[0].name"),
            ("[[budgets]]\nscope = \"team\"\nname = \"x\"\nlimit_usd = 0.0\n", "budgets[0].limit_usd"),
            ("[[budgets]]\nscope = \"team\"\nname = \"x\"\nlimit_usd = 1.0\nperiod = \"hourly\"\n", "budgets[0].period"),
            ("[[budgets]]\nscope = \"team\"\nname = \"x\"\nlimit_usd = 1.0\nsoft_usd = 2.0\n", "budgets[0].soft_usd"),
            ("[store]\npath = \"off\"\n[[budgets]]\nscope = \"key\"\nname = \"x\"\nlimit_usd = 1.0\n", "budgets[0].name"),
            ("[admin]\nlisten = \"nowhere\"\nkey_sha256 = \"00\"\n", "admin.listen"),
            ("[admin]\nlisten = \"127.0.0.1:0\"\nkey_sha256 = \"00\"\n", "admin.key_sha256"),
        ];
        for (text, path) in cases {
            let err = build_text(text).unwrap_err().to_string();
            assert!(err.starts_with(path), "{text:?} gave {err}");
        }
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            listen: Some("127.0.0.1:0".into()),
            upstream: Some("http://127.0.0.1:9".into()),
            upstream_api_key: Some("sk-up".into()),
            workers: Some(3),
            io_driver: Some("epoll".into()),
        };
        let c = build(parse_text("").unwrap(), &o).unwrap();
        assert_eq!((c.listen.unwrap().port(), c.workers), (0, 3));
        assert_eq!(c.upstreams[0].host, "127.0.0.1");
        assert!(c.upstreams[0].credential.is_some());
    }
}
