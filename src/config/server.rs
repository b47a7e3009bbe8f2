//! `[server]`, `[timeouts]`, `[store]`, `[audit]`, `[admin]` and `[log]`: the listeners, size
//! limits, timeouts and where records go — what the process sets up and every request obeys.

use std::net::SocketAddr;
use std::time::Duration;

use super::file::FileConfig;
use super::tls::TlsSettings;
use super::{invalid, ConfigError};
use crate::http1::HeadLimits;

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

/// What sluice does with the Message Batches API, whose requests name their models inside
/// the batch body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageBatches {
    /// Refused (403): the default.
    Refuse,
    /// A batch is created only if every request in it passes the key's model allow-list and
    /// routes unaliased; the maximum cost of all of them is reserved and kept (results arrive
    /// later, outside any request sluice sees). Reading and cancelling batches pass through.
    Governed,
}

/// Where access records go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(String),
    Off,
}

/// When a committed record is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// The listeners: plain, HTTPS (at least one of them) and the HTTPS settings.
#[derive(Clone, Debug)]
pub struct Listeners {
    pub listen: Option<SocketAddr>,
    pub listen_tls: Option<SocketAddr>,
    pub tls: Option<TlsSettings>,
}

/// The plain and HTTPS listeners (at least one), and the HTTPS settings.
pub fn build_listeners(file: &FileConfig) -> Result<Listeners, ConfigError> {
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
        (Some(tls), Some(_)) => Some(super::tls::build(tls)?),
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
    Ok(Listeners {
        listen,
        listen_tls,
        tls,
    })
}

pub fn build_admin(file: &FileConfig) -> Result<Option<AdminSettings>, ConfigError> {
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

pub fn build_limits(file: &FileConfig) -> Result<Limits, ConfigError> {
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

pub fn build_timeouts(file: &FileConfig) -> Result<Timeouts, ConfigError> {
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

pub fn duration(path: &str, text: &str) -> Result<Duration, ConfigError> {
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
