//! sluice: a thread-per-core io_uring gateway between Anthropic API clients (Claude Code, the
//! SDKs) and the model providers.
//!
//! The map, in the order a request travels:
//! - [`runtime`]: worker threads (one monoio runtime per core), `SO_REUSEPORT` listeners, shutdown.
//! - [`http1`]: the HTTP/1.1 wire format (head scan, body framing, head rewrite).
//! - [`proxy`]: the request's story, one phase per file: classify → authenticate → route →
//!   forward → relay → finish.
//! - [`provider`]: upstreams, their credentials, connections and the per-worker pool.
//! - [`usage`]: usage meters (SSE, JSON), the price table, cost.
//! - [`store`]: the recorder (access log, metrics, feeding the ledger and audit), the ledger, the stores.
//! - [`config`]: the TOML file → a validated [`config::Config`]: plain data, built without I/O.
//! - [`state`]: what lives while sluice serves (credentials, key tables, counters, health),
//!   built from a config and carried across reloads part by part.
//! - [`signin`]: sign-in at the company's identity provider (Claude Code's `/login`).
//! - [`cri`]: customer-routed inference (Anthropic-minted tokens, verified offline).
//! - [`telemetry`]: the relay of Claude Code's OpenTelemetry exports to the operator's collectors.
//! - [`tls`]: HTTPS at the edge (certificates, handshakes, client-certificate identities).
//!
//! The command line, the mock upstream and the load bench ship in the `sluice` binary
//! (`src/main.rs`, `cli.rs`, `mock/`, `bench/`) but are not part of this library: it holds the
//! gateway only.

pub mod admin;
pub mod audit;
pub mod config;
pub mod cri;
pub mod digest;
pub mod format;
pub mod http1;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod provider;
pub mod proxy;
pub mod record;
pub mod runtime;
pub mod server;
pub mod signin;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod timestamp;
pub mod tls;
pub mod usage;
