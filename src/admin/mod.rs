//! The admin API: issued keys, budgets, team and user limits, spend queries and config reload over HTTP/1.1 JSON, on its own listener with its
//! own key, served off the workers — administration is rare and never shares a worker with
//! traffic. Each connection gets a thread of its own (at most [`MAX_CONCURRENT`] at once; past
//! that a 503), and each request a total deadline, so a slow or silent client holds up nobody.
//!
//! - `GET  /admin/keys` — issued keys (never the keys themselves)
//! - `POST /admin/keys` — `{"name", "user"?, "team"?, "models"?, "expires"?, "rpm"?, "tpm"?,
//!   "max_streams"?, "budget"?: {"limit_usd", "period"?, "soft_usd"?}}` → `{"name", "key"}`
//!   (the key is shown once)
//! - `PUT|DELETE /admin/keys/{name}/limits` — `{"rpm"?, "tpm"?, "max_streams"?}`
//! - `POST /admin/keys/{name}/rotate` — `{"grace": "1h"}`? → `{"name", "key"}`
//! - `POST /admin/keys/{name}/revoke` → `{"revoked": n}`
//! - `GET  /admin/spend?by=identity|user|team|model|day|session_id|agent_id|user_agent` → rows
//! - budgets, teams, users and managed settings: see [`policies`]
//! - `GET /admin/signin/sessions`, `DELETE /admin/signin/users/{email}` — sign-in sessions
//! - `POST /admin/reload` — reads the config file again (like SIGHUP) → `{"generation"}`, or
//!   400 with the reason the running config was kept
//!
//! Everything else on the listener is the web console ([`console`]): sign in once with the
//! admin key, then pages and forms in the browser.
//!
//! Key changes reach the workers through the key store's refresher (within a second), which also
//! writes their audit events; every admin request is audited here as well. Errors use the
//! Anthropic error format.
// Input is parsed here: byte offsets into it must never panic (use `get`, or validate first).
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::string_slice))]

mod console;
mod error;
mod http;
mod policies;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::audit::{AuditEvent, AuditLog};
use crate::store::keys::{KeyBackend, KeyStoreError, NewKey, StoreLocation};
use crate::store::ledger::{DaySpend, SpendRow};
use crate::store::policies::EntityScope;
pub use console::ConsoleState;
pub use error::AdminError;
use http::{AdminRequest, Reply};

/// How often the accept loop checks for shutdown.
const POLL: Duration = Duration::from_millis(50);

/// Admin connections served at once; a further one is answered 503 and closed.
pub const MAX_CONCURRENT: usize = 16;

/// What the admin API needs.
pub struct AdminContext {
    pub key_digest: [u8; 32],
    /// The store file (keys and the ledger); `None` when `store.path = "off"`.
    pub store: Option<PathBuf>,
    /// Where issued keys and admin-set policies live (the store file, or the cluster's
    /// PostgreSQL).
    pub store_location: Option<StoreLocation>,
    /// In a cluster, the PostgreSQL that spend reports read (every node's records).
    pub cluster_postgres: Option<String>,
    pub audit: AuditLog,
    /// Reloads the config (`POST /admin/reload`) and reads the running one.
    pub reloader: Arc<crate::server::reload::Reloader>,
    /// The record writers and metrics (the console's Live page reads what `/metrics` serves).
    pub records: Option<crate::proxy::Records>,
    /// Console sessions and the request-rate readings.
    pub console: console::ConsoleState,
}

/// The running admin listener; [`AdminServer::stop`] ends it.
pub struct AdminServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl AdminServer {
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

/// Binds `listen` and starts the admin thread.
pub fn start(listen: SocketAddr, ctx: AdminContext) -> std::io::Result<AdminServer> {
    let listener = TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let ctx = Arc::new(ctx);
    let thread = std::thread::Builder::new()
        .name("sluice-admin".into())
        .spawn(move || accept_loop(&listener, &ctx, &stopped))?;
    Ok(AdminServer { addr, stop, thread })
}

fn accept_loop(listener: &TcpListener, ctx: &Arc<AdminContext>, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Acquire) {
        ctx.console.rates.sample_if_due(ctx);
        match listener.accept() {
            Ok((stream, _)) => dispatch(stream, ctx, &active),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                #[expect(clippy::disallowed_methods, reason = "the admin thread, not a worker")]
                std::thread::sleep(POLL);
            }
            Err(e) => tracing::warn!(error = %e, "admin accept failed"),
        }
    }
}

