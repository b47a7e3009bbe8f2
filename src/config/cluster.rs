//! `[cluster]` → [`ClusterSettings`]: several sluice nodes sharing one gateway's state.
//! PostgreSQL (`postgres`) is the system of record — issued keys, every node's spend — and
//! Redis (`redis`) holds the shared budget buckets each node leases slices from. Each node
//! still commits its records locally first (the `store.path` ledger is its outbox).

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, server::duration, ConfigError};

/// `[cluster]` as written.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// This node's name, unique in the cluster: it keys the node's records in PostgreSQL and
    /// its leases in Redis, and appears in every audit line.
    pub node_id: String,
    /// How many nodes the cluster is sized for: the static share of a budget while Redis is
    /// unreachable is `cap / nodes`.
    pub nodes: u32,
    /// PostgreSQL connection string (`host=… user=… dbname=…` or `postgresql://…`).
    pub postgres: String,
    /// Redis URL (`redis://host:port/db`).
    pub redis: String,
    /// What a node does once its leases have expired while Redis is unreachable.
    #[serde(default)]
    pub on_redis_failure: RedisFailure,
    /// How many seconds of a bucket's observed burn one lease slice covers.
    #[serde(default = "default_lease_window")]
    pub lease_window: String,
    /// How long Redis keeps a node's holding without hearing from it; a node stops spending its
    /// leases a quarter of this before then.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl: String,
    /// Records waiting to ship to PostgreSQL past which the store counts as failing
    /// (`store.on_failure` then decides).
    #[serde(default = "default_outbox_max")]
    pub outbox_max: u64,
}

fn default_lease_window() -> String {
    "2s".into()
}

fn default_lease_ttl() -> String {
    "10s".into()
}

fn default_outbox_max() -> u64 {
    1_000_000
}

/// What a node does with a budget once Redis has been unreachable past its leases.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RedisFailure {
    /// Spend up to `cap / nodes` of each budget window on this node alone.
    #[default]
    StaticShare,
    /// Refuse requests under a budget until Redis answers again.
    Refuse,
}

/// The validated `[cluster]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub node_id: String,
    pub nodes: u32,
    pub postgres: String,
    pub redis: String,
    pub on_redis_failure: RedisFailure,
    pub lease_window: Duration,
    pub lease_ttl: Duration,
    pub outbox_max: u64,
}

impl std::fmt::Debug for ClusterSettings {
    /// The connection strings can hold passwords: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("node_id", &self.node_id)
            .field("nodes", &self.nodes)
            .field("on_redis_failure", &self.on_redis_failure)
            .finish_non_exhaustive()
    }
}

/// Checks `[cluster]` against the store it needs (`store.backend = "postgres"` and a local
/// ledger file for the outbox).
pub fn build(
    file: Option<&ClusterFile>,
    backend: super::file::StoreBackend,
    ledger_on: bool,
) -> Result<Option<ClusterSettings>, ConfigError> {
    use super::file::StoreBackend;
    let Some(file) = file else {
        if backend == StoreBackend::Postgres {
            return Err(invalid(
                "store.backend",
                "`postgres` needs a [cluster] section (node_id, nodes, postgres, redis)",
            ));
        }
        return Ok(None);
    };
    if backend != StoreBackend::Postgres {
        return Err(invalid(
            "store.backend",
            "a [cluster] keeps its keys and spend in PostgreSQL: set `backend = \"postgres\"`",
        ));
    }
    if !ledger_on {
        return Err(invalid(
            "store.path",
            "a cluster node commits its records locally before shipping them: set a file",
        ));
    }
    let id_ok = !file.node_id.is_empty()
        && file.node_id.len() <= 64
        && file
            .node_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !id_ok {
        return Err(invalid(
            "cluster.node_id",
            "1 to 64 letters, digits, `.`, `_` or `-`",
        ));
    }
    if file.nodes == 0 {
        return Err(invalid("cluster.nodes", "must be at least 1"));
    }
    if file.postgres.trim().is_empty() {
        return Err(invalid(
            "cluster.postgres",
            "a connection string is required",
        ));
    }
    if !(file.redis.starts_with("redis://") || file.redis.starts_with("unix://")) {
        return Err(invalid(
            "cluster.redis",
            "a redis:// (or unix://) URL is required",
        ));
    }
    let lease_ttl = duration("cluster.lease_ttl", &file.lease_ttl)?;
    if lease_ttl < Duration::from_secs(2) {
        return Err(invalid("cluster.lease_ttl", "must be at least 2s"));
    }
    Ok(Some(ClusterSettings {
        node_id: file.node_id.clone(),
        nodes: file.nodes,
        postgres: file.postgres.clone(),
        redis: file.redis.clone(),
        on_redis_failure: file.on_redis_failure,
        lease_window: duration("cluster.lease_window", &file.lease_window)?,
        lease_ttl,
        outbox_max: file.outbox_max.max(1),
    }))
}
