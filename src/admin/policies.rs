//! Budgets, teams and users over the admin API. A change is validated against the running
//! config first (the same checks as the file), stored in the store file, then applied at once:
//! the budgets and rate limits are rebuilt with their counters carried over. Entries that come
//! from the config file are listed with `"source": "file"`; the API can override them (a stored
//! entry replaces the file's) but only delete what it stored.
//!
//! - `GET    /admin/budgets` — every budget with its spend in the current window
//! - `PUT    /admin/budgets` — `{"scope", "name", "period"?, "limit_usd", "soft_usd"?}`
//! - `DELETE /admin/budgets/{scope}/{name}/{period}` (`*` names the session budget)
//! - `GET    /admin/teams`, `/admin/users` — rate limits and budgets per team or user
//! - `PUT    /admin/teams/{name}`, `/admin/users/{name}` — `{"rpm"?, "tpm"?, "max_streams"?}`
//! - `DELETE /admin/teams/{name}`, `/admin/users/{name}`
//! - `GET    /admin/managed-settings` — every document served at `/managed/settings`
//! - `PUT    /admin/managed-settings` — `{"group"? | "team"?, "uuid"?, "settings": {…}}`
//! - `DELETE /admin/managed-settings/group/{name}`, `…/team/{name}`, `…/everyone`
//! - `GET    /admin/managed-settings/clients` — the checksum each caller last reported
//!   (Claude Code's hint header), and whether it is one sluice serves now: machines on a stale
//!   policy

use std::path::Path;

use serde_json::{json, Value};

use super::error::AdminError;
use super::http::Reply;
use super::AdminContext;
use crate::audit::AuditEvent;
use crate::config::file::{BudgetFile, BudgetScope, LimitedFile, ManagedSettingsFile};
use crate::config::managed::Audience;
use crate::limits::budget::Period;
use crate::limits::Scope;
use crate::store::policies::{EntityScope, PolicyStore};

pub fn list_budgets(ctx: &AdminContext) -> Result<Reply, AdminError> {
    let stored = open(ctx)?.budgets().map_err(|e| failed(&e))?;
    let config = ctx.reloader.current();
    let source = |scope: &str, name: &str, period: &str| {
        let from_api = stored
            .iter()
            .any(|b| b.scope.label() == scope && b.name == name && b.period.label() == period);
        if from_api {
            "admin"
        } else {
            "file"
        }
    };
    let mut data: Vec<Value> = config
        .state
        .budgets
        .usage()
        .map(|(scope, name, spec, used)| {
            json!({
                "scope": scope.label(), "name": name, "period": spec.period.label(),
                "limit_usd": spec.limit_usd, "soft_usd": spec.soft_usd,
                "used_usd": used, "source": source(scope.label(), name, spec.period.label()),
            })
        })
        .collect();
    data.extend(config.config.policies.session_budgets.iter().map(|spec| {
        json!({
            "scope": "session", "name": "*", "period": spec.period.label(),
            "limit_usd": spec.limit_usd, "soft_usd": spec.soft_usd,
            "source": source("session", "*", spec.period.label()),
        })
    }));
    Ok(Reply::json(200, &json!({ "data": data })))
}

pub fn put_budget(ctx: &AdminContext, body: &[u8]) -> Result<Reply, AdminError> {
    let fields = parse(body)?;
    let text = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_string);
    let scope = text("scope").ok_or_else(|| bad("`scope` is required"))?;
    let scope = BudgetScope::parse(&scope).ok_or_else(|| {
        bad(&format!(
            "scope: `{scope}`: expected key, user, team or session"
        ))
    })?;
    let mut budget = BudgetFile {
        name: text("name").unwrap_or_default(),
        period: period_of(text("period").as_deref(), "period")?,
        limit_usd: fields
            .get("limit_usd")
            .and_then(Value::as_f64)
            .ok_or_else(|| bad("`limit_usd` (a number) is required"))?,
        soft_usd: fields.get("soft_usd").and_then(Value::as_f64),
        scope,
    };
    if budget.scope == BudgetScope::Session {
        budget.name = "*".into();
    }
    let candidate = budget.clone();
    ctx.reloader
        .check_policies(move |file| file.budgets = vec![candidate])
        .map_err(|e| bad(&e.to_string().replace("budgets[0].", "")))?;
    open(ctx)?.put_budget(&budget).map_err(|e| failed(&e))?;
    let detail = format!(
        "{} {} {} limit_usd={} soft_usd={:?}",
        budget.period.label(),
        budget.scope.label(),
        budget.name,
        budget.limit_usd,
        budget.soft_usd
    );
    applied(ctx, "budget_changed", &budget.name, detail)
}