/// Serves `stream` on a thread of its own, unless [`MAX_CONCURRENT`] are busy.
fn dispatch(mut stream: TcpStream, ctx: &Arc<AdminContext>, active: &Arc<AtomicUsize>) {
    if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONCURRENT {
        active.fetch_sub(1, Ordering::AcqRel);
        http::write_reply(&mut stream, &AdminError::Busy.reply());
        return;
    }
    let (ctx, count) = (Arc::clone(ctx), Arc::clone(active));
    let spawned = std::thread::Builder::new()
        .name("sluice-admin-conn".into())
        .spawn(move || {
            serve(stream, &ctx);
            count.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = spawned {
        active.fetch_sub(1, Ordering::AcqRel);
        tracing::warn!(error = %e, "cannot start an admin connection thread");
    }
}

fn serve(mut stream: TcpStream, ctx: &AdminContext) {
    let reply = match http::read_request(&mut stream) {
        Ok(request) if console::serves(&request.path) => console::answer(&request, ctx),
        Ok(request) => {
            let reply = answer(&request, ctx);
            audit(ctx, &request, &reply);
            reply
        }
        Err(e) => e.reply(),
    };
    http::write_reply(&mut stream, &reply);
}

fn answer(request: &AdminRequest, ctx: &AdminContext) -> Reply {
    let presented = request.credential.as_deref().unwrap_or_default();
    let digest = crate::config::keys::digest(presented.as_bytes());
    if presented.is_empty() || !bool::from(digest.ct_eq(&ctx.key_digest)) {
        return AdminError::Unauthorized.reply();
    }
    if (request.method.as_str(), request.path.as_str()) == ("POST", "/admin/reload") {
        return reload(ctx);
    }
    let Some(store) = &ctx.store else {
        return AdminError::StoreOff.reply();
    };
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let result = match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["admin", "keys"]) => list_keys(ctx),
        ("POST", ["admin", "keys"]) => create_key(ctx, &request.body),
        ("PUT", ["admin", "keys", name, "limits"]) => {
            policies::put_entity(ctx, EntityScope::Key, name, &request.body)
        }
        ("DELETE", ["admin", "keys", name, "limits"]) => {
            policies::delete_entity(ctx, EntityScope::Key, name)
        }
        ("POST", ["admin", "keys", name, "revoke"]) => revoke_key(ctx, name),
        ("POST", ["admin", "keys", name, "rotate"]) => rotate_key(ctx, name, &request.body),
        ("GET", ["admin", "spend"]) => spend(ctx, request.query("by").unwrap_or("identity")),
        ("GET", ["admin", "signin", "sessions"]) => signin_sessions(ctx),
        ("DELETE", ["admin", "signin", "users", email]) => sign_out(ctx, email),
        ("GET", ["admin", "managed-settings"]) => policies::list_managed_settings(ctx),
        ("GET", ["admin", "managed-settings", "clients"]) => {
            policies::managed_settings_clients(ctx, store)
        }
        ("PUT", ["admin", "managed-settings"]) => {
            policies::put_managed_settings(ctx, &request.body)
        }
        ("DELETE", ["admin", "managed-settings", "everyone"]) => {
            policies::delete_managed_settings(ctx, "everyone")
        }
        ("DELETE", ["admin", "managed-settings", kind @ ("group" | "team"), name]) => {
            policies::delete_managed_settings(ctx, &format!("{kind}:{name}"))
        }
        ("GET", ["admin", "budgets"]) => policies::list_budgets(ctx),
        ("PUT", ["admin", "budgets"]) => policies::put_budget(ctx, &request.body),
        ("DELETE", ["admin", "budgets", scope, name, period]) => {
            policies::delete_budget(ctx, scope, name, period)
        }
        ("GET", ["admin", kind]) if EntityScope::parse(kind).is_some() => {
            entity(kind, |scope| policies::list_entities(ctx, scope))
        }
        ("PUT", ["admin", kind, name]) if EntityScope::parse(kind).is_some() => {
            entity(kind, |scope| {
                policies::put_entity(ctx, scope, name, &request.body)
            })
        }
        ("DELETE", ["admin", kind, name]) if EntityScope::parse(kind).is_some() => {
            entity(kind, |scope| policies::delete_entity(ctx, scope, name))
        }
        _ => Err(AdminError::NoRoute(format!(
            "{} {}",
            request.method, request.path
        ))),
    };
    result.unwrap_or_else(|e| e.reply())
}

