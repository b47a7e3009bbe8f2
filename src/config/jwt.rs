//! JWT verification: HS256, RS256 and ES256 tokens against keys from the config or a JWKS file,
//! with `exp` (required), `nbf`, `iss` and `aud` checked, and configurable claims for user and
//! team. This is Claude Code's `apiKeyHelper` flow: a helper script mints a short-lived token per
//! user and sluice verifies it locally, with no database round trip. An expired token is a 401,
//! which makes Claude Code run its helper again.

use jsonwebtoken::{decode, decode_header, jwk::JwkSet, Algorithm, DecodingKey, Validation};

use super::file::JwtFile;
use super::{invalid, ConfigError};

/// One key and the algorithm it verifies.
struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The configured JWT verifier.
pub struct JwtVerifier {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    user_claim: String,
    team_claim: Option<String>,
    leeway: u64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "JwtVerifier({} keys, iss {:?}, aud {:?})",
            self.keys.len(),
            self.issuer,
            self.audience
        )
    }
}

/// Who a valid token names, and when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIdentity {
    pub subject: String,
    pub user: Option<String>,
    pub team: Option<String>,
    /// `exp`, in Unix seconds.
    pub expires: u64,
    /// `nbf`, in Unix seconds.
    pub not_before: Option<u64>,
}

impl JwtIdentity {
    /// Whether the token's time claims hold at `now` (as the verifier checks them).
    pub fn valid_at(&self, now: u64, leeway: u64) -> bool {
        self.expires.saturating_add(leeway) > now
            && self
                .not_before
                .is_none_or(|nbf| nbf <= now.saturating_add(leeway))
    }
}

impl JwtVerifier {
    pub(super) fn build(file: &JwtFile) -> Result<Self, ConfigError> {
        let mut keys = Vec::new();
        for (i, k) in file.keys.iter().enumerate() {
            let path = format!("jwt.keys[{i}]");
            let algorithm = match k.algorithm.as_str() {
                "HS256" => Algorithm::HS256,
                "RS256" => Algorithm::RS256,
                "ES256" => Algorithm::ES256,
                other => {
                    return Err(invalid(
                        format!("{path}.algorithm"),
                        format!("`{other}`: expected HS256, RS256 or ES256"),
                    ))
                }
            };
            let key = match algorithm {
                Algorithm::HS256 => {
                    let secret = match (&k.secret, &k.secret_env) {
                        (Some(s), None) => s.clone(),
                        (None, Some(var)) => std::env::var(var).map_err(|_| {
                            invalid(format!("{path}.secret_env"), format!("${var} is not set"))
                        })?,
                        _ => return Err(invalid(path, "an HS256 key needs secret or secret_env")),
                    };
                    DecodingKey::from_secret(secret.as_bytes())
                }
                _ => {
                    let file_path = k.public_key_file.as_ref().ok_or_else(|| {
                        invalid(
                            format!("{path}.public_key_file"),
                            "an RS256/ES256 key needs a PEM public key file",
                        )
                    })?;
                    let pem = std::fs::read(file_path).map_err(|e| {
                        invalid(
                            format!("{path}.public_key_file"),
                            format!("cannot read {file_path}: {e}"),
                        )
                    })?;
                    let parsed = if algorithm == Algorithm::RS256 {
                        DecodingKey::from_rsa_pem(&pem)
                    } else {
                        DecodingKey::from_ec_pem(&pem)
                    };
                    parsed.map_err(|e| invalid(format!("{path}.public_key_file"), e.to_string()))?
                }
            };
            keys.push(Key {
                kid: k.kid.clone(),
                algorithm,
                key,
            });
        }
        if let Some(jwks_path) = &file.jwks_file {
            let text = std::fs::read(jwks_path)
                .map_err(|e| invalid("jwt.jwks_file", format!("cannot read {jwks_path}: {e}")))?;
            let set: JwkSet = serde_json::from_slice(&text)
                .map_err(|e| invalid("jwt.jwks_file", e.to_string()))?;
            for jwk in &set.keys {
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| invalid("jwt.jwks_file", e.to_string()))?;
                let algorithm = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    _ => Algorithm::HS256,
                };
                keys.push(Key {
                    kid: jwk.common.key_id.clone(),
                    algorithm,
                    key,
                });
            }
        }
        if keys.is_empty() {
            return Err(invalid(
                "jwt",
                "give at least one key ([[jwt.keys]] or jwt.jwks_file)",
            ));
        }
        Ok(Self {
            keys,
            issuer: file.issuer.clone(),
            audience: file.audience.clone(),
            user_claim: file.user_claim.clone().unwrap_or_else(|| "sub".into()),
            team_claim: file.team_claim.clone(),
            leeway: file.leeway_seconds.unwrap_or(30),
        })
    }

    /// Verifies `token`; the reason it failed otherwise (for the log, never for the client).
    pub fn verify(&self, token: &str) -> Result<JwtIdentity, JwtRefusal> {
        let header = decode_header(token).map_err(JwtRefusal::Header)?;
        let candidates = self.keys.iter().filter(|k| {
            k.algorithm == header.alg
                && (header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
        });
        let mut last = JwtRefusal::NoKey;
        for key in candidates {
            let mut v = Validation::new(key.algorithm);
            v.leeway = self.leeway;
            v.validate_nbf = true;
            // A configured issuer or audience must be present, not merely right when present
            // (jsonwebtoken checks `iss`/`aud` only when the token carries them, unless they
            // are required).
            let mut required = vec!["exp"];
            required.extend(self.issuer.as_ref().map(|_| "iss"));
            required.extend(self.audience.as_ref().map(|_| "aud"));
            v.set_required_spec_claims(&required);
            match &self.issuer {
                Some(iss) => v.set_issuer(&[iss]),
                None => v.iss = None,
            }
            match &self.audience {
                Some(aud) => v.set_audience(&[aud]),
                None => v.validate_aud = false,
            }
            match decode::<serde_json::Value>(token, &key.key, &v) {
                Ok(data) => return Ok(self.identity(&data.claims)),
                Err(e) => last = JwtRefusal::Invalid(e),
            }
        }
        Err(last)
    }

    fn identity(&self, claims: &serde_json::Value) -> JwtIdentity {
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let number = |name: &str| claims.get(name).and_then(serde_json::Value::as_u64);
        JwtIdentity {
            subject: text("sub").unwrap_or_else(|| "unknown".into()),
            user: text(&self.user_claim),
            team: self.team_claim.as_deref().and_then(text),
            expires: number("exp").unwrap_or(0),
            not_before: number("nbf"),
        }
    }

    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }
}

/// Why a JWT was refused (logged; the client only gets a 401).
#[derive(Debug, thiserror::Error)]
pub enum JwtRefusal {
    #[error("unreadable header: {0}")]
    Header(jsonwebtoken::errors::Error),
    #[error("no key for this token's algorithm or kid")]
    NoKey,
    #[error("{0}")]
    Invalid(jsonwebtoken::errors::Error),
}

/// Whether a presented credential looks like a JWT (three base64url parts, a JSON header).
pub fn looks_like_jwt(credential: &[u8]) -> bool {
    credential.starts_with(b"eyJ") && credential.iter().filter(|b| **b == b'.').count() == 2
}
