//! Customer-routed inference: Claude Enterprise callers present a short-lived ES256 JWS
//! (`typ: cri+jwt`) minted by Anthropic's issuer, and sluice admits them offline — the
//! signature against the issuer's key set only, the exact `iss` and `typ`, an `aud` registered
//! for this gateway, `exp`/`nbf` within 60 s, `scope: "inference"` and an allowed `org`.
//!
//! Workers only read the key set (one atomic load); a side thread keeps it: fetched at start,
//! again when its `Cache-Control: max-age` runs out (at most 3 h, 10 min without one), and when
//! a token names a key it does not hold (at most once a minute). A key set older than 6 h, or
//! none yet, is no key set: CRI callers get 503 until a fetch succeeds (fail closed); no other
//! caller is affected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::{decode, decode_header, jwk::JwkSet, Algorithm, DecodingKey, Validation};
use rustls::pki_types::{pem::PemObject, CertificateDer};
use serde::Deserialize;

use crate::config::cri::CriSettings;
use crate::signin::tokens::now_secs;

/// The token type CRI tokens carry.
pub const TOKEN_TYPE: &str = "cri+jwt";
/// Seconds of clock skew allowed on `exp` and `nbf`.
const LEEWAY: u64 = 60;
/// A key set older than this is not used.
const STALE_AFTER: u64 = 6 * 3600;
/// The longest a key set is kept without asking again.
const MAX_FRESH: u64 = 3 * 3600;
/// How long a key set is kept when its answer says nothing.
const DEFAULT_FRESH: u64 = 600;
/// The least time between two fetches asked for by unknown keys (or after a failure).
const COOLDOWN: u64 = 60;

/// The issuer's keys as last fetched.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    /// Unix seconds of the fetch (0: never).
    fetched_at: u64,
}

/// Who a valid CRI token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriPrincipal {
    pub org: String,
    pub subject: String,
    /// The acting user (`act.sub`), when the token names one.
    pub actor: Option<String>,
}

/// Why a CRI token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CriRefusal {
    /// No fresh key set: 503 (fail closed).
    #[error("no fresh CRI key set")]
    KeysUnavailable,
    #[error("invalid CRI token")]
    Invalid,
    #[error("the CRI token's audience is not this gateway")]
    AudienceMismatch,
    #[error("the CRI token's scope is not inference")]
    ScopeMissing,
    #[error("organization {0} may not route inference through this gateway")]
    OrgNotAllowed(String),
}

impl CriRefusal {
    /// The access log's and audit log's reason.
    pub fn label(&self) -> &'static str {
        match self {
            CriRefusal::KeysUnavailable => "cri_jwks_unavailable",
            CriRefusal::Invalid => "cri_invalid_token",
            CriRefusal::AudienceMismatch => "cri_audience_mismatch",
            CriRefusal::ScopeMissing => "cri_scope_missing",
            CriRefusal::OrgNotAllowed(_) => "cri_org_not_allowed",
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    org: String,
    scope: String,
    #[serde(default)]
    act: Option<Actor>,
}

#[derive(Deserialize)]
struct Actor {
    sub: String,
}

/// The verifier workers check CRI tokens with, and the queue to its key-set thread.
pub struct CriVerifier {
    settings: Arc<CriSettings>,
    keys: Arc<ArcSwap<KeySet>>,
    roots: Arc<Vec<CertificateDer<'static>>>,
    /// Unix seconds of the last fetch attempt.
    last_attempt: Arc<AtomicU64>,
    wake: flume::Sender<()>,
    woken: flume::Receiver<()>,
}

impl std::fmt::Debug for CriVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CriVerifier({})", self.settings.issuer)
    }
}

/// Why CRI cannot start.
#[derive(Debug, thiserror::Error)]
#[error("cri.ca_file {file}: {reason}")]
pub struct CriError {
    file: String,
    reason: String,
}

impl CriVerifier {
    /// A verifier with no keys yet (the CA file is read now); starts no thread.
    pub fn open(settings: &CriSettings) -> Result<CriVerifier, CriError> {
        let roots = match &settings.ca_file {
            Some(file) => CertificateDer::pem_file_iter(file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| CriError {
                    file: file.clone(),
                    reason: e.to_string(),
                })?,
            None => Vec::new(),
        };
        let (wake, woken) = flume::bounded(1);
        Ok(CriVerifier {
            settings: Arc::new(settings.clone()),
            keys: Arc::default(),
            roots: Arc::new(roots),
            last_attempt: Arc::default(),
            wake,
            woken,
        })
    }

    /// Starts the key-set thread (its first fetch at once); it stops once this verifier is
    /// dropped.
    pub fn start(&self) {
        let keeper = Keeper {
            settings: Arc::clone(&self.settings),
            keys: Arc::clone(&self.keys),
            roots: Arc::clone(&self.roots),
            last_attempt: Arc::clone(&self.last_attempt),
            woken: self.woken.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("sluice-cri-keys".into())
            .spawn(move || keeper.run());
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the CRI key-set thread");
        }
    }