fn entity(
    kind: &str,
    then: impl FnOnce(EntityScope) -> Result<Reply, AdminError>,
) -> Result<Reply, AdminError> {
    match EntityScope::parse(kind) {
        Some(scope) => then(scope),
        None => Err(AdminError::NoRoute(kind.to_string())),
    }
}

fn open(ctx: &AdminContext) -> Result<Box<dyn KeyBackend>, AdminError> {
    let location = ctx.store_location.as_ref().ok_or(AdminError::StoreOff)?;
    crate::store::keys::open(location).map_err(|e| store_error(&e))
}

fn store_error(e: &KeyStoreError) -> AdminError {
    match e {
        KeyStoreError::NoSuchKey(_) => AdminError::NotFound(e.to_string()),
        KeyStoreError::BadTime(_) => AdminError::invalid(e.to_string()),
        _ => {
            tracing::error!(error = %e, "admin: key store failed");
            AdminError::StoreFailed
        }
    }
}

fn list_keys(ctx: &AdminContext) -> Result<Reply, AdminError> {
    let rows = open(ctx)?.list().map_err(|e| store_error(&e))?;
    Ok(Reply::json(200, &json!({ "data": rows })))
}

fn create_key(ctx: &AdminContext, body: &[u8]) -> Result<Reply, AdminError> {
    let fields: Value =
        serde_json::from_slice(body).map_err(|e| AdminError::invalid(format!("body: {e}")))?;
    let (name, key) = issue_key(ctx, &fields)?;
    Ok(Reply::json(201, &json!({ "name": name, "key": key })))
}

/// Issues the key `fields` describe (the API's body): its name and the key, shown once.
fn issue_key(ctx: &AdminContext, fields: &Value) -> Result<(String, String), AdminError> {
    let text = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_string);
    let name = text("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| AdminError::invalid("`name` is required"))?;
    let models = match fields.get("models") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|m| m.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| AdminError::invalid("`models` must be strings"))?,
        ),
        Some(_) => return Err(AdminError::invalid("`models` must be an array")),
    };
    let key = NewKey {
        name: name.clone(),
        user: text("user"),
        team: text("team"),
        models,
        expires: text("expires"),
    };
    let key_policies = policies::key_policies(ctx, &name, fields)?;
    let created = open(ctx)?.create(&key).map_err(|e| store_error(&e))?;
    key_policies.store(ctx)?;
    Ok((name, created))
}

fn revoke_key(ctx: &AdminContext, name: &str) -> Result<Reply, AdminError> {
    let n = revoke(ctx, name)?;
    Ok(Reply::json(200, &json!({ "name": name, "revoked": n })))
}

/// Revokes every key named `name` (the API's and the console's): how many were.
fn revoke(ctx: &AdminContext, name: &str) -> Result<usize, AdminError> {
    open(ctx)?.revoke(name).map_err(|e| store_error(&e))
}

fn rotate_key(ctx: &AdminContext, name: &str, body: &[u8]) -> Result<Reply, AdminError> {
    let fields: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| AdminError::invalid(format!("body: {e}")))?
    };
    let grace = fields.get("grace").and_then(Value::as_str).unwrap_or("1h");
    let key = rotate_with_grace(ctx, name, grace)?;
    Ok(Reply::json(200, &json!({ "name": name, "key": key })))
}

/// A new key for `name`; the old one keeps working for `grace` (`"1h"`, `"0s"`…).
fn rotate_with_grace(ctx: &AdminContext, name: &str, grace: &str) -> Result<String, AdminError> {
    let grace = humantime::parse_duration(grace)
        .map_err(|e| AdminError::invalid(format!("`grace`: {e}")))?;
    open(ctx)?.rotate(name, grace).map_err(|e| store_error(&e))
}

/// Live sign-in sessions: who, since when, which team.
fn signin_sessions(ctx: &AdminContext) -> Result<Reply, AdminError> {
    let signin = signin_of(ctx)?;
    let sessions = signin.sessions().map_err(|e| {
        tracing::error!(error = %e, "cannot list sign-in sessions");
        AdminError::StoreFailed
    })?;
    let data: Vec<Value> = sessions
        .iter()
        .map(|s| {
            json!({
                "email": s.email, "team": s.team, "groups": s.groups,
                "signed_in_at": humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.created_at)
                ).to_string(),
            })
        })
        .collect();
    Ok(Reply::json(200, &json!({ "data": data })))
}