pub fn delete_budget(
    ctx: &AdminContext,
    scope: &str,
    name: &str,
    period: &str,
) -> Result<Reply, AdminError> {
    let found = open(ctx)?
        .delete_budget(scope, name, period)
        .map_err(|e| failed(&e))?;
    if !found {
        return Err(AdminError::NotFound(format!(
            "no {period} budget for {scope} {name} was set over the admin API (budgets from the config file are changed there)"
        )));
    }
    applied(
        ctx,
        "budget_deleted",
        name,
        format!("{period} {scope} {name}"),
    )
}

pub fn list_entities(ctx: &AdminContext, scope: EntityScope) -> Result<Reply, AdminError> {
    let stored = open(ctx)?.limits(scope).map_err(|e| failed(&e))?;
    let config = ctx.reloader.current();
    let limit_scope = match scope {
        EntityScope::Team => Scope::Team,
        EntityScope::User => Scope::User,
        EntityScope::Key => Scope::Key,
    };
    let mut names: Vec<String> = config
        .config
        .policies
        .limits_of(limit_scope)
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(
            config
                .state
                .budgets
                .usage()
                .filter(|(s, ..)| *s == limit_scope)
                .map(|(_, n, ..)| n.to_string()),
        )
        .collect();
    names.sort();
    names.dedup();
    let limits = config.config.policies.limits_of(limit_scope);
    let data: Vec<Value> = names
        .iter()
        .map(|name| {
            let spec = limits.iter().find(|(n, _)| n == name).map(|(_, s)| *s);
            let budgets: Vec<Value> = config
                .state
                .budgets
                .usage()
                .filter(|(s, n, ..)| *s == limit_scope && n == name)
                .map(|(_, _, spec, used)| {
                    json!({ "period": spec.period.label(), "limit_usd": spec.limit_usd, "used_usd": used })
                })
                .collect();
            json!({
                "name": name,
                "rpm": spec.and_then(|s| s.rpm),
                "tpm": spec.and_then(|s| s.tpm),
                "max_streams": spec.and_then(|s| s.max_streams),
                "limits_source": if stored.iter().any(|e| &e.name == name) { "admin" } else { "file" },
                "budgets": budgets,
            })
        })
        .collect();
    Ok(Reply::json(200, &json!({ "data": data })))
}

pub fn put_entity(
    ctx: &AdminContext,
    scope: EntityScope,
    name: &str,
    body: &[u8],
) -> Result<Reply, AdminError> {
    let limits = limits_from(name, &parse(body)?)?;
    open(ctx)?
        .put_limits(scope, &limits)
        .map_err(|e| failed(&e))?;
    let detail = format!(
        "{} {name} rpm={:?} tpm={:?} max_streams={:?}",
        scope.label(),
        limits.rpm,
        limits.tpm,
        limits.max_streams
    );
    applied(ctx, "limits_changed", name, detail)
}

/// `rpm`, `tpm` and `max_streams` from a JSON object (each optional).
pub fn limits_from(name: &str, fields: &Value) -> Result<LimitedFile, AdminError> {
    let number = |k: &str| -> Result<Option<u64>, AdminError> {
        match fields.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| bad(&format!("`{k}` must be a whole number"))),
        }
    };
    let small = |k: &str| -> Result<Option<u32>, AdminError> {
        number(k)?
            .map(|n| u32::try_from(n).map_err(|_| bad(&format!("`{k}` is too large"))))
            .transpose()
    };
    Ok(LimitedFile {
        name: name.to_string(),
        rpm: small("rpm")?,
        tpm: number("tpm")?,
        max_streams: small("max_streams")?,
    })
}

