//! Per-worker memory of verified JWTs. Claude Code's `apiKeyHelper` hands the same token to
//! every request until it nears expiry, so verifying its signature each time is wasted work
//! (microseconds per request: `benches/hot_path.rs` measures it). A token string
//! that verified once verifies again under the same keys, so the identity is remembered by the
//! exact token text; only the time claims are checked again on each use (with the same leeway).
//! The memory is per worker (no lock), bounded (cleared when full), and starts empty after a
//! config reload, which may have changed the keys.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::record::CallerNames;
use crate::signin::tokens::{now_secs, AccessClaims};
use crate::state::jwt::JwtIdentity;

/// Tokens remembered per worker before the memory is cleared.
const CAPACITY: usize = 4096;

#[derive(Default)]
pub struct VerifiedTokens {
    tokens: RefCell<HashMap<Box<str>, Remembered>>,
}

/// A token's claims (for their times) and the names its requests are recorded under, shared
/// with each of them.
type Remembered = (JwtIdentity, Arc<CallerNames>);

impl VerifiedTokens {
    /// The names of `token`'s caller if it verified before and its time claims still hold.
    pub fn get(&self, token: &str, leeway: u64) -> Option<Arc<CallerNames>> {
        let tokens = self.tokens.borrow();
        let (id, names) = tokens.get(token)?;
        id.valid_at(now_secs(), leeway).then(|| Arc::clone(names))
    }

    pub fn remember(&self, token: &str, identity: &JwtIdentity, names: &Arc<CallerNames>) {
        let mut tokens = self.tokens.borrow_mut();
        if tokens.len() >= CAPACITY {
            tokens.clear();
        }
        tokens.insert(token.into(), (identity.clone(), Arc::clone(names)));
    }
}

/// Per-worker memory of verified sign-in tokens (their claims). Expiry and the session's
/// revocation are checked again on every use; only the signature check is remembered.
#[derive(Default)]
pub struct SignedInTokens {
    tokens: RefCell<HashMap<Box<str>, AccessClaims>>,
}

impl SignedInTokens {
    pub fn get(&self, token: &str) -> Option<AccessClaims> {
        self.tokens.borrow().get(token).cloned()
    }

    pub fn remember(&self, token: &str, claims: &AccessClaims) {
        let mut tokens = self.tokens.borrow_mut();
        if tokens.len() >= CAPACITY {
            tokens.clear();
        }
        tokens.insert(token.into(), claims.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(expires: u64, not_before: Option<u64>) -> JwtIdentity {
        JwtIdentity {
            subject: "u".into(),
            user: Some("u".into()),
            team: None,
            expires,
            not_before,
        }
    }

    #[test]
    fn a_remembered_token_still_expires_and_matures_on_time() {
        let tokens = VerifiedTokens::default();
        let now = now_secs();
        let names = CallerNames::new("jwt", "u".into(), Some("u".into()), None);
        tokens.remember("live", &identity(now + 60, None), &names);
        tokens.remember("expired", &identity(now - 60, None), &names);
        tokens.remember("early", &identity(now + 600, Some(now + 300)), &names);
        assert!(tokens.get("live", 0).is_some());
        assert!(tokens.get("expired", 0).is_none());
        assert!(tokens.get("expired", 120).is_some()); // within the leeway
        assert!(tokens.get("early", 30).is_none());
        assert!(tokens.get("unknown", 0).is_none());
    }

    #[test]
    fn the_memory_is_bounded() {
        let tokens = VerifiedTokens::default();
        let id = identity(now_secs() + 60, None);
        let names = CallerNames::new("jwt", "u".into(), None, None);
        for n in 0..(CAPACITY * 3) {
            tokens.remember(&format!("t{n}"), &id, &names);
        }
        assert!(tokens.tokens.borrow().len() <= CAPACITY);
    }
}
