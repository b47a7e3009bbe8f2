//! The web console, served by the admin listener at `/`: Spend, Budgets, Live, Keys and Audit
//! pages, rendered on the server as HTML with inline SVG charts — no script, no build step,
//! nothing fetched from elsewhere (the style sheet is compiled in).
//!
//! Sign-in takes the admin key once (`POST /login`) and sets a session cookie (HttpOnly,
//! SameSite=Strict, eight hours; see [`session`]). Every state-changing request is a form post
//! that must carry the session's CSRF token and, when the browser says where it comes from
//! (`Origin`), come from the console's own origin. Pages are sent with a content security
//! policy that allows nothing from elsewhere, no framing, no caching, and a referrer policy that
//! keeps the `Origin` of the console's own posts (with `no-referrer` browsers send `Origin: null`). Sign-ins and every
//! change are audited; the admin API under `/admin/` is unchanged and keeps its bearer key.

mod audit;
mod budgets;
mod chart;
mod form;
mod keys;
mod live;
mod page;
mod scrape;
mod session;
mod spend;

use std::time::Duration;

use subtle::ConstantTimeEq;

use super::http::{AdminRequest, Reply, SESSION_COOKIE};
use super::AdminContext;
use crate::audit::AuditEvent;
use form::Form;
use keys::Done;
pub use live::RateSampler;
use page::{framed, html_reply, see_other};
use session::{Session, Sessions};

/// What the console keeps between requests.
#[derive(Default)]
pub struct ConsoleState {
    pub sessions: Sessions,
    pub rates: RateSampler,
}

/// A failed sign-in is answered after this (a brake on guessing; the admin key is long anyway).
const FAILED_SIGNIN_DELAY: Duration = Duration::from_millis(250);

/// Whether `path` is the console's: everything but the admin API.
pub fn serves(path: &str) -> bool {
    path != "/admin" && !path.starts_with("/admin/")
}

/// Answers a console request (and audits sign-ins and changes).
pub fn answer(request: &AdminRequest, ctx: &AdminContext) -> Reply {
    let method = request.method.as_str();
    match (method, request.path.as_str()) {
        ("GET", "/console.css") => return style_sheet(),
        ("GET", "/login") => return html_reply(200, page::signin(None)),
        ("POST", "/login") => return sign_in(request, ctx),
        _ => {}
    }
    let Some((token, session)) = session_of(request, &ctx.console.sessions) else {
        return if method == "GET" {
            see_other("/login")
        } else {
            refuse(ctx, "not signed in")
        };
    };
    match method {
        "GET" => show(request, ctx, &session),
        "POST" => change(request, ctx, &session, &token),
        _ => html_reply(405, page::signin(Some("Method not allowed."))),
    }
}

fn style_sheet() -> Reply {
    Reply {
        status: 200,
        content_type: "text/css; charset=utf-8",
        headers: vec![("cache-control", "max-age=3600".into())],
        body: page::STYLE.as_bytes().to_vec(),
    }
}

/// The signed-in session the request's cookie names, with its token.
fn session_of(request: &AdminRequest, sessions: &Sessions) -> Option<(String, Session)> {
    let token = request.session_cookie.as_deref()?;
    sessions.find(token).map(|s| (token.to_string(), s))
}

/// `POST /login`: the admin key, once, for a session cookie.
fn sign_in(request: &AdminRequest, ctx: &AdminContext) -> Reply {
    if !same_origin(request) {
        return refuse(ctx, "cross-site sign-in");
    }
    let form = Form::parse(&request.body);
    let presented = form.text("key").unwrap_or_default();
    let digest = crate::config::keys::digest(presented.as_bytes());
    let valid = !presented.is_empty() && bool::from(digest.ct_eq(&ctx.key_digest));
    let mut event = AuditEvent::admin("console_signin", "console");
    event.identity = if valid { "admin" } else { "unauthenticated" }.into();
    event.detail = Some("console sign-in".into());
    if !valid {
        event.decision = "refused";
        event.status = 401;
        ctx.audit.record(event);
        #[expect(clippy::disallowed_methods, reason = "an admin connection thread")]
        std::thread::sleep(FAILED_SIGNIN_DELAY);
        return html_reply(401, page::signin(Some("That is not the admin key.")));
    }
    let Some((token, _)) = ctx.console.sessions.start() else {
        return html_reply(
            500,
            page::signin(Some("Cannot start a session; see the gateway log.")),
        );
    };
    event.decision = "allowed";
    event.status = 303;
    ctx.audit.record(event);
    see_other("/spend").with_header(
        "set-cookie",
        format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            session::LIFETIME.as_secs()
        ),
    )
}

