//! PostgreSQL, the system of record of a cluster: every node's spend records (shipped from its
//! local outbox, keyed by node and request id so a batch shipped twice is stored once), issued
//! keys and their change counter. Used only from side threads and the command line, never
//! from a worker: the `postgres` crate's client is blocking.

use std::time::Duration;

use postgres::{Client, NoTls};

use super::connecting::{Attempts, GaveUp};
use super::ledger::{group_column, DaySpend, SpendRow};

/// How long connecting, and any one statement, may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The tables a cluster shares. `requests` mirrors the local ledger's, plus the node.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    node TEXT NOT NULL, request_id TEXT NOT NULL,
    time TEXT NOT NULL, day TEXT NOT NULL, identity TEXT NOT NULL,
    user_name TEXT, team TEXT, session_id TEXT, agent_id TEXT, parent_agent_id TEXT,
    format TEXT NOT NULL, operation TEXT NOT NULL,
    model TEXT, upstream_model TEXT, upstream TEXT,
    status BIGINT NOT NULL, error TEXT,
    input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL,
    cache_creation_input_tokens BIGINT NOT NULL, cache_read_input_tokens BIGINT NOT NULL,
    cost_pico BIGINT NOT NULL, total_us BIGINT NOT NULL, ttfb_us BIGINT, attempts BIGINT NOT NULL,
    cache_creation_1h_input_tokens BIGINT NOT NULL, cache_savings_pico BIGINT NOT NULL,
    PRIMARY KEY (node, request_id)
);
ALTER TABLE requests ADD COLUMN IF NOT EXISTS user_agent TEXT;
CREATE INDEX IF NOT EXISTS requests_day ON requests (day);
CREATE TABLE IF NOT EXISTS issued_keys (
    sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, user_name TEXT, team TEXT, models TEXT,
    created_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS key_generation (id INTEGER PRIMARY KEY CHECK (id = 0), n BIGINT NOT NULL);
INSERT INTO key_generation VALUES (0, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS budgets (
    scope TEXT NOT NULL, name TEXT NOT NULL, period TEXT NOT NULL,
    limit_usd DOUBLE PRECISION NOT NULL, soft_usd DOUBLE PRECISION, updated_at TEXT NOT NULL,
    PRIMARY KEY (scope, name, period)
);
CREATE TABLE IF NOT EXISTS managed_settings (
    audience TEXT PRIMARY KEY, uuid TEXT, settings TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entity_limits (
    scope TEXT NOT NULL, name TEXT NOT NULL,
    rpm BIGINT, tpm BIGINT, max_streams BIGINT, updated_at TEXT NOT NULL,
    PRIMARY KEY (scope, name)
);
CREATE TABLE IF NOT EXISTS policy_generation (id INTEGER PRIMARY KEY CHECK (id = 0), n BIGINT NOT NULL);
INSERT INTO policy_generation VALUES (0, 0) ON CONFLICT DO NOTHING;
";

/// Held while the tables are created: nodes starting together would otherwise race on
/// `CREATE TABLE IF NOT EXISTS` (PostgreSQL can then fail one of them on its catalog).
const SCHEMA_LOCK: i64 = 0x5_1c_e0;

/// The channel a key change is announced on (`LISTEN sluice_keys`).
pub const KEYS_CHANNEL: &str = "sluice_keys";
/// The channel an admin change of budgets, limits or managed settings is announced on.
pub const POLICIES_CHANNEL: &str = "sluice_policies";

/// A PostgreSQL failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL: the connection string is not valid: {0}")]
    Conninfo(postgres::Error),
    #[error("PostgreSQL: cannot connect: {0}")]
    Connect(postgres::Error),
    #[error("PostgreSQL: {0}")]
    GaveUp(#[from] GaveUp),
    #[error("PostgreSQL: {what}: {source}")]
    Query {
        what: &'static str,
        source: postgres::Error,
    },
}

impl PgError {
    pub fn query(what: &'static str) -> impl FnOnce(postgres::Error) -> PgError {
        move |source| PgError::Query { what, source }
    }
}

/// Connects (bounded by [`TIMEOUT`] through the start-up exchange, see
/// [`connecting`](super::connecting); statements by the server's `statement_timeout`) and makes
/// sure the tables exist.
pub fn connect(conninfo: &str) -> Result<Client, PgError> {
    let mut config: postgres::Config = conninfo.parse().map_err(PgError::Conninfo)?;
    config
        .connect_timeout(TIMEOUT)
        .tcp_user_timeout(TIMEOUT)
        .options(&format!(
            "-c statement_timeout={} -c client_min_messages=warning",
            TIMEOUT.as_millis()
        ))
        .application_name("sluice");
    ATTEMPTS.run("sluice-pg-connect", TIMEOUT, move || open(&config))?
}

/// Connection attempts to PostgreSQL at once: a node makes a few at a time (keys, policies,
/// outbox, leases, admin), so more means a server that does not answer.
static ATTEMPTS: Attempts = Attempts::new(16);

/// Connects and creates the tables (blocking for as long as the server takes).
fn open(config: &postgres::Config) -> Result<Client, PgError> {
    let mut client = config.connect(NoTls).map_err(PgError::Connect)?;
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); {SCHEMA} COMMIT;"
        ))
        .map_err(PgError::query("create the tables"))?;
    Ok(client)
}