    /// Whether `token` claims to be a CRI token (its header's `typ`), read without verifying.
    pub fn is_cri_token(token: &str) -> bool {
        decode_header(token).is_ok_and(|h| h.typ.as_deref() == Some(TOKEN_TYPE))
    }

    /// Verifies a CRI token at `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<CriPrincipal, CriRefusal> {
        let set = self.keys.load();
        if set.keys.is_empty() || now.saturating_sub(set.fetched_at) > STALE_AFTER {
            self.ask_fetch();
            return Err(CriRefusal::KeysUnavailable);
        }
        let header = decode_header(token).map_err(|_| CriRefusal::Invalid)?;
        if header.typ.as_deref() != Some(TOKEN_TYPE) || header.alg != Algorithm::ES256 {
            return Err(CriRefusal::Invalid);
        }
        let kid = header
            .kid
            .filter(|k| !k.is_empty())
            .ok_or(CriRefusal::Invalid)?;
        let Some(key) = set.keys.get(&kid) else {
            // A key the set does not hold (a rotation?): fetch again, at most once a minute;
            // while that fetch may bring it, the caller is asked to retry (503).
            let since = now.saturating_sub(self.last_attempt.load(Ordering::Acquire));
            if since < COOLDOWN {
                return Err(CriRefusal::Invalid);
            }
            self.ask_fetch();
            return Err(CriRefusal::KeysUnavailable);
        };
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[self.settings.issuer.as_str()]);
        validation.set_audience(&self.settings.audiences);
        validation.leeway = LEEWAY;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
        let claims = decode::<Claims>(token, key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidAudience => CriRefusal::AudienceMismatch,
                _ => CriRefusal::Invalid,
            })?
            .claims;
        if claims.scope != "inference" {
            return Err(CriRefusal::ScopeMissing);
        }
        let org = claims.org.to_ascii_lowercase();
        if org.is_empty() || claims.sub.is_empty() {
            return Err(CriRefusal::Invalid);
        }
        if !self.settings.org_allowlist.contains(&org) {
            return Err(CriRefusal::OrgNotAllowed(org));
        }
        Ok(CriPrincipal {
            org,
            subject: claims.sub,
            actor: claims.act.map(|a| a.sub).filter(|s| !s.is_empty()),
        })
    }

    /// Wakes the key-set thread (never waits; a wake already pending is enough).
    fn ask_fetch(&self) {
        let _ = self.wake.try_send(());
    }
}

/// The key-set thread's side.
struct Keeper {
    settings: Arc<CriSettings>,
    keys: Arc<ArcSwap<KeySet>>,
    roots: Arc<Vec<CertificateDer<'static>>>,
    last_attempt: Arc<AtomicU64>,
    woken: flume::Receiver<()>,
}

impl Keeper {
    fn run(self) {
        loop {
            let fresh_for = self.fetch();
            match self.woken.recv_timeout(Duration::from_secs(fresh_for)) {
                Ok(()) => {
                    // Asked early (an unknown key, no keys): not more than once a minute.
                    let since =
                        now_secs().saturating_sub(self.last_attempt.load(Ordering::Acquire));
                    #[expect(
                        clippy::disallowed_methods,
                        reason = "the key-set side thread, never a worker"
                    )]
                    std::thread::sleep(Duration::from_secs(COOLDOWN.saturating_sub(since)));
                    while self.woken.try_recv().is_ok() {}
                }
                Err(flume::RecvTimeoutError::Timeout) => {}
                Err(flume::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Fetches the key set; returns how long to keep it (or to wait after a failure).
    fn fetch(&self) -> u64 {
        self.last_attempt.store(now_secs(), Ordering::Release);
        let url = &self.settings.jwks_url;
        let fetched = match crate::provider::blocking_http::fetch(url, &self.roots) {
            Ok(f) if f.status == 200 => f,
            Ok(f) => {
                tracing::warn!(
                    url,
                    status = f.status,
                    "the CRI key set could not be fetched"
                );
                return COOLDOWN;
            }
            Err(e) => {
                tracing::warn!(url, error = %e, "the CRI key set is unreachable");
                return COOLDOWN;
            }
        };
        let keys = usable_keys(&fetched.body);
        if keys.is_empty() {
            tracing::warn!(
                url,
                "the CRI key set has no usable ES256 key: keeping the previous one"
            );
            return COOLDOWN;
        }
        tracing::info!(url, keys = keys.len(), "CRI key set fetched");
        self.keys.store(Arc::new(KeySet {
            keys,
            fetched_at: now_secs(),
        }));
        fetched
            .max_age
            .map_or(DEFAULT_FRESH, |age| age.min(MAX_FRESH))
            .max(1)
    }
}

/// The P-256 keys with a `kid` in a JWKS document.
fn usable_keys(body: &[u8]) -> HashMap<String, DecodingKey> {
    let Ok(set) = serde_json::from_slice::<JwkSet>(body) else {
        return HashMap::new();
    };
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty())?;
            let ec = matches!(
                &jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(p)
                    if p.curve == jsonwebtoken::jwk::EllipticCurve::P256
            );
            if !ec {
                return None;
            }
            DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
        })
        .collect()
}
