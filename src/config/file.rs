//! The TOML file as written by an operator: plain serde structs, every table
//! `deny_unknown_fields`, every field defaulted. Nothing here is trusted; `config::build` turns it
//! into a [`super::Config`] that cannot hold an invalid value.

use serde::Deserialize;

use super::routes::Balance;
use super::server::{Durability, MessageBatches};
use crate::limits::budget::Period;
use crate::provider::upstream::AuthHeader;
use crate::runtime::writer_priority::WriterPriority;
use crate::runtime::IoDriver;
use crate::tls::ClientAuth;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub server: ServerFile,
    pub timeouts: TimeoutsFile,
    pub upstreams: Vec<UpstreamFile>,
    pub routes: Vec<RouteFile>,
    pub routing: RoutingFile,
    pub models: Vec<ModelFile>,
    /// Provider model ids replacing the built-in table's, by first-party id.
    pub model_ids: std::collections::BTreeMap<String, ModelIdFile>,
    pub keys: Vec<KeyFile>,
    pub aws_keys: Vec<AwsKeyFile>,
    pub teams: Vec<LimitedFile>,
    pub users: Vec<LimitedFile>,
    pub budgets: Vec<BudgetFile>,
    pub pricing: Vec<PriceFile>,
    pub log: LogFile,
    pub store: StoreFile,
    pub audit: AuditFile,
    pub jwt: Option<JwtFile>,
    /// Sign-in with the company's identity provider (Claude Code's gateway `/login`).
    pub signin: Option<SigninFile>,
    /// Policy documents Claude Code takes from `/managed/settings`.
    pub managed_settings: Vec<ManagedSettingsFile>,
    /// Where Claude Code's OpenTelemetry exports go.
    pub telemetry: TelemetryFile,
    /// Customer-routed inference (Claude Enterprise callers with Anthropic-minted tokens).
    pub cri: Option<CriFile>,
    /// Several nodes sharing keys, budgets and spend through PostgreSQL and Redis.
    pub cluster: Option<super::cluster::ClusterFile>,
    pub admin: Option<AdminFile>,
    /// Limits of issued keys, set over the admin API (never read from the file).
    #[serde(skip)]
    pub key_limits: Vec<LimitedFile>,
}

/// The admin API: its own listener, its own key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// Address of the admin listener (keep it private: loopback or a management network).
    pub listen: String,
    /// Hex SHA-256 of the admin key (`sluice keys hash`).
    pub key_sha256: String,
}

/// Sign-in: Claude Code's `/login` runs the OAuth device flow against sluice, and sluice signs
/// the developer in at the company's OpenID Connect provider.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigninFile {
    /// The OpenID Connect issuer (its discovery document is `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// The client secret, or the variable holding it (neither: a public client, PKCE only).
    pub client_secret: Option<String>,
    pub client_secret_env: Option<String>,
    /// Scopes asked of the provider (default `openid email profile`).
    pub scopes: Option<Vec<String>>,
    /// Only these email domains may sign in (empty: any).
    pub allowed_email_domains: Vec<String>,
    /// The ID-token claim holding the user's groups (default `groups`).
    pub groups_claim: Option<String>,
    /// Group → sluice team, first match wins.
    pub teams: Vec<SigninTeamFile>,
    /// The URL clients reach sluice at (`https://gw.example.com`); default: from each request.
    pub public_url: Option<String>,
    /// Shown next to the code in Claude Code (at most 500 characters).
    pub login_notice: Option<String>,
    /// Lifetime of an access token (default `1h`), a refresh token (`30d`) and a device code
    /// (`10m`); how often the client may poll (`5s`).
    pub access_token_ttl: Option<String>,
    pub refresh_token_ttl: Option<String>,
    pub device_code_ttl: Option<String>,
    pub poll_interval: Option<String>,
    /// Extra PEM roots to trust for the provider (a private CA).
    pub ca_file: Option<String>,
    /// The `tags` key under which Claude Code names a request's billing group (carried in the
    /// access tokens); unset: billing groups are not used.
    pub billing_group_tag: Option<String>,
}