/// The local ledger's columns, in the order both tables hold them (`user` is `user_name` in
/// PostgreSQL, where `user` is reserved), and whether each is an integer.
pub const COLUMNS: [(&str, bool); 27] = [
    ("request_id", false),
    ("time", false),
    ("day", false),
    ("identity", false),
    ("user", false),
    ("team", false),
    ("session_id", false),
    ("agent_id", false),
    ("parent_agent_id", false),
    ("format", false),
    ("operation", false),
    ("model", false),
    ("upstream_model", false),
    ("upstream", false),
    ("status", true),
    ("error", false),
    ("input_tokens", true),
    ("output_tokens", true),
    ("cache_creation_input_tokens", true),
    ("cache_read_input_tokens", true),
    ("cost_pico", true),
    ("total_us", true),
    ("ttfb_us", true),
    ("attempts", true),
    ("cache_creation_1h_input_tokens", true),
    ("cache_savings_pico", true),
    ("user_agent", false),
];

/// One value of a shipped record.
#[derive(Debug, Clone)]
pub enum Value {
    Text(Option<String>),
    Int(Option<i64>),
}

/// Stores `rows` (each [`COLUMNS`] long) from `node` in one transaction; a row already stored
/// (the same node and request id) is left as it is. Returns how many were new.
pub fn ship(client: &mut Client, node: &str, rows: &[Vec<Value>]) -> Result<u64, PgError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let width = COLUMNS.len();
    let mut sql = String::from("INSERT INTO requests (node, ");
    let names: Vec<&str> = COLUMNS
        .iter()
        .map(|(name, _)| if *name == "user" { "user_name" } else { name })
        .collect();
    sql.push_str(&names.join(", "));
    sql.push_str(") VALUES ");
    let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&node];
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("($1");
        for j in 0..width {
            sql.push_str(&format!(", ${}", 2 + i * width + j));
        }
        sql.push(')');
        for value in row {
            params.push(match value {
                Value::Text(t) => t,
                Value::Int(n) => n,
            });
        }
    }
    sql.push_str(" ON CONFLICT (node, request_id) DO NOTHING");
    let mut tx = client
        .transaction()
        .map_err(PgError::query("begin a batch"))?;
    let added = tx
        .execute(sql.as_str(), &params)
        .map_err(PgError::query("store a batch"))?;
    tx.commit().map_err(PgError::query("commit a batch"))?;
    Ok(added)
}

/// The column a scope's spend is kept under.
fn scope_column(scope: &str) -> &'static str {
    match scope {
        "user" => "user_name",
        "team" => "team",
        _ => "identity",
    }
}

