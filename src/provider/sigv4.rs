//! AWS Signature Version 4, as Bedrock needs it: signing sluice's requests to a Bedrock
//! upstream, and verifying signatures (the mock upstream checks sluice's). Written here rather
//! than taken from `aws-sigv4`, which pulls tokio and the smithy runtime (about 100 crates) onto
//! the request path; tested against AWS's published test-suite vectors (`shared/protocols.md`
//! §7.2). The canonical URI re-encodes the path exactly as sent (`:` → `%3A`, `%3A` → `%253A`).

use std::time::SystemTime;

/// An AWS key pair, with a session token for temporary credentials. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// When temporary credentials stop working.
    pub expires: Option<SystemTime>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AwsCredentials({}, <redacted>)", self.access_key_id)
    }
}

/// What is signed.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path exactly as it goes on the wire.
    pub path: &'a str,
    /// The query without its `?` (may be empty).
    pub query: &'a str,
    /// The headers to sign (any case; `host` must be among them).
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body.
    pub payload_sha256: &'a str,
}

/// `YYYYMMDDTHHMMSSZ` for `time`.
pub fn amz_date(time: SystemTime) -> String {
    let rfc = humantime::format_rfc3339_seconds(time).to_string();
    rfc.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// The `Authorization` value for `req`, signed at `amz_date` (`x-amz-date` must be among the
/// signed headers, with the same value).
pub fn authorization(
    creds: &AwsCredentials,
    region: &str,
    service: &str,
    amz_date: &str,
    req: &Request<'_>,
) -> String {
    let (signed_headers, signature) =
        signature(&creds.secret_access_key, region, service, amz_date, req);
    let day = amz_date.get(..8).unwrap_or_default();
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{day}/{region}/{service}/aws4_request, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key_id
    )
}

/// (signed header list, hex signature) of `req` with `secret`.
pub fn signature(
    secret: &str,
    region: &str,
    service: &str,
    amz_date: &str,
    req: &Request<'_>,
) -> (String, String) {
    let (canonical, signed_headers) = canonical_request(req);
    let day = amz_date.get(..8).unwrap_or_default();
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        crate::digest::sha256_hex(canonical.as_bytes())
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    (
        signed_headers,
        hex::encode(hmac(&k_signing, to_sign.as_bytes())),
    )
}

/// Why a client's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing or malformed SigV4 authorization")]
    Malformed,
    #[error("unknown access key")]
    UnknownKey,
    #[error("x-amz-date is missing or more than 15 minutes off")]
    Stale,
    #[error("the credential scope names another day, service or region")]
    Scope,
    #[error("x-amz-content-sha256 is not the body's SHA-256 (UNSIGNED-PAYLOAD is not accepted)")]
    PayloadMismatch,
    #[error("the signature does not match")]
    Mismatch,
}