/// A page.
fn show(request: &AdminRequest, ctx: &AdminContext, session: &Session) -> Reply {
    let csrf = session.csrf.as_str();
    let path = request.path.as_str();
    let body = match path {
        "/" => return see_other("/spend"),
        "/spend" => spend::page(ctx, request.query("by"))
            .unwrap_or_else(|e| page::notice(false, &e.to_string())),
        "/budgets" => budgets::page(ctx).unwrap_or_else(|e| page::notice(false, &e.to_string())),
        "/live" => live::page(ctx),
        "/keys" => keys::page(ctx, csrf, None),
        "/audit" => audit::page(ctx),
        _ => {
            return html_reply(
                404,
                framed(path, csrf, None, page::notice(false, "No such page.")),
            )
        }
    };
    let refresh = (path == "/live").then_some(live::REFRESH_SECONDS);
    html_reply(200, framed(path, csrf, refresh, body))
}

/// A form post: checked for its session's CSRF token and origin, done, audited.
fn change(request: &AdminRequest, ctx: &AdminContext, session: &Session, token: &str) -> Reply {
    let form = Form::parse(&request.body);
    if !same_origin(request) || !session.allows(form.text("csrf").unwrap_or_default()) {
        return refuse(ctx, "no valid CSRF token");
    }
    let segments: Vec<String> = request
        .path
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let done = match segments.as_slice() {
        ["logout"] => {
            ctx.console.sessions.end(token);
            record_change(request, ctx, 303);
            return see_other("/login").with_header(
                "set-cookie",
                format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
            );
        }
        ["keys"] => keys::issue(ctx, &form),
        ["keys", name, "rotate"] => keys::rotate(ctx, name, &form),
        ["keys", name, "revoke"] => keys::revoke(ctx, name),
        ["keys", name, "limits"] => keys::limits(ctx, name, &form),
        _ => {
            let body = page::notice(false, "No such action.");
            return html_reply(404, framed("/keys", &session.csrf, None, body));
        }
    };
    let status = if matches!(done, Done::Failed(_)) {
        400
    } else {
        200
    };
    record_change(request, ctx, status);
    html_reply(
        status,
        framed(
            "/keys",
            &session.csrf,
            None,
            keys::page(ctx, &session.csrf, Some(done)),
        ),
    )
}

/// Whether the request comes from the console's own origin (or does not say).
fn same_origin(request: &AdminRequest) -> bool {
    match (&request.origin, &request.host) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host.as_str())
        }
        (Some(_), None) => false,
    }
}

/// A refused post (no session, a foreign origin, no CSRF token): 403, audited.
fn refuse(ctx: &AdminContext, why: &str) -> Reply {
    let mut event = AuditEvent::admin("console_request", "console");
    event.identity = "unauthenticated".into();
    event.decision = "refused";
    event.status = 403;
    event.detail = Some(why.to_string());
    ctx.audit.record(event);
    html_reply(
        403,
        page::signin(Some("Refused: sign in again from the console itself.")),
    )
}

/// A change made in the console goes to the audit log like an admin API call.
fn record_change(request: &AdminRequest, ctx: &AdminContext, status: u16) {
    let mut event = AuditEvent::admin("console_request", "console");
    event.identity = "admin".into();
    event.decision = if status < 400 { "allowed" } else { "refused" };
    event.status = status;
    event.detail = Some(format!("{} {}", request.method, request.path));
    ctx.audit.record(event);
}
