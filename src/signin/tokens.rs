//! The access tokens sluice issues after a sign-in: ES256 JWTs naming the user (`sub`, `email`),
//! their groups and team, and the sign-in session (`sid`) they belong to. Signed with a key
//! sluice generates and keeps in the store; a new key is made every [`KEY_LIFETIME`], and a
//! retired key verifies the tokens it signed until they have all expired (`kid` picks the key).
//! Verification is a signature check against the keys in memory and a look-up of the session in
//! the revoked set: no store or network access on the request path.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::{Deserialize, Serialize};

/// How long one signing key signs new tokens.
pub const KEY_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// One signing key: its id, private key (PKCS#8, for the store) and the keys jsonwebtoken uses.
pub struct SigningKey {
    pub kid: String,
    pub pkcs8: Vec<u8>,
    /// Unix seconds.
    pub created_at: u64,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl SigningKey {
    /// A new P-256 key.
    pub fn generate(now: u64) -> Result<Self, TokenError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| TokenError::Key)?;
        let kid = hex::encode(&crate::digest::sha256(pkcs8.as_ref())[..8]);
        Self::from_pkcs8(kid, pkcs8.as_ref().to_vec(), now)
    }

    /// A key as the store holds it.
    pub fn from_pkcs8(kid: String, pkcs8: Vec<u8>, created_at: u64) -> Result<Self, TokenError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|_| TokenError::Key)?;
        let decoding = DecodingKey::from_ec_der(pair.public_key().as_ref());
        Ok(Self {
            encoding: EncodingKey::from_ec_der(&pkcs8),
            decoding,
            kid,
            pkcs8,
            created_at,
        })
    }
}

/// What a sluice access token says.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    /// The provider's subject.
    pub sub: String,
    pub email: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The body `tags` key naming a billing group (Claude Code reads it from the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_group_tag: Option<String>,
    /// The sign-in session.
    pub sid: String,
    pub iat: u64,
    pub exp: u64,
}

/// The keys and revoked sessions every worker checks tokens against, replaced whole by the
/// sign-in threads (one atomic load per check).
#[derive(Default)]
pub struct TokenVerifier {
    keys: ArcSwap<Vec<Arc<SigningKey>>>,
    revoked: ArcSwap<HashSet<String>>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenVerifier({} keys)", self.keys.load().len())
    }
}

/// Why a token is not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a token sluice signed")]
    Foreign,
    #[error("the token's signature or claims do not verify")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the sign-in session was ended")]
    Revoked,
    #[error("cannot make or read a signing key")]
    Key,
}

impl TokenVerifier {
    /// Publishes the signing keys (newest first) and the revoked sessions.
    pub fn publish(&self, keys: Vec<Arc<SigningKey>>, revoked: HashSet<String>) {
        self.keys.store(Arc::new(keys));
        self.revoked.store(Arc::new(revoked));
    }

    /// Adds revoked sessions at once (the store has them already).
    pub fn revoke(&self, sessions: &[String]) {
        let mut revoked = (**self.revoked.load()).clone();
        revoked.extend(sessions.iter().cloned());
        self.revoked.store(Arc::new(revoked));
    }

    /// Whether `kid` names one of sluice's keys (so the token is sluice's to judge).
    pub fn knows(&self, token: &str) -> bool {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return false;
        };
        let keys = self.keys.load();
        header
            .kid
            .is_some_and(|kid| keys.iter().any(|k| k.kid == kid))
    }

    /// The claims of a token sluice signed, if it verifies, has not expired and its session
    /// was not ended.
    pub fn verify(&self, token: &str, now: u64) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Foreign)?;
        let kid = header.kid.ok_or(TokenError::Foreign)?;
        let keys = self.keys.load();
        let key = keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::Foreign)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        self.check(&claims, now)?;
        Ok(claims)
    }

    /// The time and session checks, for claims verified before.
    pub fn check(&self, claims: &AccessClaims, now: u64) -> Result<(), TokenError> {
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if self.revoked.load().contains(&claims.sid) {
            return Err(TokenError::Revoked);
        }
        Ok(())
    }

    /// The session of a token sluice signed, whether or not it expired or was revoked (a
    /// revocation request names a token; its signature is all that must hold).
    pub fn signed_session(&self, token: &str) -> Option<String> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let kid = header.kid?;
        let keys = self.keys.load();
        let key = keys.iter().find(|k| k.kid == kid)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["sid"]);
        jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
            .ok()
            .map(|data| data.claims.sid)
    }

    /// Signs `claims` with the newest key.
    pub fn mint(&self, claims: &AccessClaims) -> Result<String, TokenError> {
        let keys = self.keys.load();
        let key = keys.first().ok_or(TokenError::Key)?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|_| TokenError::Key)
    }
}

