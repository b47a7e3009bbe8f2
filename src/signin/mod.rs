//! Sign-in with the company's identity provider, as Claude Code's gateway protocol has it: the
//! CLI's `/login` runs the OAuth device flow against sluice, the developer approves the code in
//! a browser by signing in at the company's OpenID Connect provider, and the CLI then sends
//! every request with an access token sluice issued. Nobody handles a key; revoking a person is
//! one change at the provider (their next refresh fails) or one admin call.
//!
//! - [`endpoints`]: discovery, device authorization, the verification page, the provider's
//!   callback, the token endpoint, revocation.
//! - [`oidc`]: the provider: discovery, PKCE authorization, code exchange, ID token checks.
//! - [`tokens`]: sluice's ES256 access tokens, their rotating keys and the verifier workers use.
//! - [`store`]: device codes, sessions, refresh tokens and keys, hashed, in the store.
//! - [`pages`]: the HTML the browser sees.
//!
//! Workers never wait on the store or the provider: they hand each sign-in request to the
//! sign-in threads over a bounded channel and await the answer; verifying an access token on
//! the request path is a signature check against keys in memory (and cached per worker).

pub mod endpoints;
pub mod oidc;
pub mod pages;
pub mod store;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::signin::SigninSettings;
use endpoints::Endpoints;
use tokens::TokenVerifier;

/// Sign-in requests waiting for a thread, at most (more are answered 503).
const QUEUE: usize = 256;
/// Sign-in threads: requests wait on the provider (code exchange, refresh), so a few run at once.
const THREADS: usize = 2;
/// How often a sign-in thread reloads keys and revoked sessions from the store (rotation, and
/// revocations made by the admin API).
const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// A sign-in endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigninCall {
    /// `GET /.well-known/oauth-authorization-server`
    Discovery,
    /// `POST /oauth/device_authorization`
    DeviceAuthorization,
    /// `GET /device`
    DevicePage,
    /// `POST /device`
    DeviceSubmit,
    /// `GET /oauth/callback`
    Callback,
    /// `POST /oauth/token`
    Token,
    /// `POST /oauth/revoke`
    Revoke,
}

impl SigninCall {
    /// The sign-in endpoint a method and path name, if any.
    pub fn from_request(post: bool, get: bool, path: &[u8]) -> Option<SigninCall> {
        Some(match path {
            b"/.well-known/oauth-authorization-server" if get => SigninCall::Discovery,
            b"/oauth/device_authorization" if post => SigninCall::DeviceAuthorization,
            b"/device" if get => SigninCall::DevicePage,
            b"/device" if post => SigninCall::DeviceSubmit,
            b"/oauth/callback" if get => SigninCall::Callback,
            b"/oauth/token" if post => SigninCall::Token,
            b"/oauth/revoke" if post => SigninCall::Revoke,
            _ => return None,
        })
    }
}

/// What a sign-in endpoint needs of a request.
#[derive(Debug)]
pub struct SigninRequest {
    pub call: SigninCall,
    /// The URL the client reached sluice at (`https://gw.example.com`), no trailing slash.
    pub base_url: String,
    /// The query string, without `?`.
    pub query: String,
    /// The form body.
    pub body: Vec<u8>,
    pub origin: Option<String>,
    pub sec_fetch_site: Option<String>,
    pub cookie: Option<String>,
    /// The client's address, for the per-address limits on starting and approving sign-ins.
    pub client_ip: Option<std::net::IpAddr>,
    /// Customer-routed inference is on (the discovery document says so).
    pub cri_enabled: bool,
}

impl SigninRequest {
    /// The browser says the request comes from sluice's own page (`Sec-Fetch-Site`), or, from a
    /// browser that does not send that, its `Origin` is sluice's.
    pub fn same_origin(&self) -> bool {
        match (&self.sec_fetch_site, &self.origin) {
            (Some(site), _) => site == "same-origin" || site == "none",
            (None, Some(origin)) => origin.trim_end_matches('/') == self.base_url,
            (None, None) => false,
        }
    }

    /// The value of cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookie.as_deref()?.split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }
}

