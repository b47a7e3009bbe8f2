//! Requests sluice answers itself: health, Claude Code's warm-up `HEAD`, model discovery
//! (`GET /v1/models` in the Anthropic list format, fast and never a redirect), and sluice's own
//! error responses in the Anthropic error format.

use super::authenticate::Identity;
use super::classify::Operation;
use super::client::{ClientConn, ClientGone};
use super::error::{error_body, reason_phrase};
use super::exchange::Response;
use super::usage_notice;
use super::GatewayError;
use crate::config::{Config, ModelInfo};
use crate::http1::{Http1Error, Method, RequestHead};

/// A response sluice wrote itself, and whether the connection may carry another request.
pub struct Answered {
    pub response: Response,
    pub keep_alive: bool,
}

impl Answered {
    fn new(status: u16, bytes: usize, keep_alive: bool) -> Self {
        Self {
            response: Response {
                status,
                bytes: bytes as u64,
                ..Response::default()
            },
            keep_alive,
        }
    }
}

/// Answers a local operation; `keep_alive`: the request allows another on its connection.
pub async fn answer(
    client: &mut ClientConn,
    head: &RequestHead,
    op: &Operation,
    config: &Config,
    identity: Option<&Identity>,
    (request_id, keep_alive): (&str, bool),
) -> Result<Answered, GatewayError> {
    // Discovery lists only what this identity may use.
    let visible: Vec<ModelInfo> = config
        .models
        .iter()
        .filter(|m| identity.is_none_or(|id| id.allows(&m.id)))
        .cloned()
        .collect();
    let (status, body): (u16, Vec<u8>) = match op {
        Operation::Health => (200, br#"{"status":"ok"}"#.to_vec()),
        Operation::WarmUp => (200, Vec::new()),
        Operation::ListModels => (200, list_models(&visible, head.query())),
        // Claude Code in Bedrock mode asks first; an empty list lets it use its default model.
        Operation::InferenceProfiles => (200, br#"{"inferenceProfileSummaries":[]}"#.to_vec()),
        Operation::GetModel(id) => match visible.iter().find(|m| &m.id == id) {
            Some(m) => (200, model_json(m).to_string().into_bytes()),
            None => return Err(GatewayError::NotFound(format!("model: {id}"))),
        },
        _ => {
            return Err(GatewayError::NotFound(format!(
                "no route for {}",
                String::from_utf8_lossy(head.path())
            )))
        }
    };
    let head_only = head.method == Method::Head;
    write_answer(
        client,
        (status, &[], &body),
        head_only,
        (request_id, keep_alive),
    )
    .await
}

/// Answers `GET /metrics` with the Prometheus text rendered by the caller.
/// `/healthz` of a cluster node: ok, and how its shared stores are doing (it serves either
/// way: Redis and PostgreSQL outages are policies, not failures).
pub async fn health(
    client: &mut ClientConn,
    head: &RequestHead,
    cluster: &crate::server::cluster::ClusterStatus,
    (request_id, keep_alive): (&str, bool),
) -> Result<Answered, GatewayError> {
    let body = serde_json::json!({ "status": "ok", "cluster": cluster.health_json() }).to_string();
    write_answer(
        client,
        (200, &[], body.as_bytes()),
        head.method == Method::Head,
        (request_id, keep_alive),
    )
    .await
}

pub async fn metrics(
    client: &mut ClientConn,
    head: &RequestHead,
    text: String,
    (request_id, keep_alive): (&str, bool),
) -> Result<Answered, GatewayError> {
    write_answer(
        client,
        (200, &[("content-type", PROMETHEUS_TEXT)], text.as_bytes()),
        head.method == Method::Head,
        (request_id, keep_alive),
    )
    .await
}

/// Answers `GET /managed/settings` for `identity`: its document (200, `ETag`: the quoted
/// checksum), 304 when `If-None-Match` names that checksum (or is `*`: a presence probe), 404
/// when no document applies.
pub async fn managed_settings(
    client: &mut ClientConn,
    head: &RequestHead,
    config: &Config,
    identity: &Identity,
    (request_id, keep_alive): (&str, bool),
) -> Result<Answered, GatewayError> {
    let team = identity.team();
    let Some(policy) = config.managed_settings.for_caller(identity.groups(), team) else {
        return Err(GatewayError::NotFound(
            "no managed settings for this caller".into(),
        ));
    };
    let etag = format!("\"{}\"", policy.checksum);
    let matches = head.header_str("if-none-match").is_some_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(&etag))
    });
    let extra = [
        ("etag", etag.as_str()),
        ("cache-control", "private, no-cache"),
    ];
    let (status, body) = if matches {
        (304, String::new())
    } else {
        let body = format!(
            "{{\"uuid\":{},\"checksum\":{},\"settings\":{}}}",
            serde_json::Value::from(policy.uuid.as_str()),
            serde_json::Value::from(policy.checksum.as_str()),
            policy.settings_json
        );
        (200, body)
    };
    let head_only = head.method == Method::Head;
    write_answer(
        client,
        (status, &extra, body.as_bytes()),
        head_only,
        (request_id, keep_alive),
    )
    .await
}

