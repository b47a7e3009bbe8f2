//! Why an admin request was not served, each with its one wire mapping (status, Anthropic error
//! type, message) — like the gateway's `GatewayError`.

use super::http::Reply;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("a valid admin key is required")]
    Unauthorized,
    #[error("too many admin requests at once")]
    Busy,
    #[error("the admin request took too long to arrive")]
    TooSlow,
    #[error("request head too large")]
    HeadTooLarge,
    #[error("admin request body too large")]
    BodyTooLarge,
    /// A malformed request or an invalid value; the message says which.
    #[error("{0}")]
    Invalid(String),
    #[error("no admin route for {0}")]
    NoRoute(String),
    /// The named key, budget or limit does not exist; the message says which.
    #[error("{0}")]
    NotFound(String),
    #[error("the store is off (store.path = \"off\"): no keys or spend to administer")]
    StoreOff,
    #[error("config not reloaded: {0}")]
    NotReloaded(String),
    /// The store failed (logged where it happened; the client is told no more).
    #[error("the store failed; see the gateway log")]
    StoreFailed,
    #[error("stored, but not applied: {0}")]
    NotApplied(String),
}

impl AdminError {
    pub fn invalid(message: impl Into<String>) -> Self {
        AdminError::Invalid(message.into())
    }

    /// The HTTP status and Anthropic error type.
    fn wire(&self) -> (u16, &'static str) {
        match self {
            AdminError::Unauthorized => (401, "authentication_error"),
            AdminError::Busy => (503, "overloaded_error"),
            AdminError::TooSlow => (408, "timeout_error"),
            AdminError::HeadTooLarge => (431, "invalid_request_error"),
            AdminError::BodyTooLarge => (413, "request_too_large"),
            AdminError::Invalid(_) | AdminError::NotReloaded(_) => (400, "invalid_request_error"),
            AdminError::NoRoute(_) | AdminError::NotFound(_) => (404, "not_found_error"),
            AdminError::StoreOff => (409, "invalid_request_error"),
            AdminError::StoreFailed | AdminError::NotApplied(_) => (500, "api_error"),
        }
    }

    /// The reply that says so.
    pub fn reply(&self) -> Reply {
        let (status, kind) = self.wire();
        Reply::error(status, kind, &self.to_string())
    }
}
