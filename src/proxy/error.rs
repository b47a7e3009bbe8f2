//! `GatewayError`: everything that can go wrong while sluice answers a request. Each variant
//! maps, in one `match`, to one HTTP status and Anthropic error `type`, to who is at fault
//! (client, upstream or sluice: this decides retries), and to a metric label. Once response bytes
//! have gone to the client an error can only end the stream; the relay handles that.

use thiserror::Error;

use crate::http1::Http1Error;
use crate::provider::connect::ConnectError;

/// Who caused a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Client,
    /// Governance refused it: the operator's policy (credentials, allow-lists, limits, budgets,
    /// the one rule). Counted in `sluice_rejections_total`.
    Policy,
    Upstream,
    Internal,
}

/// How sluice answers one failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorResponse {
    pub status: u16,
    /// Anthropic `error.type`.
    pub kind: &'static str,
    pub fault: Fault,
    pub label: &'static str,
}

#[derive(Debug, Error)]
pub enum GatewayError {
    #[error("{0}")]
    ClientHttp(Http1Error),
    #[error("timed out waiting for the request head")]
    HeadTimeout,
    #[error("timed out waiting for the request body")]
    BodyTimeout,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("ambiguous request path: {0}")]
    AmbiguousPath(&'static str),
    #[error("ambiguous request body: top-level `{member}` {why}")]
    AmbiguousBody {
        member: &'static str,
        why: &'static str,
    },
    #[error("{0}")]
    OperationNotAllowed(&'static str),
    #[error("model `{0}` has no price on this gateway, and a budget applies to this request")]
    ModelUnpriced(String),
    #[error("invalid x-api-key or authorization")]
    Unauthorized,
    #[error("this key has expired")]
    KeyExpired,
    /// A sign-in token whose session was ended or that expired: sign in again (the client is
    /// told not to retry).
    #[error("your sign-in has ended: run /login again")]
    SignInEnded,
    #[error("model `{0}` is not allowed for this key")]
    ModelNotAllowed(String),
    /// A signed-in developer's team may not use the model: Claude Code's gateway contract
    /// asks for a 400 (the CLI then offers another model).
    #[error("model `{0}` is not available to your team on this gateway")]
    ModelDenied(String),
    #[error("rate limit reached: {which}; retry in {retry_after} s")]
    RateLimited { which: String, retry_after: u64 },
    /// A budget has no room for the request: Claude Code's billing error, with the usage
    /// notice's fields ([`super::usage_notice`]).
    #[error("spend limit reached: the {} is used up; ask your platform team if you need more before then", .0.which)]
    BudgetExceeded(crate::limits::budget::BudgetRefusal),
    #[error("{0}")]
    NotFound(String),
    #[error("model `{0}` is not available on this gateway")]
    ModelNotRouted(String),
    #[error("upstream unreachable: {0}")]
    UpstreamConnect(ConnectError),
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("upstream sent an invalid response: {0}")]
    UpstreamProtocol(Http1Error),
    /// A cloud upstream refused a Messages request: its type, a generic message (see
    /// [`super::upstream_refusal`]).
    #[error("{}", .0.message)]
    UpstreamRefused(super::upstream_refusal::UpstreamRefusal),
    #[error("upstream closed the connection before answering")]
    UpstreamClosed,
    #[error("upstream I/O error: {0}")]
    UpstreamIo(std::io::Error),
    #[error("no valid credentials for the upstream yet: {0}")]
    UpstreamCredentials(String),
    #[error("too many connections")]
    Overloaded,
    #[error("the spend ledger is unavailable and store.on_failure is closed")]
    StoreUnavailable,
    /// A CRI token arrived while no fresh key set is held (fail closed).
    #[error("customer-routed inference is unavailable: the issuer's keys could not be fetched; retry shortly")]
    CriKeysUnavailable,
}