/// Answers `GET /api/oauth/usage` for `identity`: where its key, user and team budgets stand,
/// or, under none, what it spent today, this week and this month (read from the ledger on the
/// blocking pool).
pub async fn usage(
    client: &mut ClientConn,
    head: &RequestHead,
    gw: &super::Gateway,
    identity: &Identity,
    (request_id, keep_alive): (&str, bool),
) -> Result<Answered, GatewayError> {
    let standings = gw.state.budgets.standings(&identity.scopes());
    let document = if standings.is_empty() {
        let spent = spent_in_ledger(gw, identity).await?;
        usage_notice::uncapped_usage(spent)
    } else {
        usage_notice::capped_usage(&standings)
    };
    let body = document.to_string();
    let extra = [("cache-control", "no-store")];
    let head_only = head.method == Method::Head;
    write_answer(
        client,
        (200, &extra, body.as_bytes()),
        head_only,
        (request_id, keep_alive),
    )
    .await
}

/// Takes an OpenTelemetry export: hands it to the relay (when a collector takes its signal)
/// and answers 200 whatever becomes of it, as the contract asks (an error makes the client log
/// errors, and telemetry is never worth a retry). The answer is OTLP's empty success, in the
/// export's encoding.
pub async fn telemetry(
    client: &mut ClientConn,
    head: &RequestHead,
    signal: crate::config::file::Signal,
    gw: &super::Gateway,
    request_id: &str,
) -> Result<Answered, GatewayError> {
    if let crate::http1::BodyFraming::Length(n) = head.framing {
        if n > crate::telemetry::MAX_EXPORT_BYTES {
            return Err(Http1Error::BodyTooLarge(crate::telemetry::MAX_EXPORT_BYTES).into());
        }
    }
    let body = super::request_body::read(client, head).await?;
    let body = super::request_body::complete(client, body).await?;
    if body.len() > crate::telemetry::MAX_EXPORT_BYTES {
        // A chunked export has no length up front: it is bounded once read.
        return Err(Http1Error::BodyTooLarge(crate::telemetry::MAX_EXPORT_BYTES).into());
    }
    let content_type = head
        .header_str("content-type")
        .unwrap_or("application/x-protobuf");
    if let (Some(relay), super::request_body::RequestBody::Whole { bytes, .. }) =
        (&gw.state.telemetry, &body)
    {
        relay.submit(crate::telemetry::Export {
            signal,
            body: bytes.clone(),
            content_type: content_type.to_string(),
            content_encoding: head.header_str("content-encoding").map(str::to_string),
        });
    }
    let keep_alive = head.keep_alive && client.body_read();
    let (answer_type, answer): (&str, &[u8]) = if content_type.starts_with("application/json") {
        ("application/json", b"{}")
    } else {
        ("application/x-protobuf", b"")
    };
    write_answer(
        client,
        (200, &[("content-type", answer_type)], answer),
        false,
        (request_id, keep_alive),
    )
    .await
}

/// What `identity` (its user, else its key) spent in the current day, week and month, in cents.
async fn spent_in_ledger(
    gw: &super::Gateway,
    identity: &Identity,
) -> Result<usage_notice::Spent, GatewayError> {
    use crate::limits::budget::{day_string, today, Period};
    let entity = match (identity.user(), identity) {
        (Some(user), _) => ("user", user.to_string()),
        (None, Identity::Key { names, .. }) => ("key", names.label().to_string()),
        _ => return Ok(usage_notice::Spent::default()),
    };
    let Some(path) = gw.config.store.path.clone() else {
        return Ok(usage_notice::Spent::default());
    };
    let day = today();
    let since = |period: Period| day_string(period.first_day(day));
    let firsts = [
        since(Period::Daily),
        since(Period::Weekly),
        since(Period::Monthly),
    ];
    let read = monoio::spawn_blocking(move || {
        crate::store::ledger::spent_since_each(&path, entity.0, &entity.1, &firsts)
    })
    .await;
    let cents = |pico: u64| pico as f64 / 1e10;
    match read {
        Ok(Ok([daily, weekly, monthly])) => Ok(usage_notice::Spent {
            daily: cents(daily),
            weekly: cents(weekly),
            monthly: cents(monthly),
        }),
        _ => Err(GatewayError::StoreUnavailable),
    }
}

