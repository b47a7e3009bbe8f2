//! Signing a request for a Bedrock upstream: the minimal signed set (`host`, `content-type`,
//! `x-amz-date`, `x-amz-content-sha256`, and `x-amz-security-token` for temporary credentials),
//! service `bedrock` (the host says `bedrock-runtime`; the signing name does not).

use std::time::SystemTime;

use super::sigv4::{self, AwsCredentials};

/// The header fields to add to a Bedrock request: signing inputs and `authorization`.
pub fn signed_fields(
    creds: &AwsCredentials,
    region: &str,
    host: &str,
    wire_target: &[u8],
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let target = String::from_utf8_lossy(wire_target);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let date = sigv4::amz_date(SystemTime::now());
    let payload = crate::digest::sha256_hex(body);
    let mut fields = vec![
        ("content-type", "application/json".to_string()),
        ("x-amz-date", date.clone()),
        ("x-amz-content-sha256", payload.clone()),
    ];
    if let Some(token) = &creds.session_token {
        fields.push(("x-amz-security-token", token.clone()));
    }
    let mut signed: Vec<(&str, &str)> = vec![("host", host)];
    signed.extend(fields.iter().map(|(n, v)| (*n, v.as_str())));
    let req = sigv4::Request {
        method: "POST",
        path,
        query,
        headers: &signed,
        payload_sha256: &payload,
    };
    let auth = sigv4::authorization(creds, region, "bedrock", &date, &req);
    fields.push(("authorization", auth));
    fields
}
