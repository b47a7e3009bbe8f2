//! Bedrock's CountTokens shape (`POST /model/{id}/count-tokens`): the request carries a whole
//! InvokeModel body, base64-encoded, in `{"input":{"invokeModel":{"body":"…"}}}` (as the AWS SDK
//! sends it), and the answer is `{"inputTokens":N}` where the Messages API says
//! `{"input_tokens":N}`. sluice unwraps and wraps the body and renames the count either way.

use base64::Engine;

use super::TranslateError;

#[derive(serde::Deserialize)]
struct Request {
    input: Input,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    invoke_model: InvokeModel,
}

#[derive(serde::Deserialize)]
struct InvokeModel {
    body: String,
}

/// The InvokeModel body inside a CountTokens request, governed like any body: its `model`,
/// `max_tokens` and `stream` appear at most once, spelled plainly.
pub fn invoke_body(request: &[u8]) -> Result<Vec<u8>, TranslateError> {
    let parsed: Request =
        serde_json::from_slice(request).map_err(|_| TranslateError::BadCountTokens)?;
    let inner = base64::engine::general_purpose::STANDARD
        .decode(parsed.input.invoke_model.body.as_bytes())
        .map_err(|_| TranslateError::BadCountTokens)?;
    crate::json::members::check_governed(&inner).map_err(|_| TranslateError::BadCountTokens)?;
    Ok(inner)
}

/// A CountTokens request carrying `invoke_body`.
pub fn wrap(invoke_body: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(invoke_body);
    serde_json::json!({"input": {"invokeModel": {"body": encoded}}})
        .to_string()
        .into_bytes()
}

/// Which way a count is renamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountAnswer {
    /// Bedrock's `{"inputTokens":N}` to the Messages API's `{"input_tokens":N}`.
    FromBedrock,
    /// The Messages API's (and Vertex's) `{"input_tokens":N}` to Bedrock's.
    ToBedrock,
}

impl CountAnswer {
    /// The answer in the client's shape; `None` when `body` holds no count.
    pub fn rewrite(self, body: &[u8]) -> Option<Vec<u8>> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let (from, to) = match self {
            CountAnswer::FromBedrock => ("inputTokens", "input_tokens"),
            CountAnswer::ToBedrock => ("input_tokens", "inputTokens"),
        };
        let count = value.get(from)?.as_u64()?;
        Some(format!("{{\"{to}\":{count}}}").into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_wrap_and_unwrap_and_counts_are_renamed() {
        let body = br#"{"anthropic_version":"bedrock-2023-05-31","messages":[]}"#;
        let wrapped = wrap(body);
        assert_eq!(invoke_body(&wrapped).unwrap(), body);
        assert_eq!(
            invoke_body(br#"{"input":{"invokeModel":{"body":"%%"}}}"#),
            Err(TranslateError::BadCountTokens)
        );
        assert_eq!(invoke_body(b"{}"), Err(TranslateError::BadCountTokens));
        let twice = wrap(br#"{"model":"a","messages":[],"model":"b"}"#);
        assert_eq!(invoke_body(&twice), Err(TranslateError::BadCountTokens));
        assert_eq!(
            CountAnswer::FromBedrock
                .rewrite(br#"{"inputTokens":42}"#)
                .unwrap(),
            br#"{"input_tokens":42}"#
        );
        assert_eq!(
            CountAnswer::ToBedrock
                .rewrite(br#"{"input_tokens":7}"#)
                .unwrap(),
            br#"{"inputTokens":7}"#
        );
        assert_eq!(CountAnswer::ToBedrock.rewrite(b"{}"), None);
    }
}
