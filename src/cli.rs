//! The command line: `serve`, `check-config`, `models`, `keys`, `audit`, `spend`,
//! `mock-upstream`, `bench`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "An io_uring edge gateway for Claude Code and the Anthropic API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Validate a config file and report the exact path of any error.
    CheckConfig { file: PathBuf },
    /// The model ids each route sends each upstream (Bedrock and Vertex ids derived from
    /// first-party ones), from a config file.
    Models { config: PathBuf },
    /// Virtual key helpers.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Spend from the ledger, grouped (identity, user, team, model, day, session_id, agent_id).
    Spend {
        /// The ledger file (store.path).
        #[arg(long, default_value = "sluice.db")]
        db: PathBuf,
        /// A config file: in a cluster every node's spend is read from its PostgreSQL, else
        /// its `store.path` (instead of --db).
        #[arg(long)]
        config: Option<PathBuf>,
        /// What to group by.
        #[arg(long, default_value = "identity")]
        by: String,
        /// `table` (the default at a terminal), `json` (lines; the default into a pipe) or
        /// `csv`.
        #[arg(long, value_enum)]
        format: Option<crate::spend_format::SpendFormat>,
    },
    /// Run the built-in Anthropic-compatible mock upstream (for offline trials, tests, the bench).
    MockUpstream(Box<MockArgs>),
    /// Run the bundled load bench: mock upstream + sluice, direct vs through sluice.
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:4100).
    #[arg(long)]
    pub listen: Option<String>,
    /// Base URL of the (first) upstream (default https://api.anthropic.com).
    #[arg(long)]
    pub upstream: Option<String>,
    /// Credential for that upstream (default: $ANTHROPIC_API_KEY when set).
    #[arg(long)]
    pub upstream_api_key: Option<String>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// I/O driver: auto (io_uring, else epoll), io_uring or epoll.
    #[arg(long)]
    pub io_driver: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of audit log files (oldest first); report the first broken line.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print the SHA-256 to put in `[[keys]] sha256 = …` for a key read from standard input.
    Hash,
    /// Issue a key into the store: printed once, stored only as its SHA-256. A running sluice on
    /// the same file picks it up within a second.
    Create {
        /// The store file (store.path).
        #[arg(long, default_value = "sluice.db")]
        db: PathBuf,
        /// A config file: in a cluster (`[cluster]`) keys live in its PostgreSQL, else in
        /// its `store.path` (instead of --db).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        name: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        team: Option<String>,
        /// Allowed models, comma-separated (a trailing `*` matches a prefix); default: all.
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// RFC 3339 time after which the key is refused.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List issued keys as JSON lines (names, digest prefixes, owners, expiry, revocation).
    List {
        #[arg(long, default_value = "sluice.db")]
        db: PathBuf,
        /// A config file: in a cluster (`[cluster]`) keys live in its PostgreSQL, else in
        /// its `store.path` (instead of --db).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Revoke every key with this name; running gateways refuse it within a second.
    Revoke {
        #[arg(long, default_value = "sluice.db")]
        db: PathBuf,
        /// A config file: in a cluster (`[cluster]`) keys live in its PostgreSQL, else in
        /// its `store.path` (instead of --db).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        name: String,
    },
    /// Issue a new key for this name (same owner and models); the old one stays valid for the
    /// grace period. Prints the new key once.
    Rotate {
        #[arg(long, default_value = "sluice.db")]
        db: PathBuf,
        /// A config file: in a cluster (`[cluster]`) keys live in its PostgreSQL, else in
        /// its `store.path` (instead of --db).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        name: String,
        /// How long the old key keeps working (e.g. `1h`, `30m`, `0s`).
        #[arg(long, default_value = "1h")]
        grace: String,
    },
}

#[derive(Debug, Args, Clone)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Delay before the response head, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Delay between SSE events, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub event_delay_ms: u64,
    /// Text the mock answers with.
    #[arg(long, default_value = "hello")]
    pub reply: String,
    /// Require this upstream credential (x-api-key or Bearer); 401 otherwise.
    #[arg(long)]
    pub require_key: Option<String>,
    /// Answer every request with this status (an Anthropic error body), like `x-mock-status`.
    #[arg(long)]
    pub always_status: Option<u16>,
    /// The `retry-after` (seconds) sent with 429 and 529 answers.
    #[arg(long, default_value_t = 1)]
    pub retry_after: u64,
    /// Misbehave on every request, like `x-mock-fail` (e.g. reset-before-head, stall).
    #[arg(long)]
    pub always_fail: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Bedrock: verify SigV4 signatures made with this access key id (with --aws-secret-key).
    #[arg(long, requires = "aws_secret_key")]
    pub aws_access_key: Option<String>,
    /// Bedrock: the secret of --aws-access-key.
    #[arg(long, requires = "aws_access_key")]
    pub aws_secret_key: Option<String>,
    /// Bedrock: accept this Bedrock API key (Authorization: Bearer) instead of a signature.
    #[arg(long)]
    pub bedrock_api_key: Option<String>,
    /// Vertex: serve a token endpoint (`POST /token`) that verifies JWT assertions with this
    /// RSA public key (PKCS#1 DER) and issues access tokens the Vertex endpoints then require.
    #[arg(long)]
    pub gcp_public_key: Option<std::path::PathBuf>,
    /// Vertex: also accept this static access token.
    #[arg(long)]
    pub vertex_token: Option<String>,
    /// Keep no log of received requests (the bench: no copying of bodies).
    #[arg(long)]
    pub no_request_log: bool,
    /// Model a prompt cache of this many tokens per conversation: a Messages request whose
    /// first message this mock has seen before reports them as `cache_read_input_tokens`, else
    /// as `cache_creation_input_tokens` (a deployment's cache, for session-affinity tests).
    #[arg(long)]
    pub prompt_cache_tokens: Option<u64>,
    /// Messages requests must be SigV4-signed for this signing name (`bedrock-mantle`,
    /// `aws-external-anthropic`) with --aws-access-key and --aws-secret-key.
    #[arg(long, requires = "aws_access_key")]
    pub sigv4_service: Option<String>,
    /// Entra ID: the token endpoint (`POST /token`) grants tokens by the client-credentials
    /// grant to this application (`client_id:secret`), and Messages requests must carry one.
    #[arg(long)]
    pub entra_client: Option<String>,
    /// Messages requests must carry this header field (`name:value`); repeatable.
    #[arg(long)]
    pub require_header: Vec<String>,
    /// Answer as Bedrock and Vertex do to what they do not take: a model id not in the
    /// provider's form, a body field or beta outside the provider's documented lists (400 or
    /// 404, in the provider's own error shape).
    #[arg(long)]
    pub strict: bool,
}