/// One managed-settings document (Claude Code's `managed-settings.json`), for the members of a
/// sign-in group, for a team, or (neither) for everyone else.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedSettingsFile {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    /// A stable id for the document (default: derived from its content).
    #[serde(default)]
    pub uuid: Option<String>,
    /// The document (`managed-settings.json`), as TOML in the file or JSON over the admin API.
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// `[cri]`: customer-routed inference.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CriFile {
    /// The token issuer (default: Anthropic's).
    pub issuer: Option<String>,
    /// The key set (default: `{issuer}/jwks.json`).
    pub jwks_url: Option<String>,
    /// The audiences registered for this gateway.
    pub audience: Vec<String>,
    /// The organizations allowed to route inference here.
    pub org_allowlist: Vec<String>,
    /// Extra PEM roots to trust for the key set.
    pub ca_file: Option<String>,
}

/// `[telemetry]`: OTLP/HTTP collectors the exports sent to sluice are relayed to, and where
/// sluice exports its own traces and metrics.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryFile {
    pub forward_to: Vec<CollectorFile>,
    pub export: Option<ExportFile>,
}

/// `[telemetry.export]`: sluice's own spans (one per request) and metrics over OTLP/HTTP.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFile {
    /// The collector's base URL: spans go to `{url}/v1/traces`, metrics to `{url}/v1/metrics`.
    pub url: String,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// The resource's `service.name` (default `sluice`).
    #[serde(default)]
    pub service_name: Option<String>,
    /// How often spans are sent (default `1s`; sooner when a batch fills).
    #[serde(default)]
    pub span_interval: Option<String>,
    /// How often metrics are sent (default `10s`).
    #[serde(default)]
    pub metrics_interval: Option<String>,
}

/// One collector: its base URL, the signals it takes (default: all) and its header fields.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorFile {
    pub url: String,
    #[serde(default)]
    pub signals: Option<Vec<Signal>>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// An OpenTelemetry signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Metrics,
    Logs,
    Traces,
}

impl Signal {
    pub fn label(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Traces => "traces",
        }
    }

    /// The OTLP/HTTP path.
    pub fn path(self) -> &'static str {
        match self {
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
            Signal::Traces => "/v1/traces",
        }
    }
}

/// Members of `group` count under `team`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigninTeamFile {
    pub group: String,
    pub team: String,
    /// The models members may use (patterns like a key's `models`); unset: every model.
    #[serde(default)]
    pub models: Option<Vec<String>>,
}

