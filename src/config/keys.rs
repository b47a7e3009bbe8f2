//! Virtual keys: stored only as SHA-256 digests, looked up by digest and compared in constant
//! time. A key's text never enters the config, a log or a record.

use std::collections::HashMap;

use subtle::ConstantTimeEq;

use super::{file::AwsKeyFile, file::KeyFile, invalid, ConfigError};

/// Who a virtual key belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualKey {
    pub name: String,
    pub user: Option<String>,
    pub team: Option<String>,
    /// The models the key may use; `None`: all.
    pub models: Option<std::sync::Arc<Vec<super::ModelPattern>>>,
    pub expires: Option<std::time::SystemTime>,
    digest: [u8; 32],
}

impl VirtualKey {
    /// A key known by its digest (issued keys come from the key store).
    pub fn new(
        name: String,
        user: Option<String>,
        team: Option<String>,
        models: Option<std::sync::Arc<Vec<super::ModelPattern>>>,
        expires: Option<std::time::SystemTime>,
        digest: [u8; 32],
    ) -> Self {
        Self {
            name,
            user,
            team,
            models,
            expires,
            digest,
        }
    }

    /// Whether `digest` is this key's, compared in constant time.
    pub fn matches(&self, digest: &[u8; 32]) -> bool {
        bool::from(self.digest.ct_eq(digest))
    }
}

/// A gateway-issued AWS key pair and whom it identifies. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsKey {
    pub name: String,
    pub user: Option<String>,
    pub team: Option<String>,
    pub secret: String,
    /// The regions a signature may name (empty: any).
    pub regions: Vec<String>,
}

impl std::fmt::Debug for AwsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AwsKey({}, <redacted>)", self.name)
    }
}

/// Digest → key, and access key id → AWS key.
#[derive(Clone, Debug, Default)]
pub struct KeyTable {
    by_digest: HashMap<[u8; 32], VirtualKey>,
    aws: HashMap<String, AwsKey>,
}

impl KeyTable {
    pub(super) fn build(
        files: &[KeyFile],
        aws_files: &[AwsKeyFile],
    ) -> Result<KeyTable, ConfigError> {
        let mut by_digest = HashMap::new();
        for (i, k) in files.iter().enumerate() {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(k.sha256.trim(), &mut digest).map_err(|_| {
                invalid(
                    format!("keys[{i}].sha256"),
                    "must be 64 hex digits (see `sluice keys hash`)",
                )
            })?;
            let expires = match &k.expires {
                Some(t) => Some(humantime::parse_rfc3339_weak(t).map_err(|e| {
                    invalid(
                        format!("keys[{i}].expires"),
                        format!("`{t}` is not an RFC 3339 time: {e}"),
                    )
                })?),
                None => None,
            };
            let key = VirtualKey {
                name: k.name.clone(),
                user: k.user.clone(),
                team: k.team.clone(),
                models: k.models.as_ref().map(|m| {
                    std::sync::Arc::new(m.iter().map(|p| super::ModelPattern::parse(p)).collect())
                }),
                expires,
                digest,
            };
            if by_digest.insert(digest, key).is_some() {
                return Err(invalid(
                    format!("keys[{i}].sha256"),
                    "the same key is listed twice",
                ));
            }
        }
        let mut aws = HashMap::new();
        for (i, k) in aws_files.iter().enumerate() {
            let secret = match (&k.secret_access_key, &k.secret_access_key_env) {
                (Some(s), None) => s.clone(),
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    invalid(
                        format!("aws_keys[{i}].secret_access_key_env"),
                        format!("${var} is not set"),
                    )
                })?,
                _ => {
                    return Err(invalid(
                        format!("aws_keys[{i}]"),
                        "give secret_access_key or secret_access_key_env",
                    ))
                }
            };
            let key = AwsKey {
                name: k.name.clone(),
                user: k.user.clone(),
                team: k.team.clone(),
                secret,
                regions: k.regions.clone(),
            };
            if aws.insert(k.access_key_id.clone(), key).is_some() {
                return Err(invalid(
                    format!("aws_keys[{i}].access_key_id"),
                    "listed twice",
                ));
            }
        }
        Ok(KeyTable { by_digest, aws })
    }

    /// No credential of any kind is configured: every client is accepted.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty() && self.aws.is_empty()
    }

    /// Number of virtual keys and AWS key pairs.
    pub fn len(&self) -> usize {
        self.by_digest.len() + self.aws.len()
    }

    /// The gateway-issued AWS key with this access key id.
    pub fn aws_key(&self, access_key_id: &str) -> Option<&AwsKey> {
        self.aws.get(access_key_id)
    }

    /// The virtual key whose digest is `digest`, if any.
    pub fn find(&self, digest: &[u8; 32]) -> Option<&VirtualKey> {
        self.by_digest
            .get(digest)
            .filter(|k| bool::from(k.digest.ct_eq(digest)))
    }
}

/// SHA-256 of a presented key.
pub fn digest(key: &[u8]) -> [u8; 32] {
    crate::digest::sha256(key)
}

/// The hex digest to put in the config for `key`.
pub fn hash_hex(key: &str) -> String {
    hex::encode(digest(key.as_bytes()))
}
