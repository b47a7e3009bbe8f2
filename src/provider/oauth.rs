//! OAuth2 access tokens for a Google upstream (Vertex, Claude Platform on Google Cloud), from a
//! service-account JSON (an RS256-signed JWT exchanged at the token endpoint, RFC 7523, as
//! google-auth does) or from a command that prints a token (`gcloud auth print-access-token`);
//! and for a Foundry upstream from Entra ID by the client-credentials grant (RFC 6749 §4.4). A side thread fetches the first token at start-up
//! and refreshes it 3 min 45 s before it expires (google-auth's threshold); workers read the
//! current token with one atomic load and never wait on the network.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};

use super::error::CredentialError;

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const REFRESH_BEFORE: Duration = Duration::from_secs(225);
/// Lifetime assumed for a token printed by a command.
const COMMAND_TOKEN_LIFETIME: Duration = Duration::from_secs(45 * 60);

/// Where tokens come from.
#[derive(Clone)]
pub enum TokenSource {
    ServiceAccount(Arc<ServiceAccount>),
    Command(String),
    ClientCredentials(Arc<ClientCredentials>),
}

/// An Entra ID (or any OAuth2) client-credentials grant: the token endpoint, the application's
/// id and secret, and the scope asked for.
pub struct ClientCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: String,
}

impl TokenSource {
    /// Whose tokens these are, for messages: `Google` or `Entra ID`.
    pub fn issuer(&self) -> &'static str {
        match self {
            TokenSource::ServiceAccount(_) | TokenSource::Command(_) => "Google",
            TokenSource::ClientCredentials(_) => "Entra ID",
        }
    }
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::ServiceAccount(sa) => write!(f, "ServiceAccount({})", sa.client_email),
            TokenSource::Command(c) => write!(f, "Command({c:?})"),
            TokenSource::ClientCredentials(c) => write!(f, "ClientCredentials({})", c.client_id),
        }
    }
}

/// The parts of a service-account key file that sluice uses.
pub struct ServiceAccount {
    pub client_email: String,
    key_id: String,
    key: jsonwebtoken::EncodingKey,
    pub token_uri: String,
}

/// The assertion's claims (RFC 7523 §3, Google's `scope`).
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct ServiceAccountFile {
    client_email: String,
    private_key_id: Option<String>,
    private_key: String,
    token_uri: Option<String>,
}

impl ServiceAccount {
    /// Reads and checks a service-account JSON file.
    pub fn from_file(path: &str) -> Result<Self, CredentialError> {
        let text = std::fs::read(path).map_err(|source| CredentialError::Read {
            path: path.to_string(),
            source,
        })?;
        let file: ServiceAccountFile =
            serde_json::from_slice(&text).map_err(|e| CredentialError::NotServiceAccount {
                path: path.to_string(),
                why: e.to_string(),
            })?;
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(file.private_key.as_bytes()).map_err(|e| {
                CredentialError::PrivateKey {
                    path: path.to_string(),
                    why: e.to_string(),
                }
            })?;
        Ok(Self {
            client_email: file.client_email,
            key_id: file.private_key_id.unwrap_or_default(),
            key,
            token_uri: file
                .token_uri
                .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
        })
    }

    /// The signed JWT assertion for the token endpoint, issued at `now` (seconds since the epoch).
    pub fn assertion(&self, now: u64) -> Result<String, CredentialError> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.key_id.clone());
        let claims = Claims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat: now,
            exp: now + 3600,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| CredentialError::Signing(e.to_string()))
    }
}

/// A token and when it stops working.
#[derive(Debug)]
pub struct Token {
    pub value: String,
    pub expires: SystemTime,
}

/// The live token of one upstream, shared by all workers.
#[derive(Debug)]
pub struct OAuthTokenCell {
    source: TokenSource,
    current: ArcSwapOption<Token>,
}

impl OAuthTokenCell {
    pub fn new(source: TokenSource) -> Arc<Self> {
        Arc::new(Self {
            source,
            current: ArcSwapOption::empty(),
        })
    }

    /// Whose tokens these are (`Google`, `Entra ID`).
    pub fn issuer(&self) -> &'static str {
        self.source.issuer()
    }

    /// The token to send now, if one has been fetched and has not expired.
    pub fn current(&self) -> Option<Arc<Token>> {
        self.current
            .load_full()
            .filter(|t| t.expires > SystemTime::now())
    }

    /// Fetches a first token now (so the first request has one), then keeps it fresh on a
    /// side thread. A failed first fetch is logged and retried by the thread.
    pub fn start(self: &Arc<Self>) {
        if let Err(e) = self.refresh() {
            let issuer = self.source.issuer();
            tracing::error!(error = %e, "cannot get a {issuer} access token; retrying");
        }
        // Held weakly: once a config reload has dropped the upstream, the thread stops.
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("sluice-oauth-token".into())
            .spawn(move || loop {
                let Some(cell) = weak.upgrade() else { break };
                let wait = cell
                    .current()
                    .and_then(|t| t.expires.duration_since(SystemTime::now()).ok())
                    .map_or(Duration::from_secs(5), |left| {
                        left.saturating_sub(REFRESH_BEFORE)
                    })
                    .max(Duration::from_secs(1));
                drop(cell);
                #[expect(clippy::disallowed_methods, reason = "the refresher's own thread")]
                std::thread::sleep(wait);
                let Some(cell) = weak.upgrade() else { break };
                if let Err(e) = cell.refresh() {
                    let issuer = cell.source.issuer();
                    tracing::error!(error = %e, "cannot refresh a {issuer} access token");
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start an upstream token refresher");
        }
    }

    fn refresh(&self) -> Result<(), CredentialError> {
        let token = fetch(&self.source)?;
        self.current.store(Some(Arc::new(token)));
        Ok(())
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: serde_json::Value,
}

fn fetch(source: &TokenSource) -> Result<Token, CredentialError> {
    let now = SystemTime::now();
    match source {
        TokenSource::Command(command) => {
            let stdout = super::credential_command::run("the token command", command)?;
            let value = String::from_utf8_lossy(&stdout).trim().to_string();
            if value.is_empty() {
                return Err(CredentialError::EmptyToken);
            }
            Ok(Token {
                value,
                expires: now + COMMAND_TOKEN_LIFETIME,
            })
        }
        TokenSource::ServiceAccount(sa) => {
            let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let form = format!(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
                sa.assertion(secs)?
            );
            grant(&sa.token_uri, &form, now)
        }
        TokenSource::ClientCredentials(c) => {
            let enc = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            let form = format!(
                "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
                enc(&c.client_id),
                enc(&c.client_secret),
                enc(&c.scope)
            );
            grant(&c.token_url, &form, now)
        }
    }
}

/// Posts a token request `form` to `url` and reads the token it grants.
fn grant(url: &str, form: &str, now: SystemTime) -> Result<Token, CredentialError> {
    let (status, body) = super::blocking_http::post(
        url,
        "application/x-www-form-urlencoded",
        form.as_bytes(),
        &[],
    )?;
    if status != 200 {
        return Err(CredentialError::TokenStatus {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    let parsed: TokenResponse =
        serde_json::from_slice(&body).map_err(|e| CredentialError::TokenResponse(e.to_string()))?;
    // google-auth tolerates expires_in as a number or a string.
    let lifetime = match &parsed.expires_in {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(3600);
    Ok(Token {
        value: parsed.access_token,
        expires: now + Duration::from_secs(lifetime),
    })
}