/// JWT identity (the `apiKeyHelper` flow: a helper mints a short-lived token per user).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtFile {
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// The claim naming the user (default `sub`).
    pub user_claim: Option<String>,
    /// The claim naming the team, if any.
    pub team_claim: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf` (default 30).
    pub leeway_seconds: Option<u64>,
    pub keys: Vec<JwtKeyFile>,
    /// A JWKS file (`{"keys": [...]}`), matched by `kid`.
    pub jwks_file: Option<String>,
}

/// The signature algorithms sluice verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
}

/// One verification key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyFile {
    /// `HS256`, `RS256` or `ES256`.
    pub algorithm: JwtAlgorithm,
    #[serde(default)]
    pub kid: Option<String>,
    /// HS256: the shared secret, or the variable holding it.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_env: Option<String>,
    /// RS256/ES256: a PEM public key file.
    #[serde(default)]
    pub public_key_file: Option<String>,
}

/// The spend ledger.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreFile {
    /// Where keys and spend live: `sqlite` (the file below) or `postgres` (a [cluster]'s
    /// database, the file below then being the node's outbox).
    pub backend: StoreBackend,
    /// SQLite file, or `off`.
    pub path: String,
    /// Group-commit interval: the durability window against a crash.
    pub commit_interval: String,
    /// `open`: keep serving when the ledger falls behind or fails; `closed`: refuse new requests.
    pub on_failure: OnFailure,
    /// `interval` (committed every `commit_interval`) or `sync` (each forwarded response's
    /// record is committed and fsynced before its last byte is released).
    pub durability: Durability,
}

/// Where issued keys and the spend of record live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// The `store.path` SQLite file: one node.
    #[default]
    Sqlite,
    /// The `[cluster]`'s PostgreSQL database, shared by every node.
    Postgres,
}

/// What sluice does when the ledger falls behind or fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Keep serving.
    Open,
    /// Refuse new requests.
    Closed,
}

impl Default for StoreFile {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Sqlite,
            path: "sluice.db".into(),
            commit_interval: "10ms".into(),
            on_failure: OnFailure::Open,
            durability: Durability::Interval,
        }
    }
}

/// The hash-chained audit log.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditFile {
    /// JSON-lines file, or `off`.
    pub path: String,
    /// Rotate when the file would grow past this many bytes.
    pub max_bytes: u64,
}

impl Default for AuditFile {
    fn default() -> Self {
        Self {
            path: "sluice-audit.jsonl".into(),
            max_bytes: 100 * 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerFile {
    /// Plain HTTP listener, or `off` (then `listen_tls` must be set).
    pub listen: String,
    /// HTTPS listener (needs `[server.tls]`); empty: none.
    pub listen_tls: String,
    /// Certificates and client authentication of the HTTPS listener.
    pub tls: Option<TlsFile>,
    /// 0: one worker per core.
    pub workers: usize,
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: u64,
    /// Request bodies up to this size are held whole, so a stale pooled connection can be retried.
    pub replay_buffer_bytes: usize,
    pub max_connections_per_worker: usize,
    pub grace_period: String,
    /// `auto` (io_uring, falling back to epoll), `io_uring` or `epoll`.
    pub io_driver: IoDriver,
    /// `idle`: the record writers run under SCHED_IDLE while they keep up; `normal`: never.
    pub writer_priority: WriterPriority,
    /// The Message Batches API: `refuse` (default) or `governed` (each request in a batch is
    /// checked against the key's models, and its maximum cost reserved and kept).
    pub message_batches: MessageBatches,
}

impl Default for ServerFile {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4100".into(),
            listen_tls: String::new(),
            tls: None,
            workers: 0,
            max_head_bytes: 64 * 1024,
            max_headers: 128,
            max_body_bytes: 32 * 1024 * 1024,
            replay_buffer_bytes: 1024 * 1024,
            max_connections_per_worker: 16_384,
            grace_period: "30s".into(),
            io_driver: IoDriver::Auto,
            writer_priority: WriterPriority::Idle,
            message_batches: MessageBatches::Refuse,
        }
    }
}

/// `[server.tls]`: the HTTPS listener's certificates (PEM, leaf first then intermediates) and
/// client certificates.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// The default certificate (served when the client's SNI names no other).
    pub cert_file: String,
    pub key_file: String,
    /// More certificates, each served for the names in it (SNI).
    #[serde(default)]
    pub certificates: Vec<TlsCertificateFile>,
    /// CAs that issue client certificates (PEM); needed unless `client_auth = "off"`.
    #[serde(default)]
    pub client_ca_file: Option<String>,
    /// `off` (default), `optional` or `required`.
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
    /// Client-certificate names → user and team.
    #[serde(default)]
    pub client_identities: Vec<ClientIdentityFile>,
    /// Longest a handshake may take, from the connection's accept (default 10s).
    #[serde(default)]
    pub handshake_timeout: Option<String>,
    /// Handshakes in progress on one worker at most (default 1024).
    #[serde(default)]
    pub max_handshakes_per_worker: Option<usize>,
}

/// One more served certificate.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCertificateFile {
    pub cert_file: String,
    pub key_file: String,
}

/// A client-certificate name (`*@example.com`: any ending) and who it is.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIdentityFile {
    pub name: String,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsFile {
    pub head_read: String,
    pub idle_keep_alive: String,
    pub body_read: String,
    /// Longest a whole request body may take (a body trickled in under `body_read` each time
    /// still ends here).
    pub body_total: String,
    pub client_write: String,
    pub upstream_connect: String,
    pub upstream_first_byte: String,
    pub stream_idle: String,
    pub pool_idle: String,
    /// How often sluice pings a client while a converted stream is silent.
    pub ping_interval: String,
}

impl Default for TimeoutsFile {
    fn default() -> Self {
        Self {
            head_read: "30s".into(),
            idle_keep_alive: "75s".into(),
            body_read: "60s".into(),
            body_total: "300s".into(),
            client_write: "60s".into(),
            upstream_connect: "10s".into(),
            upstream_first_byte: "600s".into(),
            stream_idle: "300s".into(),
            pool_idle: "20s".into(),
            ping_interval: "15s".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    pub name: String,
    /// `anthropic` (default: the Anthropic API, LiteLLM, any Messages-format gateway),
    /// `bedrock` (AWS Bedrock InvokeModel, SigV4-signed) or `vertex` (Google Vertex AI
    /// rawPredict, OAuth2).
    #[serde(default)]
    pub provider: Option<ProviderKind>,
    /// Base URL; for `bedrock` it defaults to `https://bedrock-runtime.{region}.amazonaws.com`.
    #[serde(default)]
    pub url: Option<String>,
    /// Bedrock: the AWS region (signing scope and default host). Vertex: the location
    /// (`global`, `us`, `eu` or a region such as `us-east5`).
    #[serde(default)]
    pub region: Option<String>,
    /// Vertex and Claude Platform on Google Cloud: the Google Cloud project.
    #[serde(default)]
    pub project: Option<String>,
    /// Foundry: the Azure resource name (the default URL's host).
    #[serde(default)]
    pub resource: Option<String>,
    /// Foundry with Entra ID: the tenant, the application (client) id and the environment
    /// variable holding its secret; tokens come by the client-credentials grant.
    #[serde(default)]
    pub entra_tenant_id: Option<String>,
    #[serde(default)]
    pub entra_client_id: Option<String>,
    #[serde(default)]
    pub entra_client_secret_env: Option<String>,
    /// Foundry with Entra ID: the token endpoint (default
    /// `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`).
    #[serde(default)]
    pub entra_token_url: Option<String>,
    /// Claude Platform on AWS and on Google Cloud: the workspace.
    #[serde(default)]
    pub workspace_id: Option<String>,
    /// Vertex: a service-account key file (OAuth2 tokens by the JWT-bearer grant).
    #[serde(default)]
    pub gcp_service_account_file: Option<String>,
    /// Vertex: a command that prints an access token (e.g. `gcloud auth print-access-token`).
    #[serde(default)]
    pub gcp_token_command: Option<String>,
    /// Bedrock SigV4 credentials inline (prefer the environment, a profile or a process).
    #[serde(default)]
    pub aws_access_key_id: Option<String>,
    #[serde(default)]
    pub aws_secret_access_key: Option<String>,
    #[serde(default)]
    pub aws_session_token: Option<String>,
    /// Bedrock: a profile of the shared credentials file.
    #[serde(default)]
    pub aws_profile: Option<String>,
    /// Bedrock: a command printing credentials JSON (the AWS CLI `credential_process` contract).
    #[serde(default)]
    pub aws_credential_process: Option<String>,
    /// The credential itself (prefer `api_key_env`). For `bedrock`, a Bedrock API key, sent as
    /// `Authorization: Bearer` instead of signing.
    #[serde(default)]
    pub api_key: Option<String>,
    /// The environment variable that holds the credential.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// `x-api-key` (default) or `authorization` (sent as `Bearer <key>`).
    #[serde(default)]
    pub auth_header: Option<AuthHeader>,
    /// Probe this path (GET) on a side thread; a 5xx or no answer takes the upstream out of
    /// rotation until a probe succeeds.
    #[serde(default)]
    pub health_check_path: Option<String>,
    /// How often to probe (default 10 s).
    #[serde(default)]
    pub health_check_interval: Option<String>,
    /// Extra PEM certificate(s) to trust for this upstream (a private CA), besides the
    /// webpki roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// The models this upstream serves (exact ids or prefixes ending in `*`, matched as sent
    /// and as Anthropic ids); a deployment on it is skipped for any other model. Default: all.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Bedrock: the inference-profile prefix of the model ids sluice derives (`us`, `eu`,
    /// `apac`, `jp`, `au`, `us-gov`, `global`, or `none`); default: the region's.
    #[serde(default)]
    pub inference_profile: Option<String>,
    /// Bedrock and Vertex: request fields passed besides the provider's defaults.
    #[serde(default)]
    pub pass_fields: Vec<String>,
    /// Request fields dropped before they reach this upstream.
    #[serde(default)]
    pub drop_fields: Vec<String>,
    /// Bedrock and Vertex: betas passed besides the provider's defaults.
    #[serde(default)]
    pub pass_betas: Vec<String>,
    /// Betas dropped before they reach this upstream.
    #[serde(default)]
    pub drop_betas: Vec<String>,
}