/// The Prometheus text exposition format's content type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes sluice's error response for `err`; the connection goes on only when the client took
/// the answer and `close` is false.
pub async fn reply_error(
    client: &mut ClientConn,
    err: &GatewayError,
    close: bool,
    request_id: &str,
) -> Answered {
    let r = err.response();
    let body = error_body(r.kind, &err.to_string(), request_id);
    let fields = err.headers();
    let extra: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let delivered = write_response(client, r.status, &extra, &body, close, false, request_id)
        .await
        .is_ok();
    let mut answered = Answered::new(r.status, body.len(), delivered && !close);
    answered.response.error = Some(r.label);
    answered.response.rejected = r.fault == super::error::Fault::Policy;
    answered
}

/// Writes a complete local answer — `(status, extra fields, body)`, the head alone for a HEAD
/// request — and says what was answered.
pub(super) async fn write_answer(
    client: &mut ClientConn,
    (status, extra, body): (u16, &[(&str, &str)], &[u8]),
    head_only: bool,
    (request_id, keep_alive): (&str, bool),
) -> Result<Answered, GatewayError> {
    write_response(
        client,
        status,
        extra,
        body,
        !keep_alive,
        head_only,
        request_id,
    )
    .await
    .map_err(|_| GatewayError::ClientHttp(Http1Error::UnexpectedEof))?;
    Ok(Answered::new(status, body.len(), keep_alive))
}

/// Writes a complete JSON response.
pub async fn write_response(
    client: &mut ClientConn,
    status: u16,
    extra: &[(&str, &str)],
    body: &[u8],
    close: bool,
    head_only: bool,
    request_id: &str,
) -> Result<(), ClientGone> {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    let typed = extra
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    if !body.is_empty() && !typed {
        out.extend_from_slice(b"content-type: application/json\r\n");
    }
    out.extend_from_slice(
        format!(
            "content-length: {}\r\nrequest-id: {request_id}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    for (name, value) in extra {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
    client.write_all(out).await.map(|_| ())
}

fn model_json(m: &ModelInfo) -> serde_json::Value {
    serde_json::json!({
        "type": "model",
        "id": m.id,
        "display_name": m.display_name,
        "created_at": m.created_at,
    })
}

/// The Anthropic list format, honouring `limit`, `after_id` and `before_id`.
fn list_models(models: &[ModelInfo], query: &[u8]) -> Vec<u8> {
    let q = String::from_utf8_lossy(query.strip_prefix(b"?").unwrap_or(query)).into_owned();
    let param = |name: &str| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let limit = param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 1000);
    let mut start = 0;
    let mut end = models.len();
    if let Some(after) = param("after_id") {
        start = models
            .iter()
            .position(|m| m.id == after)
            .map_or(models.len(), |i| i + 1);
    }
    if let Some(before) = param("before_id") {
        end = models.iter().position(|m| m.id == before).unwrap_or(0);
        start = end.saturating_sub(limit).max(start.min(end));
    }
    let page: Vec<&ModelInfo> = models
        .get(start.min(end)..end)
        .unwrap_or_default()
        .iter()
        .take(limit)
        .collect();
    let has_more = start + page.len() < end;
    serde_json::json!({
        "data": page.iter().map(|m| model_json(m)).collect::<Vec<_>>(),
        "first_id": page.first().map(|m| m.id.clone()),
        "last_id": page.last().map(|m| m.id.clone()),
        "has_more": has_more,
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(n: usize) -> Vec<ModelInfo> {
        (0..n)
            .map(|i| ModelInfo {
                id: format!("claude-{i}"),
                display_name: format!("C{i}"),
                created_at: "2025-01-01T00:00:00Z".into(),
            })
            .collect()
    }

    #[test]
    fn pages_through_models() {
        let all = models(5);
        let v: serde_json::Value = serde_json::from_slice(&list_models(&all, b"?limit=2")).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["has_more"], true);
        assert_eq!(v["last_id"], "claude-1");
        let v: serde_json::Value =
            serde_json::from_slice(&list_models(&all, b"?limit=2&after_id=claude-3")).unwrap();
        assert_eq!(v["data"][0]["id"], "claude-4");
        assert_eq!(v["has_more"], false);
        let v: serde_json::Value =
            serde_json::from_slice(&list_models(&all, b"?limit=1000")).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 5);
        assert_eq!(v["data"][0]["type"], "model");
    }
}
