//! Signing a request for an AWS upstream (Bedrock, Bedrock Mantle, Claude Platform on AWS): the
//! minimal signed set (`host`, `content-type`, `x-amz-date`, `x-amz-content-sha256`, and
//! `x-amz-security-token` for temporary credentials) under the provider's signing name
//! (`bedrock` — the host says `bedrock-runtime`; the signing name does not —,
//! `bedrock-mantle`, `aws-external-anthropic`).

use std::time::SystemTime;

use super::sigv4::{self, AwsCredentials};

/// What is signed: the request as it goes on the wire, and where.
pub struct Signed<'a> {
    /// The SigV4 signing name.
    pub service: &'static str,
    pub region: &'a str,
    pub host: &'a str,
    pub wire_target: &'a [u8],
    pub body: &'a [u8],
}

/// The header fields to add to the request: signing inputs and `authorization`.
pub fn signed_fields(creds: &AwsCredentials, request: &Signed<'_>) -> Vec<(&'static str, String)> {
    let Signed {
        service,
        region,
        host,
        wire_target,
        body,
    } = *request;
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
    let auth = sigv4::authorization(creds, region, service, &date, &req);
    fields.push(("authorization", auth));
    fields
}