/// A new key's limits and budget, as given with `POST /admin/keys`.
pub struct KeyPolicies {
    limits: LimitedFile,
    budget: Option<BudgetFile>,
}

/// Reads and validates a new key's `rpm`, `tpm`, `max_streams` and `budget: {"limit_usd",
/// "period"?, "soft_usd"?}` (before the key is created, so a bad value creates nothing).
pub fn key_policies(
    ctx: &AdminContext,
    name: &str,
    fields: &Value,
) -> Result<KeyPolicies, AdminError> {
    let limits = limits_from(name, fields)?;
    let budget = match fields.get("budget") {
        None | Some(Value::Null) => None,
        Some(b) => Some(BudgetFile {
            scope: BudgetScope::Key,
            name: name.to_string(),
            period: period_of(b.get("period").and_then(Value::as_str), "budget.period")?,
            limit_usd: b
                .get("limit_usd")
                .and_then(Value::as_f64)
                .ok_or_else(|| bad("`budget.limit_usd` (a number) is required"))?,
            soft_usd: b.get("soft_usd").and_then(Value::as_f64),
        }),
    };
    if let Some(b) = &budget {
        let candidate = b.clone();
        ctx.reloader
            .check_policies(move |file| file.budgets = vec![candidate])
            .map_err(|e| bad(&e.to_string().replace("budgets[0].", "budget.")))?;
    }
    Ok(KeyPolicies { limits, budget })
}

impl KeyPolicies {
    /// Stores the key's limits and budget (if any) and applies them.
    pub fn store(&self, ctx: &AdminContext) -> Result<(), AdminError> {
        let l = &self.limits;
        let has_limits = l.rpm.is_some() || l.tpm.is_some() || l.max_streams.is_some();
        if !has_limits && self.budget.is_none() {
            return Ok(());
        }
        let mut db = open(ctx)?;
        if has_limits {
            db.put_limits(EntityScope::Key, l).map_err(|e| failed(&e))?;
        }
        if let Some(b) = &self.budget {
            db.put_budget(b).map_err(|e| failed(&e))?;
        }
        let detail = format!(
            "key {} rpm={:?} tpm={:?} max_streams={:?} budget={:?}",
            l.name,
            l.rpm,
            l.tpm,
            l.max_streams,
            self.budget
                .as_ref()
                .map(|b| (b.limit_usd, b.period.label()))
        );
        applied(ctx, "key_policies_set", &l.name, detail).map(|_| ())
    }
}

pub fn delete_entity(
    ctx: &AdminContext,
    scope: EntityScope,
    name: &str,
) -> Result<Reply, AdminError> {
    let found = open(ctx)?
        .delete_limits(scope, name)
        .map_err(|e| failed(&e))?;
    if !found {
        return Err(AdminError::NotFound(format!(
            "no limits for {} {name} were set over the admin API",
            scope.label()
        )));
    }
    applied(
        ctx,
        "limits_deleted",
        name,
        format!("{} {name}", scope.label()),
    )
}

pub fn list_managed_settings(ctx: &AdminContext) -> Result<Reply, AdminError> {
    let stored: Vec<String> = open(ctx)?
        .managed_settings()
        .map_err(|e| failed(&e))?
        .iter()
        .map(crate::store::policies::audience_key)
        .collect();
    let config = ctx.reloader.current();
    let data: Vec<Value> = config
        .config
        .managed_settings
        .policies
        .iter()
        .map(|p| {
            let (group, team, key) = match &p.audience {
                Audience::Group(g) => (Some(g.as_str()), None, format!("group:{g}")),
                Audience::Team(t) => (None, Some(t.as_str()), format!("team:{t}")),
                Audience::Everyone => (None, None, "everyone".to_string()),
            };
            let settings: Value = serde_json::from_str(&p.settings_json).unwrap_or(Value::Null);
            json!({
                "group": group, "team": team, "uuid": p.uuid, "checksum": p.checksum,
                "settings": settings,
                "source": if stored.contains(&key) { "admin" } else { "file" },
            })
        })
        .collect();
    Ok(Reply::json(200, &json!({ "data": data })))
}