/// `[model_ids."claude-…"]`: a first-party model's id at Bedrock and Vertex, replacing the
/// built-in table's.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelIdFile {
    /// The Bedrock id: `anthropic.…` (the upstream's profile prefix is put before it), or an
    /// exact profile id or ARN, sent as it is.
    #[serde(default)]
    pub bedrock: Option<String>,
    #[serde(default)]
    pub vertex: Option<String>,
    #[serde(default)]
    pub foundry: Option<String>,
    #[serde(default)]
    pub mantle: Option<String>,
    #[serde(default)]
    pub anthropic_aws: Option<String>,
    #[serde(default)]
    pub anthropic_google_cloud: Option<String>,
}

/// What an upstream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Anthropic,
    Bedrock,
    Vertex,
    /// Microsoft Foundry (`https://{resource}.services.ai.azure.com/anthropic`).
    Foundry,
    /// Bedrock's Anthropic-compatible Mantle endpoint.
    Mantle,
    /// Claude Platform on AWS.
    AnthropicAws,
    /// Claude Platform on Google Cloud.
    AnthropicGoogleCloud,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// An exact model name, a prefix ending in `*`, or `*` for everything. Matched against the
    /// model as the client names it and against its Anthropic id (`claude-sonnet-4-5-20250929`
    /// for `us.anthropic.claude-sonnet-4-5-20250929-v1:0`).
    pub model: String,
    /// Shorthand for a single deployment: the upstream's name.
    #[serde(default)]
    pub upstream: Option<String>,
    /// With `upstream`: the model id to send upstream (default: the client's for Messages
    /// clients, the Anthropic id for Bedrock and Vertex clients).
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// The deployments that serve these models, in fallback order.
    #[serde(default)]
    pub deployments: Vec<DeploymentFile>,
    /// How the first deployment is chosen: `weighted` (default), `least_in_flight`, `p2c`
    /// (power of two choices) or `ordered` (always the first healthy one).
    #[serde(default)]
    pub balance: Option<Balance>,
    /// Deployments tried at most per request (default: all of them, up to 3).
    #[serde(default)]
    pub max_attempts: Option<usize>,
    /// `session` (default with several deployments): every request of one Claude Code session
    /// goes to the same deployment, where its prompt cache lives; `none`: each request balanced.
    #[serde(default)]
    pub affinity: Option<Affinity>,
}

