//! `[jwt]` → [`JwtSettings`]: which keys verify tokens and which claims name the user and team,
//! described (the key files and variables are read when [`crate::state`] builds the verifier).

use super::file::{JwtAlgorithm, JwtFile};
use super::upstreams::SecretSource;
use super::{invalid, ConfigError};

/// How JWTs are verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtSettings {
    pub keys: Vec<JwtKeySpec>,
    /// A JWKS file (`{"keys": [...]}`), matched by `kid`.
    pub jwks_file: Option<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// The claim naming the user.
    pub user_claim: String,
    /// The claim naming the team, if any.
    pub team_claim: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_seconds: u64,
}

/// One verification key, by where its material is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtKeySpec {
    pub kid: Option<String>,
    pub material: KeyMaterial,
}

/// A key's material: a shared secret (HS256) or a PEM public key file (RS256, ES256).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMaterial {
    Hs256(SecretSource),
    Rs256 { public_key_file: String },
    Es256 { public_key_file: String },
}

/// Checks `[jwt]`: each key has the material its algorithm needs, and there is a key.
pub fn build(file: &JwtFile) -> Result<JwtSettings, ConfigError> {
    let mut keys = Vec::new();
    for (i, k) in file.keys.iter().enumerate() {
        let path = format!("jwt.keys[{i}]");
        let pem = || {
            k.public_key_file.clone().ok_or_else(|| {
                invalid(
                    format!("{path}.public_key_file"),
                    "an RS256/ES256 key needs a PEM public key file",
                )
            })
        };
        let material = match k.algorithm {
            JwtAlgorithm::HS256 => match (&k.secret, &k.secret_env) {
                (Some(s), None) => KeyMaterial::Hs256(SecretSource::Inline(s.clone())),
                (None, Some(var)) => KeyMaterial::Hs256(SecretSource::Environment(var.clone())),
                _ => return Err(invalid(path, "an HS256 key needs secret or secret_env")),
            },
            JwtAlgorithm::RS256 => KeyMaterial::Rs256 {
                public_key_file: pem()?,
            },
            JwtAlgorithm::ES256 => KeyMaterial::Es256 {
                public_key_file: pem()?,
            },
        };
        keys.push(JwtKeySpec {
            kid: k.kid.clone(),
            material,
        });
    }
    if keys.is_empty() && file.jwks_file.is_none() {
        return Err(invalid(
            "jwt",
            "give at least one key ([[jwt.keys]] or jwt.jwks_file)",
        ));
    }
    Ok(JwtSettings {
        keys,
        jwks_file: file.jwks_file.clone(),
        issuer: file.issuer.clone(),
        audience: file.audience.clone(),
        user_claim: file.user_claim.clone().unwrap_or_else(|| "sub".into()),
        team_claim: file.team_claim.clone(),
        leeway_seconds: file.leeway_seconds.unwrap_or(30),
    })
}