pub fn put_managed_settings(ctx: &AdminContext, body: &[u8]) -> Result<Reply, AdminError> {
    let fields = parse(body)?;
    let text = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_string);
    let settings = match fields.get("settings") {
        Some(Value::Object(map)) => map.clone(),
        _ => {
            return Err(bad(
                "`settings` (a JSON object: managed-settings.json) is required",
            ))
        }
    };
    let doc = ManagedSettingsFile {
        group: text("group"),
        team: text("team"),
        uuid: text("uuid"),
        settings,
    };
    let key = crate::store::policies::audience_key(&doc);
    let candidate = doc.clone();
    ctx.reloader
        .check_policies(move |file| file.managed_settings = vec![candidate])
        .map_err(|e| {
            bad(&e
                .to_string()
                .replace("managed_settings[0]", "managed settings"))
        })?;
    open(ctx)?
        .put_managed_settings(&doc)
        .map_err(|e| failed(&e))?;
    applied(ctx, "managed_settings_changed", &key, key.clone())
}

pub fn managed_settings_clients(ctx: &AdminContext, store: &Path) -> Result<Reply, AdminError> {
    let seen = crate::store::ledger::settings_seen(store).map_err(|e| {
        tracing::error!(error = %e, "admin: cannot read the ledger");
        AdminError::StoreFailed
    })?;
    let config = ctx.reloader.current();
    let served: Vec<&str> = config
        .config
        .managed_settings
        .policies
        .iter()
        .map(|p| p.checksum.as_str())
        .collect();
    let data: Vec<Value> = seen
        .iter()
        .map(|s| {
            json!({
                "identity": s.identity, "user": s.user, "checksum": s.checksum,
                "last_seen": s.last_seen, "current": served.contains(&s.checksum.as_str()),
            })
        })
        .collect();
    Ok(Reply::json(200, &json!({ "data": data })))
}

/// Deletes the stored document for `audience` (`group:<name>`, `team:<name>`, `everyone`).
pub fn delete_managed_settings(ctx: &AdminContext, audience: &str) -> Result<Reply, AdminError> {
    let found = open(ctx)?
        .delete_managed_settings(audience)
        .map_err(|e| failed(&e))?;
    if !found {
        return Err(AdminError::NotFound(format!(
            "no managed settings for {audience} were set over the admin API (documents from the config file are changed there)"
        )));
    }
    applied(
        ctx,
        "managed_settings_deleted",
        audience,
        audience.to_string(),
    )
}

/// Applies the stored change to the running config and audits it.
fn applied(
    ctx: &AdminContext,
    action: &'static str,
    subject: &str,
    detail: String,
) -> Result<Reply, AdminError> {
    let mut event = AuditEvent::admin(action, subject);
    event.identity = "admin".into();
    event.detail = Some(detail);
    ctx.audit.record(event);
    match ctx.reloader.apply_policies("admin API") {
        Ok(generation) => Ok(Reply::json(
            200,
            &json!({ "applied": true, "generation": generation }),
        )),
        Err(e) => Err(AdminError::NotApplied(e.to_string())),
    }
}

/// The policy store: the store file, or the cluster's PostgreSQL.
fn open(ctx: &AdminContext) -> Result<PolicyStore, AdminError> {
    let location = ctx.store_location.as_ref().ok_or(AdminError::StoreOff)?;
    PolicyStore::open(location).map_err(|e| failed(&e))
}

fn failed(e: &crate::store::policies::PolicyStoreError) -> AdminError {
    tracing::error!(error = %e, "admin: policy store failed");
    AdminError::StoreFailed
}

fn parse(body: &[u8]) -> Result<Value, AdminError> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| bad("the body must be a JSON object"))
}

fn bad(message: &str) -> AdminError {
    AdminError::invalid(message)
}

/// A budget period as the admin API takes it (`monthly` when left out).
fn period_of(text: Option<&str>, field: &str) -> Result<Period, AdminError> {
    let text = text.unwrap_or("monthly");
    Period::parse(text).ok_or_else(|| {
        bad(&format!(
            "{field}: `{text}`: expected daily, weekly, monthly or total"
        ))
    })
}