/// Ends every sign-in session of a user: their refresh tokens stop working and their access
/// tokens are refused at once (401, `x-should-retry: false`).
fn sign_out(ctx: &AdminContext, email: &str) -> Result<Reply, AdminError> {
    let ended = signin_of(ctx)?.sign_out(email).map_err(|e| {
        tracing::error!(error = %e, "cannot end sign-in sessions");
        AdminError::StoreFailed
    })?;
    ctx.audit.record(crate::audit::AuditEvent::signin(
        "signed_out",
        email,
        Some("admin"),
        Some(format!("{ended} sessions ended")),
    ));
    Ok(Reply::json(
        200,
        &json!({ "email": email, "sessions_ended": ended }),
    ))
}

fn signin_of(ctx: &AdminContext) -> Result<std::sync::Arc<crate::signin::Signin>, AdminError> {
    ctx.reloader
        .current()
        .state
        .signin
        .clone()
        .ok_or_else(|| AdminError::NotFound("sign-in is not configured ([signin])".into()))
}

/// Spend grouped by `by`: every node's in a cluster (PostgreSQL), else this node's ledger.
fn spend(ctx: &AdminContext, by: &str) -> Result<Reply, AdminError> {
    let rows = spend_rows(ctx, by)?;
    Ok(Reply::json(200, &json!({ "by": by, "data": rows })))
}

/// The rows of a spend report grouped by `by` (the API's and the console's).
fn spend_rows(ctx: &AdminContext, by: &str) -> Result<Vec<SpendRow>, AdminError> {
    match (&ctx.cluster_postgres, &ctx.store) {
        (Some(conninfo), _) => {
            let mut client = cluster_client(conninfo)?;
            crate::store::postgres::spend(&mut client, by).map_err(AdminError::Invalid)
        }
        (None, Some(store)) => crate::store::ledger::spend(store, by).map_err(AdminError::Invalid),
        (None, None) => Err(AdminError::StoreOff),
    }
}

/// Spend per day and group from `first_day` on (the console's chart).
fn spend_by_day(
    ctx: &AdminContext,
    by: &str,
    first_day: &str,
) -> Result<Vec<DaySpend>, AdminError> {
    match (&ctx.cluster_postgres, &ctx.store) {
        (Some(conninfo), _) => {
            let mut client = cluster_client(conninfo)?;
            crate::store::postgres::spend_by_day(&mut client, by, first_day)
                .map_err(AdminError::Invalid)
        }
        (None, Some(store)) => {
            crate::store::ledger::spend_by_day(store, by, first_day).map_err(AdminError::Invalid)
        }
        (None, None) => Err(AdminError::StoreOff),
    }
}

fn cluster_client(conninfo: &str) -> Result<postgres::Client, AdminError> {
    crate::store::postgres::connect(conninfo).map_err(|e| {
        tracing::error!(error = %e, "admin: cannot read the cluster's spend");
        AdminError::StoreFailed
    })
}

/// Reloads the config file: 200 with the new generation, or 400 saying why nothing changed.
fn reload(ctx: &AdminContext) -> Reply {
    match ctx.reloader.reload("admin API") {
        Ok(generation) => Reply::json(200, &json!({ "reloaded": true, "generation": generation })),
        Err(e) => AdminError::NotReloaded(e.to_string()).reply(),
    }
}

/// Every admin request, allowed or not, goes to the audit log (never the key or the body).
fn audit(ctx: &AdminContext, request: &AdminRequest, reply: &Reply) {
    let mut event = AuditEvent::admin("admin_request", "admin");
    if reply.status == 401 {
        // Nothing an unauthenticated client chose (its path, its method) goes into the log.
        event.identity = "unauthenticated".into();
        event.decision = "refused";
        event.status = reply.status;
        ctx.audit.record(event);
        return;
    }
    event.identity = "admin".into();
    event.decision = if reply.status < 400 {
        "allowed"
    } else {
        "refused"
    };
    event.status = reply.status;
    event.detail = Some(format!("{} {}", request.method, request.path));
    ctx.audit.record(event);
}
