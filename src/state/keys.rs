//! The key lookup table the request path reads: virtual keys by digest (compared in constant
//! time) and issued AWS key pairs by access key id, with their secrets read.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::keys::{KeySettings, VirtualKey};
use crate::config::ConfigError;
use crate::record::CallerNames;

/// A gateway-issued AWS key pair and whom it identifies. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsKey {
    /// The key pair's name, user and team, shared with every request signed with it.
    pub names: Arc<CallerNames>,
    pub secret: String,
    /// The regions a signature may name (empty: any).
    pub regions: Vec<String>,
}

impl std::fmt::Debug for AwsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AwsKey({}, <redacted>)", self.names.name)
    }
}

/// Digest → key, and access key id → AWS key.
#[derive(Clone, Debug, Default)]
pub struct KeyTable {
    by_digest: HashMap<[u8; 32], VirtualKey>,
    aws: HashMap<String, AwsKey>,
}

impl KeyTable {
    /// The lookup table of `settings`; an AWS secret named by a variable is read now.
    pub fn build(settings: &KeySettings) -> Result<KeyTable, ConfigError> {
        let by_digest = settings
            .virtual_keys
            .iter()
            .map(|k| (k.digest, k.clone()))
            .collect();
        let mut aws = HashMap::new();
        for (i, k) in settings.aws_keys.iter().enumerate() {
            let key = AwsKey {
                names: CallerNames::new("key", k.name.clone(), k.user.clone(), k.team.clone()),
                secret: k
                    .secret
                    .resolve(&format!("aws_keys[{i}].secret_access_key_env"))?,
                regions: k.regions.clone(),
            };
            aws.insert(k.access_key_id.clone(), key);
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
        self.by_digest.get(digest).filter(|k| k.matches(digest))
    }
}