/// Whether a credential has a JWT's shape (three base64url parts, a JSON header).
pub fn looks_like_jwt(credential: &str) -> bool {
    crate::state::jwt::looks_like_jwt(credential.as_bytes())
}

/// Seconds since the Unix epoch (the current poll's time: see [`crate::runtime::poll_clock`]).
pub fn now_secs() -> u64 {
    crate::runtime::poll_clock::unix_secs()
}

/// A random opaque value of 32 bytes, base64url (a device code, a refresh token, a state).
pub fn random_token() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// `N` random bytes from the system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    // The system generator only fails if the OS cannot supply randomness at all; an all-zero
    // value then still never matches a stored hash of a real one.
    let _ = SystemRandom::new().fill(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sid: &str, exp: u64) -> AccessClaims {
        AccessClaims {
            iss: "https://gw".into(),
            sub: "u1".into(),
            email: "a@example.com".into(),
            groups: vec!["eng".into()],
            team: Some("core".into()),
            billing_group_tag: None,
            sid: sid.into(),
            iat: 1,
            exp,
        }
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires_or_its_session_ends() {
        let verifier = TokenVerifier::default();
        let key = Arc::new(SigningKey::generate(1).unwrap());
        verifier.publish(vec![Arc::clone(&key)], HashSet::new());
        let token = verifier.mint(&claims("s1", 1000)).unwrap();
        assert!(verifier.knows(&token));
        assert_eq!(verifier.verify(&token, 10).unwrap(), claims("s1", 1000));
        assert_eq!(verifier.verify(&token, 1000), Err(TokenError::Expired));
        verifier.revoke(&["s1".into()]);
        assert_eq!(verifier.verify(&token, 10), Err(TokenError::Revoked));
        // A retired key still verifies what it signed; an unknown key's token is foreign.
        let newer = Arc::new(SigningKey::generate(2).unwrap());
        verifier.publish(vec![newer, key], HashSet::new());
        assert!(verifier.verify(&token, 10).is_ok());
        verifier.publish(
            vec![Arc::new(SigningKey::generate(3).unwrap())],
            HashSet::new(),
        );
        assert_eq!(verifier.verify(&token, 10), Err(TokenError::Foreign));
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let verifier = TokenVerifier::default();
        verifier.publish(
            vec![Arc::new(SigningKey::generate(1).unwrap())],
            HashSet::new(),
        );
        let token = verifier.mint(&claims("s1", 1000)).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = verifier.mint(&claims("s2", 1000)).unwrap();
        let payload = other.split('.').nth(1).unwrap().to_string();
        parts[1] = &payload;
        assert_eq!(
            verifier.verify(&parts.join("."), 10),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_stored_key_signs_as_it_did() {
        let key = SigningKey::generate(5).unwrap();
        let again = SigningKey::from_pkcs8(key.kid.clone(), key.pkcs8.clone(), 5).unwrap();
        let verifier = TokenVerifier::default();
        verifier.publish(vec![Arc::new(key)], HashSet::new());
        let token = verifier.mint(&claims("s", 100)).unwrap();
        let other = TokenVerifier::default();
        other.publish(vec![Arc::new(again)], HashSet::new());
        assert!(other.verify(&token, 1).is_ok());
    }
}