/// What a SigV4 `Authorization` header names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented<'a> {
    pub access_key_id: &'a str,
    pub day: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub signed_headers: &'a str,
    pub signature: &'a str,
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/day/region/service/aws4_request, SignedHeaders=…, Signature=…`.
pub fn parse_authorization(value: &str) -> Option<Presented<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let field = |name: &str| rest.split([' ', ',']).find_map(|p| p.strip_prefix(name));
    let scope: Vec<&str> = field("Credential=")?.split('/').collect();
    let [access_key_id, day, region, service, "aws4_request"] = scope[..] else {
        return None;
    };
    Some(Presented {
        access_key_id,
        day,
        region,
        service,
        signed_headers: field("SignedHeaders=")?,
        signature: field("Signature=")?,
    })
}

/// What the verifier requires of the credential scope.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// The service the signature must be for (`bedrock`).
    pub service: &'a str,
    /// The regions a signature may name; empty: any well-formed region.
    pub regions: &'a [String],
}

/// The payload a signature is checked against.
#[derive(Clone, Copy, Debug)]
pub enum Payload<'a> {
    /// The body is not read yet: the signature is checked over the declared
    /// `x-amz-content-sha256` (which must be there); the body is checked against it later
    /// with [`check_payload`].
    Declared,
    /// The whole body.
    Body(&'a [u8]),
}

/// Verifies a received request's signature as AWS does: `header` looks up a received header's
/// value, `secret_for` the secret of an access key id. Signs over exactly what was received (the
/// target as sent, the headers the client chose to sign); the date must be within 15 minutes
/// and be the credential scope's day; the scope's service must be `scope.service` and its
/// region well-formed (and listed, when `scope.regions` lists any); `x-amz-content-sha256`,
/// when sent, must be a SHA-256 (never `UNSIGNED-PAYLOAD`) and, with the body, the body's.
/// Returns the access key id.
pub fn verify<'a>(
    method: &str,
    target: &str,
    header: impl Fn(&str) -> Option<&'a str>,
    payload: Payload<'_>,
    scope: Scope<'_>,
    secret_for: impl Fn(&str) -> Option<String>,
) -> Result<String, VerifyError> {
    let presented = parse_authorization(header("authorization").unwrap_or_default())
        .ok_or(VerifyError::Malformed)?;
    let secret = secret_for(presented.access_key_id).ok_or(VerifyError::UnknownKey)?;
    let date = header("x-amz-date").ok_or(VerifyError::Stale)?;
    if !date_is_fresh(date) {
        return Err(VerifyError::Stale);
    }
    check_scope(&presented, date, scope)?;
    let declared = header("x-amz-content-sha256");
    if declared.is_some_and(|h| !is_sha256_hex(h)) {
        return Err(VerifyError::PayloadMismatch);
    }
    let computed;
    let payload_hash = match (payload, declared) {
        (Payload::Body(body), declared) => {
            computed = crate::digest::sha256_hex(body);
            if declared.is_some_and(|h| !h.eq_ignore_ascii_case(&computed)) {
                return Err(VerifyError::PayloadMismatch);
            }
            computed.as_str()
        }
        (Payload::Declared, Some(declared)) => declared,
        (Payload::Declared, None) => return Err(VerifyError::PayloadMismatch),
    };
    let values: Vec<(&str, &str)> = presented
        .signed_headers
        .split(';')
        .map(|n| (n, header(n).unwrap_or_default()))
        .collect();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let req = Request {
        method,
        path,
        query,
        headers: &values,
        payload_sha256: payload_hash,
    };
    let (_, expected) = signature(&secret, presented.region, presented.service, date, &req);
    if subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), presented.signature.as_bytes()).into() {
        Ok(presented.access_key_id.to_string())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// After a [`Payload::Declared`] verification: whether `body` is what the signature declared.
pub fn check_payload(declared: Option<&str>, body: &[u8]) -> Result<(), VerifyError> {
    match declared {
        Some(declared) if declared.eq_ignore_ascii_case(&crate::digest::sha256_hex(body)) => Ok(()),
        _ => Err(VerifyError::PayloadMismatch),
    }
}

fn check_scope(presented: &Presented<'_>, date: &str, scope: Scope<'_>) -> Result<(), VerifyError> {
    let day_matches = date.as_bytes().get(..8) == Some(presented.day.as_bytes());
    let region_ok = !presented.region.is_empty()
        && presented
            .region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && (scope.regions.is_empty() || scope.regions.iter().any(|r| r == presented.region));
    if day_matches && region_ok && presented.service == scope.service {
        Ok(())
    } else {
        Err(VerifyError::Scope)
    }
}

fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `amz` is a well-formed `YYYYMMDDTHHMMSSZ` within 15 minutes of now. The value is
/// checked as bytes (it comes from the client: never sliced as text).
fn date_is_fresh(amz: &str) -> bool {
    let Some(at) = parse_amz_date(amz.as_bytes()) else {
        return false;
    };
    let now = SystemTime::now();
    let skew = now
        .duration_since(at)
        .or_else(|_| at.duration_since(now))
        .unwrap_or_default();
    skew <= std::time::Duration::from_secs(15 * 60)
}

/// `YYYYMMDDTHHMMSSZ` → the instant it names; `None` for anything else.
fn parse_amz_date(b: &[u8]) -> Option<SystemTime> {
    let [y0, y1, y2, y3, mo0, mo1, d0, d1, b'T', h0, h1, mi0, mi1, s0, s1, b'Z'] = *b else {
        return None;
    };
    let digits = [y0, y1, y2, y3, mo0, mo1, d0, d1, h0, h1, mi0, mi1, s0, s1];
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let d = |bytes: &[u8]| bytes.iter().map(|c| char::from(*c)).collect::<String>();
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        d(&[y0, y1, y2, y3]),
        d(&[mo0, mo1]),
        d(&[d0, d1]),
        d(&[h0, h1]),
        d(&[mi0, mi1]),
        d(&[s0, s1])
    );
    humantime::parse_rfc3339(&rfc).ok()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    crate::digest::hmac_sha256(key, data).to_vec()
}

/// (canonical request, signed header list).
fn canonical_request(req: &Request<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.to_ascii_lowercase(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    headers.sort();
    let signed: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    let signed = signed.join(";");
    let mut canonical_headers = String::new();
    for (n, v) in &headers {
        canonical_headers.push_str(n);
        canonical_headers.push(':');
        canonical_headers.push_str(v);
        canonical_headers.push('\n');
    }
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(req.path, false),
        canonical_query(req.query),
        canonical_headers,
        signed,
        req.payload_sha256
    );
    (canonical, signed)
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&decoded(k), true), uri_encode(&decoded(v), true))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 encoding of every byte outside `A-Za-z0-9-._~` (and `/` unless `encode_slash`).
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (b == b'/' && !encode_slash);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query name or value as SigV4 canonicalises it: decoded, or as sent when its escapes are
/// malformed (then the client's signature, computed over other bytes, does not verify).
fn decoded(s: &str) -> String {
    crate::http1::path::percent_decode(s).unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "20150830T123600Z";

    fn creds(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_string),
            expires: None,
        }
    }

    fn sign(
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        service: &str,
        token: Option<&str>,
    ) -> String {
        let hash = crate::digest::sha256_hex(body);
        let req = Request {
            method,
            path,
            query: "",
            headers,
            payload_sha256: &hash,
        };
        authorization(&creds(token), "us-east-1", service, DATE, &req)
    }

    #[test]
    fn aws_test_suite_vectors() {
        let host = ("host", "example.amazonaws.com");
        let date = ("x-amz-date", DATE);
        assert!(sign("POST", "/", &[host, date], b"", "service", None)
            .ends_with("SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"));
        assert!(sign("POST", "/", &[("content-type", "application/x-www-form-urlencoded"), host, date], b"Param1=value1", "service", None)
            .ends_with("SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"));
        let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
        assert!(sign("GET", "/", &[host, date, ("x-amz-security-token", token)], b"", "service", Some(token))
            .ends_with("SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"));
    }

    #[test]
    fn the_bedrock_worked_example() {
        let body = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":16,"messages":[{"role":"user","content":"Hi"}]}"#;
        let hash = crate::digest::sha256_hex(body);
        assert_eq!(
            hash,
            "4ce463b5c3d9ec921b15bafe17cf28cc4d188c93bf720c68e1dee3905c9fd0f8"
        );
        let headers = [
            ("Host", "bedrock-runtime.us-east-1.amazonaws.com"),
            ("Content-Type", "application/json"),
            ("X-Amz-Date", DATE),
            ("X-Amz-Content-Sha256", hash.as_str()),
        ];
        let path = "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke";
        assert_eq!(
            sign("POST", path, &headers, body, "bedrock", None),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature=26a0e1ae696a482908aee6f1b2a566a234d3bb6201d453efbd5bb4bc50700dc1"
        );
        let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
        let mut with_token = headers.to_vec();
        with_token.push(("X-Amz-Security-Token", token));
        assert!(
            sign("POST", path, &with_token, body, "bedrock", Some(token)).ends_with(
                "Signature=c6e69ce09081cbbe98dd710b81d38566dc5b737682d790e6b0365d5d808d0501"
            )
        );
        assert_eq!(
            uri_encode("/model/x-v1%3A0/invoke", false),
            "/model/x-v1%253A0/invoke"
        );
    }

    #[test]
    fn a_signature_verifies_and_a_tampered_one_does_not() {
        let now = amz_date(SystemTime::now());
        let body = br#"{"max_tokens":1}"#;
        let hash = crate::digest::sha256_hex(body);
        let headers = [
            ("host", "gw:4100"),
            ("x-amz-date", now.as_str()),
            ("x-amz-content-sha256", hash.as_str()),
        ];
        let req = Request {
            method: "POST",
            path: "/model/m:0/invoke",
            query: "",
            headers: &headers,
            payload_sha256: &hash,
        };
        let auth = authorization(&creds(None), "us-east-1", "bedrock", &now, &req);
        let lookup = |name: &str| -> Option<&str> {
            match name {
                "authorization" => Some(auth.as_str()),
                "host" => Some("gw:4100"),
                "x-amz-date" => Some(now.as_str()),
                "x-amz-content-sha256" => Some(hash.as_str()),
                _ => None,
            }
        };
        let secret = |id: &str| (id == "AKIDEXAMPLE").then(|| creds(None).secret_access_key);
        let bedrock = Scope {
            service: "bedrock",
            regions: &[],
        };
        let path = "/model/m:0/invoke";
        assert_eq!(
            verify("POST", path, lookup, Payload::Body(body), bedrock, secret),
            Ok("AKIDEXAMPLE".into())
        );
        // Before the body is read: over the declared hash, then the body against it.
        assert_eq!(
            verify("POST", path, lookup, Payload::Declared, bedrock, secret),
            Ok("AKIDEXAMPLE".into())
        );
        assert_eq!(check_payload(Some(&hash), body), Ok(()));
        assert_eq!(
            check_payload(Some(&hash), b"{}"),
            Err(VerifyError::PayloadMismatch)
        );
        assert_eq!(
            verify(
                "POST",
                "/model/m:1/invoke",
                lookup,
                Payload::Body(body),
                bedrock,
                secret
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("POST", path, lookup, Payload::Body(b"{}"), bedrock, secret),
            Err(VerifyError::PayloadMismatch)
        );
        assert_eq!(
            verify("POST", path, lookup, Payload::Body(body), bedrock, |_| None),
            Err(VerifyError::UnknownKey)
        );
        let other_service = Scope {
            service: "s3",
            regions: &[],
        };
        assert_eq!(
            verify(
                "POST",
                path,
                lookup,
                Payload::Body(body),
                other_service,
                secret
            ),
            Err(VerifyError::Scope)
        );
        let other_region = Scope {
            service: "bedrock",
            regions: &["eu-west-1".to_string()],
        };
        assert_eq!(
            verify(
                "POST",
                path,
                lookup,
                Payload::Body(body),
                other_region,
                secret
            ),
            Err(VerifyError::Scope)
        );
        let unsigned = |name: &str| match name {
            "x-amz-content-sha256" => Some("UNSIGNED-PAYLOAD"),
            other => lookup(other),
        };
        assert_eq!(
            verify("POST", path, unsigned, Payload::Body(body), bedrock, secret),
            Err(VerifyError::PayloadMismatch)
        );
        assert!(!date_is_fresh(DATE), "2015 is stale");
        assert!(parse_amz_date(DATE.as_bytes()).is_some());
        // Multi-byte characters at the offsets a text slice would cut (a worker once died here).
        for hostile in [
            "2026112\u{e9}T12000Z",
            "20261122T120\u{e9}0Z",
            "\u{1f600}\u{1f600}\u{1f600}\u{1f600}",
            "20261122X120000Z",
        ] {
            assert!(!date_is_fresh(hostile), "{hostile:?}");
        }
    }

    #[test]
    fn amz_date_format() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        assert_eq!(amz_date(t), DATE);
    }
}