/// Whether a route keeps a session on one deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affinity {
    Session,
    None,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentFile {
    pub upstream: String,
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// Share of first picks under `weighted` (default 1).
    #[serde(default)]
    pub weight: Option<u32>,
}

/// Fallback and health settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingFile {
    /// Consecutive failures after which a deployment is ejected.
    pub eject_after_failures: u32,
    /// First ejection length; doubles with each further ejection, up to `eject_max`.
    pub eject_base: String,
    pub eject_max: String,
    /// Retries allowed as a share of requests (per worker, over 10 s windows)…
    pub retry_budget_ratio: f64,
    /// …but always at least this many per second.
    pub retry_budget_min_per_second: u32,
}

impl Default for RoutingFile {
    fn default() -> Self {
        Self {
            eject_after_failures: 5,
            eject_base: "1s".into(),
            eject_max: "60s".into(),
            retry_budget_ratio: 0.2,
            retry_budget_min_per_second: 10,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub name: String,
    /// Hex SHA-256 of the key (`sluice keys hash` prints it); the key itself is never stored.
    pub sha256: String,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    /// The models this key may use (exact names or prefixes ending in `*`); all when absent.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// RFC 3339 time after which the key is refused.
    #[serde(default)]
    pub expires: Option<String>,
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Input + output tokens per minute.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Concurrent streaming requests.
    #[serde(default)]
    pub max_streams: Option<u32>,
}

/// Limits for a team or a user (by the name keys and JWT claims give them).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitedFile {
    pub name: String,
    #[serde(default)]
    pub rpm: Option<u32>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub max_streams: Option<u32>,
}

/// A budget in USD for one key, user or team, or for each Claude Code session.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetFile {
    /// `key`, `user`, `team` or `session` (every Claude Code session separately).
    pub scope: BudgetScope,
    /// The key's, user's or team's name; `*` (or nothing) for a session budget.
    #[serde(default)]
    pub name: String,
    pub limit_usd: f64,
    /// `daily`, `weekly` (from Monday), `monthly` or `total`; UTC.
    #[serde(default = "default_period")]
    pub period: Period,
    /// Past this, responses carry `sluice-budget-warning` and the audit log records the crossing.
    #[serde(default)]
    pub soft_usd: Option<f64>,
}