/// Picodollars every node recorded for `scope`/`key` on or after `first_day` (`YYYY-MM-DD`;
/// empty: all time).
pub fn spent_since(
    client: &mut Client,
    scope: &str,
    key: &str,
    first_day: &str,
) -> Result<u64, PgError> {
    let sql = format!(
        "SELECT COALESCE(SUM(cost_pico), 0)::BIGINT FROM requests WHERE {} = $1 AND day >= $2",
        scope_column(scope)
    );
    let row = client
        .query_one(sql.as_str(), &[&key, &first_day])
        .map_err(PgError::query("sum spend"))?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

/// Requests every node recorded (for tests and operators: `SELECT` by hand works too).
pub fn count_requests(client: &mut Client) -> Result<i64, PgError> {
    client
        .query_one("SELECT COUNT(*) FROM requests", &[])
        .map(|row| row.get(0))
        .map_err(PgError::query("count requests"))
}

/// Spend of every node grouped by one of [`GROUPS`] (as the local ledger's report is).
pub fn spend(client: &mut Client, group: &str) -> Result<Vec<SpendRow>, String> {
    let column = group_column(group)?;
    let column = if column == "user" {
        "user_name"
    } else {
        column
    };
    let sql = format!(
        "SELECT {column}, COUNT(*), SUM(input_tokens)::BIGINT, SUM(output_tokens)::BIGINT, \
         SUM(cost_pico)::BIGINT, SUM(cache_read_input_tokens)::BIGINT, \
         SUM(cache_creation_input_tokens)::BIGINT, SUM(cache_creation_1h_input_tokens)::BIGINT, \
         SUM(cache_savings_pico)::BIGINT FROM requests GROUP BY {column} ORDER BY 5 DESC"
    );
    let rows = client
        .query(sql.as_str(), &[])
        .map_err(|e| format!("PostgreSQL: {e}"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let input: i64 = row.get(2);
            let (read, written): (i64, i64) = (row.get(5), row.get(6));
            let prompt = input.saturating_add(read).saturating_add(written);
            SpendRow {
                group: row.get(0),
                requests: row.get(1),
                input_tokens: input,
                output_tokens: row.get(3),
                cost_usd: row.get::<_, i64>(4) as f64 / 1e12,
                cache_read_input_tokens: read,
                cache_creation_input_tokens: written,
                cache_creation_1h_input_tokens: row.get(7),
                cache_hit_rate: if prompt > 0 {
                    read as f64 / prompt as f64
                } else {
                    0.0
                },
                cache_savings_usd: row.get::<_, i64>(8) as f64 / 1e12,
                agents: Vec::new(),
            }
        })
        .collect())
}

/// Every node's spend per day and `group` from `first_day` on (as the local ledger's
/// [`super::ledger::spend_by_day`]).
pub fn spend_by_day(
    client: &mut Client,
    group: &str,
    first_day: &str,
) -> Result<Vec<DaySpend>, String> {
    let column = match group_column(group)? {
        "user" => "user_name",
        column => column,
    };
    let sql = format!(
        "SELECT day, {column}, COUNT(*), SUM(cost_pico)::BIGINT FROM requests WHERE day >= $1 \
         GROUP BY day, {column} ORDER BY day"
    );
    let rows = client
        .query(sql.as_str(), &[&first_day])
        .map_err(|e| format!("PostgreSQL: {e}"))?;
    Ok(rows
        .iter()
        .map(|row| DaySpend {
            day: row.get(0),
            group: row.get(1),
            requests: row.get(2),
            cost_usd: row.get::<_, i64>(3) as f64 / 1e12,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that takes the connection and never answers: the attempt is given up on after
    /// [`TIMEOUT`] (the bound itself is tested in `connecting`).
    #[test]
    fn connecting_to_a_server_that_never_answers_gives_up() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = silent.local_addr().expect("address").port();
        let given_up = connect(&format!(
            "host=127.0.0.1 port={port} user=sluice dbname=postgres"
        ));
        assert!(
            matches!(given_up, Err(PgError::GaveUp(GaveUp::NoAnswer(_)))),
            "{:?}",
            given_up.err()
        );
    }
}
