//! The Keys page: issued keys (never the keys themselves), and forms to issue one (shown once,
//! in the answer to the form), rotate one, revoke one and set its rate limits. Each form does
//! what the admin API's call does, through the same functions, and is audited the same way.

use maud::{html, Markup};
use serde_json::{json, Map, Value};

use super::super::{AdminContext, AdminError};
use super::form::Form;
use super::page::notice;
use crate::store::policies::EntityScope;

/// What a form post did, said above the list.
pub enum Done {
    /// A key was issued or rotated: its name and the key, shown this once.
    Key {
        name: String,
        key: String,
        rotated: bool,
    },
    Said(String),
    Failed(String),
}

pub fn page(ctx: &AdminContext, csrf: &str, done: Option<Done>) -> Markup {
    let rows = super::super::open(ctx)
        .and_then(|mut db| db.list().map_err(|e| super::super::store_error(&e)));
    html! {
        @match &done {
            Some(Done::Key { name, key, rotated }) => {
                div.notice.ok role="status" {
                    @if *rotated { "New key for " } @else { "Issued " }
                    strong { (name) } ". Copy it now — it is not shown again:"
                    br;
                    code.secret #new-key { (key) }
                }
            }
            Some(Done::Said(text)) => (notice(true, text)),
            Some(Done::Failed(text)) => (notice(false, text)),
            None => {}
        }
        h2 { "Issue a key" }
        form.issue #issue-key method="post" action="/keys" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Name" input #key-name name="name" required; }
            label { "User" input name="user"; }
            label { "Team" input name="team"; }
            label { "Models (comma-separated)" input name="models" placeholder="all"; }
            label { "Expires (RFC 3339)" input name="expires"; }
            label { "Requests / min" input.small name="rpm" inputmode="numeric"; }
            label { "Tokens / min" input.small name="tpm" inputmode="numeric"; }
            label { "Budget $ / month" input.small name="budget_usd" inputmode="decimal"; }
            button #issue type="submit" { "Issue key" }
        }
        h2 { "Issued keys" }
        @match rows {
            Err(e) => (notice(false, &e.to_string())),
            Ok(rows) if rows.is_empty() => p.muted { "No keys issued yet." },
            Ok(rows) => table #keys-table {
                thead { tr {
                    th { "Name" } th { "User" } th { "Team" } th { "Models" } th { "Created" }
                    th { "State" } th { "Limits" } th { "" }
                } }
                tbody {
                    @for k in &rows {
                        tr data-key=(k.name) {
                            td { (k.name) br; span.muted { "sha256 " (k.sha256_prefix) "…" } }
                            td { (k.user.as_deref().unwrap_or("—")) }
                            td { (k.team.as_deref().unwrap_or("—")) }
                            td { (k.models.as_ref().map_or("all".to_string(), |m| m.join(", "))) }
                            td { (k.created_at) }
                            td.state {
                                @if let Some(at) = &k.revoked_at { span.down { "revoked " (at) } }
                                @else if let Some(at) = &k.expires_at { "expires " (at) }
                                @else { span.up { "active" } }
                            }
                            td {
                                form.inline method="post" action=(format!("/keys/{}/limits", urlencode(&k.name))) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input.small name="rpm" placeholder="rpm" inputmode="numeric";
                                    input.small name="tpm" placeholder="tpm" inputmode="numeric";
                                    input.small name="max_streams" placeholder="streams" inputmode="numeric";
                                    button type="submit" { "Set" }
                                }
                            }
                            td {
                                @if k.revoked_at.is_none() {
                                    form.inline method="post" action=(format!("/keys/{}/rotate", urlencode(&k.name))) {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input.small name="grace" value="1h" title="the old key keeps working this long";
                                        button.rotate type="submit" { "Rotate" }
                                    }
                                    form.inline method="post" action=(format!("/keys/{}/revoke", urlencode(&k.name))) {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button.danger.revoke type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            },
        }
    }
}

/// `POST /keys`: issues the key the form describes.
pub fn issue(ctx: &AdminContext, form: &Form) -> Done {
    let mut fields = Map::new();
    for name in ["name", "user", "team", "expires"] {
        if let Some(v) = form.text(name) {
            fields.insert(name.into(), json!(v));
        }
    }
    if let Some(models) = form.text("models") {
        let list: Vec<&str> = models
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        fields.insert("models".into(), json!(list));
    }
    let numbers = numbers(form, &["rpm", "tpm"]);
    let budget = match form.text("budget_usd").map(str::parse::<f64>) {
        None => Ok(None),
        Some(Ok(usd)) => Ok(Some(json!({ "limit_usd": usd, "period": "monthly" }))),
        Some(Err(_)) => Err(AdminError::invalid(
            "the budget must be a number of dollars",
        )),
    };
    let result = numbers.and_then(|numbers| {
        fields.extend(numbers);
        if let Some(b) = budget? {
            fields.insert("budget".into(), b);
        }
        super::super::issue_key(ctx, &Value::Object(fields))
    });
    match result {
        Ok((name, key)) => Done::Key {
            name,
            key,
            rotated: false,
        },
        Err(e) => Done::Failed(format!("Not issued: {e}")),
    }
}

/// `POST /keys/{name}/rotate`.
pub fn rotate(ctx: &AdminContext, name: &str, form: &Form) -> Done {
    let grace = form.text("grace").unwrap_or("1h");
    match super::super::rotate_with_grace(ctx, name, grace) {
        Ok(key) => Done::Key {
            name: name.to_string(),
            key,
            rotated: true,
        },
        Err(e) => Done::Failed(format!("Not rotated: {e}")),
    }
}

/// `POST /keys/{name}/revoke`.
pub fn revoke(ctx: &AdminContext, name: &str) -> Done {
    match super::super::revoke(ctx, name) {
        Ok(0) => Done::Failed(format!("No key named {name} to revoke.")),
        Ok(_) => Done::Said(format!("Revoked {name}: it is refused from now on.")),
        Err(e) => Done::Failed(format!("Not revoked: {e}")),
    }
}

/// `POST /keys/{name}/limits`: the key's rate limits (empty fields: no limit).
pub fn limits(ctx: &AdminContext, name: &str, form: &Form) -> Done {
    let result = numbers(form, &["rpm", "tpm", "max_streams"]).and_then(|fields| {
        let body = Value::Object(fields).to_string();
        super::super::policies::put_entity(ctx, EntityScope::Key, name, body.as_bytes())
    });
    match result {
        Ok(_) => Done::Said(format!("Limits of {name} set.")),
        Err(e) => Done::Failed(format!("Limits not set: {e}")),
    }
}

/// The named whole-number fields that are filled in.
fn numbers(form: &Form, names: &[&str]) -> Result<Map<String, Value>, AdminError> {
    let mut fields = Map::new();
    for name in names {
        if let Some(v) = form.text(name) {
            let n: u64 = v
                .parse()
                .map_err(|_| AdminError::invalid(format!("`{name}` must be a whole number")))?;
            fields.insert((*name).into(), json!(n));
        }
    }
    Ok(fields)
}

/// What a path segment must escape: everything but RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A key name as one URL path segment.
fn urlencode(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}