fn default_period() -> Period {
    Period::Monthly
}

/// Whom a budget applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetScope {
    Key,
    User,
    Team,
    /// Every Claude Code session separately.
    Session,
}

impl BudgetScope {
    pub fn label(self) -> &'static str {
        match self {
            BudgetScope::Key => "key",
            BudgetScope::User => "user",
            BudgetScope::Team => "team",
            BudgetScope::Session => "session",
        }
    }

    pub fn parse(text: &str) -> Option<BudgetScope> {
        [
            BudgetScope::Key,
            BudgetScope::User,
            BudgetScope::Team,
            BudgetScope::Session,
        ]
        .into_iter()
        .find(|s| s.label() == text)
    }
}

/// An AWS access key pair sluice issues, so unmodified AWS SDK clients (SigV4-signing Bedrock
/// clients) can authenticate to it. SigV4 is an HMAC: the secret itself must be known.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsKeyFile {
    pub name: String,
    pub access_key_id: String,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// The environment variable holding the secret (preferred).
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    /// The regions clients may sign for with this key (default: any well-formed region).
    #[serde(default)]
    pub regions: Vec<String>,
}

/// USD per million tokens for models whose name starts with `model`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceFile {
    pub model: String,
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_write_5m: Option<f64>,
    #[serde(default)]
    pub cache_write_1h: Option<f64>,
    #[serde(default)]
    pub cache_read: Option<f64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogFile {
    /// `-` for standard output, `off`, or a file path (appended to).
    pub access_log: String,
    /// `tracing` filter for diagnostics on standard error, e.g. `info` or `sluice=debug`.
    pub level: String,
}

impl Default for LogFile {
    fn default() -> Self {
        Self {
            access_log: "-".into(),
            level: "info".into(),
        }
    }
}
