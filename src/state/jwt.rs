//! JWT verification: HS256, RS256 and ES256 tokens against keys from the config or a JWKS file,
//! with `exp` (required), `nbf`, `iss` and `aud` checked, and configurable claims for user and
//! team. This is Claude Code's `apiKeyHelper` flow: a helper script mints a short-lived token per
//! user and sluice verifies it locally, with no database round trip. An expired token is a 401,
//! which makes Claude Code run its helper again.

use jsonwebtoken::{decode, decode_header, jwk::JwkSet, Algorithm, DecodingKey, Validation};

use crate::config::jwt::{JwtSettings, KeyMaterial};
use crate::config::{invalid, ConfigError};

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
    /// Loads every key `settings` names (files and variables read now).
    pub fn build(settings: &JwtSettings) -> Result<Self, ConfigError> {
        let mut keys = Vec::new();
        for (i, spec) in settings.keys.iter().enumerate() {
            let path = format!("jwt.keys[{i}]");
            let (algorithm, key) = match &spec.material {
                KeyMaterial::Hs256(secret) => {
                    let secret = secret.resolve(&format!("{path}.secret_env"))?;
                    (
                        Algorithm::HS256,
                        DecodingKey::from_secret(secret.as_bytes()),
                    )
                }
                KeyMaterial::Rs256 { public_key_file } => {
                    let pem = read_pem(&path, public_key_file)?;
                    let key = DecodingKey::from_rsa_pem(&pem)
                        .map_err(|e| invalid(format!("{path}.public_key_file"), e.to_string()))?;
                    (Algorithm::RS256, key)
                }
                KeyMaterial::Es256 { public_key_file } => {
                    let pem = read_pem(&path, public_key_file)?;
                    let key = DecodingKey::from_ec_pem(&pem)
                        .map_err(|e| invalid(format!("{path}.public_key_file"), e.to_string()))?;
                    (Algorithm::ES256, key)
                }
            };
            keys.push(Key {
                kid: spec.kid.clone(),
                algorithm,
                key,
            });
        }
        if let Some(jwks_path) = &settings.jwks_file {
            keys.extend(read_jwks(jwks_path)?);
        }
        if keys.is_empty() {
            return Err(invalid(
                "jwt",
                "give at least one key ([[jwt.keys]] or jwt.jwks_file)",
            ));
        }
        Ok(Self {
            keys,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            user_claim: settings.user_claim.clone(),
            team_claim: settings.team_claim.clone(),
            leeway: settings.leeway_seconds,
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

fn read_pem(path: &str, file: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(file).map_err(|e| {
        invalid(
            format!("{path}.public_key_file"),
            format!("cannot read {file}: {e}"),
        )
    })
}

/// The keys of a JWKS file, each with the algorithm its type implies.
fn read_jwks(path: &str) -> Result<Vec<Key>, ConfigError> {
    let text = std::fs::read(path)
        .map_err(|e| invalid("jwt.jwks_file", format!("cannot read {path}: {e}")))?;
    let set: JwkSet =
        serde_json::from_slice(&text).map_err(|e| invalid("jwt.jwks_file", e.to_string()))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let key =
            DecodingKey::from_jwk(jwk).map_err(|e| invalid("jwt.jwks_file", e.to_string()))?;
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
    Ok(keys)
}

/// Whether a presented credential looks like a JWT (three base64url parts, a JSON header).
pub fn looks_like_jwt(credential: &[u8]) -> bool {
    credential.starts_with(b"eyJ") && credential.iter().filter(|b| **b == b'.').count() == 2
}
