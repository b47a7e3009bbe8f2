//! `[[keys]]` and `[[aws_keys]]` → [`KeySettings`]: virtual keys by their SHA-256 digest (a
//! key's text never enters the config, a log or a record) and the AWS key pairs sluice issues,
//! whose secrets may be named by a variable ([`crate::state::keys`] builds the lookup table).

use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::record::CallerNames;

use super::upstreams::SecretSource;
use super::{file::AwsKeyFile, file::KeyFile, invalid, ConfigError};

/// Who a virtual key belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualKey {
    /// The key's name, user and team, shared with every request made with it.
    pub names: Arc<CallerNames>,
    /// The models the key may use; `None`: all.
    pub models: Option<Arc<Vec<super::ModelPattern>>>,
    pub expires: Option<std::time::SystemTime>,
    pub(crate) digest: [u8; 32],
}

impl VirtualKey {
    /// A key known by its digest (issued keys come from the key store).
    pub fn new(
        names: Arc<CallerNames>,
        models: Option<Arc<Vec<super::ModelPattern>>>,
        expires: Option<std::time::SystemTime>,
        digest: [u8; 32],
    ) -> Self {
        Self {
            names,
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

/// A gateway-issued AWS key pair, its secret still a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsKeySpec {
    pub access_key_id: String,
    pub name: String,
    pub user: Option<String>,
    pub team: Option<String>,
    pub secret: SecretSource,
    /// The regions a signature may name (empty: any).
    pub regions: Vec<String>,
}

/// Every configured key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySettings {
    pub virtual_keys: Vec<VirtualKey>,
    pub aws_keys: Vec<AwsKeySpec>,
}

impl KeySettings {
    /// No credential of any kind is configured.
    pub fn is_empty(&self) -> bool {
        self.virtual_keys.is_empty() && self.aws_keys.is_empty()
    }

    /// Number of virtual keys and AWS key pairs.
    pub fn len(&self) -> usize {
        self.virtual_keys.len() + self.aws_keys.len()
    }
}

/// Checks `[[keys]]` and `[[aws_keys]]`: digests in hex, times in RFC 3339, nothing twice.
pub fn build(files: &[KeyFile], aws_files: &[AwsKeyFile]) -> Result<KeySettings, ConfigError> {
    let mut virtual_keys: Vec<VirtualKey> = Vec::new();
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
        if virtual_keys.iter().any(|v| v.digest == digest) {
            return Err(invalid(
                format!("keys[{i}].sha256"),
                "the same key is listed twice",
            ));
        }
        virtual_keys.push(VirtualKey {
            names: CallerNames::new("key", k.name.clone(), k.user.clone(), k.team.clone()),
            models: k
                .models
                .as_ref()
                .map(|m| Arc::new(m.iter().map(|p| super::ModelPattern::parse(p)).collect())),
            expires,
            digest,
        });
    }
    let mut aws_keys: Vec<AwsKeySpec> = Vec::new();
    for (i, k) in aws_files.iter().enumerate() {
        let secret = match (&k.secret_access_key, &k.secret_access_key_env) {
            (Some(s), None) => SecretSource::Inline(s.clone()),
            (None, Some(var)) => SecretSource::Environment(var.clone()),
            _ => {
                return Err(invalid(
                    format!("aws_keys[{i}]"),
                    "give secret_access_key or secret_access_key_env",
                ))
            }
        };
        if aws_keys.iter().any(|a| a.access_key_id == k.access_key_id) {
            return Err(invalid(
                format!("aws_keys[{i}].access_key_id"),
                "listed twice",
            ));
        }
        aws_keys.push(AwsKeySpec {
            access_key_id: k.access_key_id.clone(),
            name: k.name.clone(),
            user: k.user.clone(),
            team: k.team.clone(),
            secret,
            regions: k.regions.clone(),
        });
    }
    Ok(KeySettings {
        virtual_keys,
        aws_keys,
    })
}

/// SHA-256 of a presented key.
pub fn digest(key: &[u8]) -> [u8; 32] {
    crate::digest::sha256(key)
}

/// The hex digest to put in the config for `key`.
pub fn hash_hex(key: &str) -> String {
    hex::encode(digest(key.as_bytes()))
}