impl GatewayError {
    /// The one response for this failure.
    pub fn response(&self) -> ErrorResponse {
        use Fault::*;
        let r = |status, kind, fault, label| ErrorResponse {
            status,
            kind,
            fault,
            label,
        };
        match self {
            GatewayError::ClientHttp(e) => match e {
                Http1Error::HeadTooLarge(_) | Http1Error::TooManyHeaders(_) => {
                    r(431, "invalid_request_error", Client, "head_too_large")
                }
                Http1Error::BodyTooLarge(_) => {
                    r(413, "request_too_large", Client, "body_too_large")
                }
                Http1Error::UnsupportedTransferEncoding => r(
                    501,
                    "invalid_request_error",
                    Client,
                    "unsupported_transfer_encoding",
                ),
                Http1Error::UnsupportedMethod(_) => {
                    r(501, "invalid_request_error", Client, "unsupported_method")
                }
                Http1Error::UnsupportedExpectation => {
                    r(417, "invalid_request_error", Client, "expectation_failed")
                }
                _ => r(400, "invalid_request_error", Client, "bad_request"),
            },
            GatewayError::HeadTimeout => r(408, "timeout_error", Client, "head_timeout"),
            GatewayError::BodyTimeout => r(408, "timeout_error", Client, "body_timeout"),
            GatewayError::InvalidRequest(_) => {
                r(400, "invalid_request_error", Client, "invalid_request")
            }
            GatewayError::AmbiguousPath(_) => {
                r(400, "invalid_request_error", Policy, "ambiguous_path")
            }
            GatewayError::AmbiguousBody { .. } => {
                r(400, "invalid_request_error", Policy, "ambiguous_body")
            }
            GatewayError::OperationNotAllowed(_) => {
                r(403, "permission_error", Policy, "operation_not_allowed")
            }
            GatewayError::ModelUnpriced(_) => r(403, "permission_error", Policy, "model_unpriced"),
            GatewayError::Unauthorized => r(401, "authentication_error", Policy, "unauthorized"),
            GatewayError::KeyExpired => r(401, "authentication_error", Policy, "key_expired"),
            GatewayError::SignInEnded => r(401, "authentication_error", Policy, "signin_ended"),
            GatewayError::ModelNotAllowed(_) => {
                r(403, "permission_error", Policy, "model_not_allowed")
            }
            GatewayError::ModelDenied(_) => {
                r(400, "invalid_request_error", Policy, "model_not_allowed")
            }
            GatewayError::RateLimited { .. } => r(429, "rate_limit_error", Policy, "rate_limited"),
            GatewayError::BudgetExceeded(_) => r(429, "billing_error", Policy, "budget_exceeded"),
            GatewayError::NotFound(_) => r(404, "not_found_error", Client, "not_found"),
            GatewayError::ModelNotRouted(_) => {
                r(404, "not_found_error", Client, "model_not_routed")
            }
            GatewayError::UpstreamConnect(_) => r(502, "api_error", Upstream, "upstream_connect"),
            GatewayError::UpstreamTimeout => r(504, "timeout_error", Upstream, "upstream_timeout"),
            GatewayError::UpstreamProtocol(_) => r(502, "api_error", Upstream, "upstream_protocol"),
            GatewayError::UpstreamClosed => r(502, "api_error", Upstream, "upstream_closed"),
            GatewayError::UpstreamRefused(refusal) => {
                r(refusal.status, refusal.kind, Upstream, "upstream_refused")
            }
            GatewayError::UpstreamIo(_) => r(502, "api_error", Upstream, "upstream_io"),
            GatewayError::UpstreamCredentials(_) => {
                r(502, "api_error", Upstream, "upstream_credentials")
            }
            GatewayError::Overloaded => r(529, "overloaded_error", Internal, "overloaded"),
            GatewayError::StoreUnavailable => r(503, "api_error", Policy, "store_unavailable"),
            GatewayError::CriKeysUnavailable => r(503, "api_error", Policy, "cri_jwks_unavailable"),
        }
    }
}

impl GatewayError {
    /// The fields this answer carries besides its body: `retry-after`, the authentication
    /// challenge, `x-should-retry: false` where retrying cannot help (a sign-in that ended, a
    /// budget used up) and a budget's usage notice.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut fields = Vec::new();
        match self {
            GatewayError::RateLimited { retry_after, .. } => {
                fields.push(("retry-after", retry_after.to_string()));
            }
            GatewayError::UpstreamRefused(refusal) => {
                if let Some(seconds) = refusal.retry_after {
                    fields.push(("retry-after", seconds.to_string()));
                }
            }
            GatewayError::BudgetExceeded(refusal) => {
                fields = super::usage_notice::headers(
                    &refusal.standing,
                    crate::signin::tokens::now_secs(),
                )
                .into_iter()
                .map(|(name, value)| (name, value.into()))
                .collect();
                fields.push(("x-should-retry", "false".into()));
            }
            GatewayError::Overloaded
            | GatewayError::StoreUnavailable
            | GatewayError::CriKeysUnavailable => {
                fields.push(("retry-after", "1".into()));
            }
            GatewayError::SignInEnded => {
                fields.push(("x-should-retry", "false".into()));
            }
            _ => {}
        }
        if self.response().status == 401 {
            fields.push(("www-authenticate", "Bearer".into()));
        }
        fields
    }
}

impl From<Http1Error> for GatewayError {
    fn from(e: Http1Error) -> Self {
        GatewayError::ClientHttp(e)
    }
}

/// The reason phrase for a status sluice writes itself.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Unknown",
    }
}

/// The Anthropic error body: `{"type":"error","error":{"type":…,"message":…},"request_id":…}`.
pub fn error_body(kind: &str, message: &str, request_id: &str) -> Vec<u8> {
    serde_json::json!({
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": request_id,
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_one_status_and_type() {
        let cases: [(GatewayError, u16, &str); 6] = [
            (
                Http1Error::HeadTooLarge(1).into(),
                431,
                "invalid_request_error",
            ),
            (Http1Error::BodyTooLarge(1).into(), 413, "request_too_large"),
            (
                Http1Error::ContentLengthWithTransferEncoding.into(),
                400,
                "invalid_request_error",
            ),
            (GatewayError::Unauthorized, 401, "authentication_error"),
            (GatewayError::UpstreamTimeout, 504, "timeout_error"),
            (GatewayError::UpstreamClosed, 502, "api_error"),
        ];
        for (e, status, kind) in cases {
            let r = e.response();
            assert_eq!((r.status, r.kind), (status, kind), "{e}");
        }
    }

    #[test]
    fn body_is_anthropic_shaped() {
        let v: serde_json::Value =
            serde_json::from_slice(&error_body("not_found_error", "x \"y\"", "req_1")).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "not_found_error");
        assert_eq!(v["error"]["message"], "x \"y\"");
        assert_eq!(v["request_id"], "req_1");
    }
}