/// A sign-in endpoint's answer.
#[derive(Debug)]
pub struct SigninReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl SigninReply {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }

    pub fn html(status: u16, page: String) -> Self {
        Self {
            status,
            content_type: "text/html; charset=utf-8",
            body: page.into_bytes(),
            headers: vec![
                ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:".into()),
                ("x-frame-options", "DENY".into()),
                ("referrer-policy", "no-referrer".into()),
            ],
        }
    }

    pub fn redirect(location: &str) -> Self {
        Self {
            status: 303,
            content_type: "text/plain; charset=utf-8",
            body: Vec::new(),
            headers: vec![("location", location.to_string())],
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Tokens and codes must not be cached (RFC 6749 §5.1).
    pub fn no_store(self) -> Self {
        self.with_header("cache-control", "no-store".into())
    }

    fn unavailable() -> Self {
        Self::json(
            503,
            &serde_json::json!({"error": "temporarily_unavailable", "error_description": "sign-in is busy: try again shortly"}),
        )
    }
}

type Job = (SigninRequest, flume::Sender<SigninReply>);

/// Sign-in for the running gateway: the settings, the verifier workers check tokens with, and
/// the queue to the sign-in threads.
pub struct Signin {
    pub settings: Arc<SigninSettings>,
    pub verifier: Arc<TokenVerifier>,
    attempts: Arc<endpoints::Attempts>,
    store_path: PathBuf,
    jobs: flume::Sender<Job>,
    queue: flume::Receiver<Job>,
}

impl std::fmt::Debug for Signin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signin({})", self.settings.issuer)
    }
}

/// Why sign-in cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SigninError {
    #[error("{0}")]
    Store(#[from] store::SigninStoreError),
    #[error("{0}")]
    Provider(#[from] oidc::OidcError),
}

impl Signin {
    /// Opens the store (making a signing key if none is current) and loads keys and revoked
    /// sessions into the verifier. Starts no thread.
    pub fn open(settings: SigninSettings, store_path: &Path) -> Result<Self, SigninError> {
        let settings = Arc::new(settings);
        let (jobs, queue) = flume::bounded(QUEUE);
        let signin = Self {
            verifier: Arc::default(),
            attempts: Arc::default(),
            store_path: store_path.to_path_buf(),
            settings,
            jobs,
            queue,
        };
        signin.endpoints()?.publish_revocations()?;
        Ok(signin)
    }

    /// Starts the sign-in threads; they stop once this `Signin` is dropped.
    pub fn start(&self, audit: &crate::audit::AuditLog) {
        for n in 0..THREADS {
            let endpoints = match self.endpoints() {
                Ok(e) => e.audited_in(audit.clone()),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a sign-in thread");
                    continue;
                }
            };
            let queue = self.queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sluice-signin-{n}"))
                .spawn(move || serve(endpoints, queue));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a sign-in thread");
            }
        }
    }

    /// Answers `request` on a sign-in thread (a worker awaits it without blocking).
    pub async fn call(&self, request: SigninRequest) -> SigninReply {
        let (reply, answer) = flume::bounded(1);
        if self.jobs.try_send((request, reply)).is_err() {
            return SigninReply::unavailable();
        }
        match monoio::time::timeout(Duration::from_secs(30), answer.recv_async()).await {
            Ok(Ok(reply)) => reply,
            _ => SigninReply::unavailable(),
        }
    }

    /// Ends every session of `email` (the admin API); returns how many were live.
    pub fn sign_out(&self, email: &str) -> Result<usize, SigninError> {
        let store = store::SigninStore::open(&self.store_path)?;
        let ended = store.revoke_user(email, tokens::now_secs())?;
        self.verifier.revoke(&ended);
        Ok(ended.len())
    }

    /// Live sessions (the admin API).
    pub fn sessions(&self) -> Result<Vec<store::Session>, SigninError> {
        Ok(store::SigninStore::open(&self.store_path)?.live_sessions()?)
    }

    fn endpoints(&self) -> Result<Endpoints, SigninError> {
        Ok(Endpoints {
            store: store::SigninStore::open(&self.store_path)?,
            provider: oidc::Provider::new(Arc::clone(&self.settings))?,
            settings: Arc::clone(&self.settings),
            verifier: Arc::clone(&self.verifier),
            attempts: Arc::clone(&self.attempts),
            audit: crate::audit::AuditLog::off(),
        })
    }
}

/// A sign-in thread: answers requests; between them, reloads keys and revocations.
fn serve(mut endpoints: Endpoints, queue: flume::Receiver<Job>) {
    let mut refreshed = std::time::Instant::now();
    loop {
        match queue.recv_timeout(REFRESH_EVERY) {
            Ok((request, reply)) => {
                let _ = reply.send(endpoints.handle(&request));
            }
            Err(flume::RecvTimeoutError::Timeout) => {}
            Err(flume::RecvTimeoutError::Disconnected) => return,
        }
        if refreshed.elapsed() >= REFRESH_EVERY {
            refreshed = std::time::Instant::now();
            if let Err(e) = endpoints.publish_revocations() {
                tracing::error!(error = %e, "cannot reload sign-in keys");
            }
        }
    }
}
