//! Virtual keys: stored only as SHA-256 digests, looked up by digest and compared in constant
//! time. A key's text never enters the config, a log or a record.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{file::KeyFile, invalid, ConfigError};

/// Who a virtual key belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualKey {
    pub name: String,
    pub user: Option<String>,
    pub team: Option<String>,
    digest: [u8; 32],
}

/// Digest → key.
#[derive(Clone, Debug, Default)]
pub struct KeyTable {
    by_digest: HashMap<[u8; 32], VirtualKey>,
}

impl KeyTable {
    pub(super) fn build(files: &[KeyFile]) -> Result<KeyTable, ConfigError> {
        let mut by_digest = HashMap::new();
        for (i, k) in files.iter().enumerate() {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(k.sha256.trim(), &mut digest).map_err(|_| {
                invalid(
                    format!("keys[{i}].sha256"),
                    "must be 64 hex digits (see `sluice keys hash`)",
                )
            })?;
            let key = VirtualKey {
                name: k.name.clone(),
                user: k.user.clone(),
                team: k.team.clone(),
                digest,
            };
            if by_digest.insert(digest, key).is_some() {
                return Err(invalid(
                    format!("keys[{i}].sha256"),
                    "the same key is listed twice",
                ));
            }
        }
        Ok(KeyTable { by_digest })
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Number of virtual keys.
    pub fn len(&self) -> usize {
        self.by_digest.len()
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
    Sha256::digest(key).into()
}

/// The hex digest to put in the config for `key`.
pub fn hash_hex(key: &str) -> String {
    hex::encode(digest(key.as_bytes()))
}
