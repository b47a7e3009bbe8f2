//! The company's OpenID Connect provider, as the sign-in threads use it: discovery (cached),
//! the authorization-code request with PKCE (S256) and a nonce, the code exchange, the ID token
//! checked against the provider's JWKS (signature, `iss`, `aud`, `exp`, `nonce`), and the
//! refresh grant that tells sluice whether the provider still knows the user. Blocking HTTP on
//! the sign-in threads only, never on a worker.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use crate::config::signin::SigninSettings;
use crate::provider::blocking_http;

/// How long the discovery document and the key set are trusted before they are fetched again.
const CACHE_FOR: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("identity provider unreachable: {0}")]
    Unreachable(String),
    #[error("identity provider answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("identity provider's answer is not understood: {0}")]
    Malformed(String),
    #[error("ID token not accepted: {0}")]
    IdToken(String),
}

#[derive(Clone, Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    refresh_token: Option<String>,
}

/// Who the provider says signed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderUser {
    pub subject: String,
    pub email: String,
    pub email_verified: bool,
    pub groups: Vec<String>,
    /// The provider's refresh token, when it issued one.
    pub refresh_token: Option<String>,
}

/// The provider client of one sign-in thread.
pub struct Provider {
    settings: std::sync::Arc<SigninSettings>,
    roots: Vec<CertificateDer<'static>>,
    discovery: Option<(Discovery, Instant)>,
    keys: Option<(JwkSet, Instant)>,
}

impl Provider {
    pub fn new(settings: std::sync::Arc<SigninSettings>) -> Result<Self, OidcError> {
        let roots = match &settings.ca_file {
            Some(file) => CertificateDer::pem_file_iter(file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| OidcError::Malformed(format!("signin.ca_file {file}: {e}")))?,
            None => Vec::new(),
        };
        Ok(Self {
            settings,
            roots,
            discovery: None,
            keys: None,
        })
    }

    /// Where to send the browser: the provider's authorization endpoint with this attempt's
    /// `state`, `nonce` and PKCE challenge.
    pub fn authorize_url(
        &mut self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        code_verifier: &str,
    ) -> Result<String, OidcError> {
        let challenge = pkce_challenge(code_verifier);
        let endpoint = self.discovery()?.authorization_endpoint;
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.settings.scopes.join(" "))
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        if endpoint.chars().any(char::is_control) {
            return Err(OidcError::Malformed(
                "the authorization endpoint holds control characters".into(),
            ));
        }
        let joiner = if endpoint.contains('?') { '&' } else { '?' };
        Ok(format!("{endpoint}{joiner}{query}"))
    }

    /// Exchanges an authorization code and checks the ID token it brings.
    pub fn exchange(
        &mut self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
        nonce: &str,
    ) -> Result<ProviderUser, OidcError> {
        let form = self.client_form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ]);
        let answer = self.token_request(&form)?;
        let id_token = answer
            .id_token
            .ok_or_else(|| OidcError::Malformed("no id_token".into()))?;
        let mut user = self.check_id_token(&id_token, Some(nonce))?;
        user.refresh_token = answer.refresh_token;
        Ok(user)
    }

    /// Refreshes at the provider: `Ok(Some(token))` a new provider refresh token, `Ok(None)`
    /// still known (no new token), `Err(Refused)` the provider no longer signs this user in.
    pub fn refresh(&mut self, refresh_token: &str) -> Result<Option<String>, OidcError> {
        let form = self.client_form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ]);
        let answer = self.token_request(&form)?;
        Ok(answer.refresh_token)
    }

    fn client_form(&self, fields: &[(&str, &str)]) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(fields.iter().copied());
        form.append_pair("client_id", &self.settings.client_id);
        if let Some(secret) = self
            .settings
            .client_secret
            .as_ref()
            .and_then(|s| s.lookup())
        {
            form.append_pair("client_secret", &secret);
        }
        form.finish()
    }

    fn token_request(&mut self, form: &str) -> Result<TokenResponse, OidcError> {
        let endpoint = self.discovery()?.token_endpoint;
        let (status, body) = blocking_http::post(
            &endpoint,
            "application/x-www-form-urlencoded",
            form.as_bytes(),
            &self.roots,
        )
        .map_err(|e| OidcError::Unreachable(e.to_string()))?;
        json_answer(status, &body)
    }

    fn check_id_token(
        &mut self,
        token: &str,
        nonce: Option<&str>,
    ) -> Result<ProviderUser, OidcError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| OidcError::IdToken(e.to_string()))?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::PS256 | Algorithm::ES384
        ) {
            return Err(OidcError::IdToken(format!(
                "{:?} is not accepted",
                header.alg
            )));
        }
        let key = self.key_for(header.kid.as_deref(), false).or_else(|_| {
            // An unknown kid: the provider may have rotated its keys.
            self.key_for(header.kid.as_deref(), true)
        })?;
        let issuer = self.discovery()?.issuer;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[&self.settings.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 60;
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| OidcError::IdToken(e.to_string()))?
            .claims;
        if let Some(nonce) = nonce {
            if claims.get("nonce").and_then(|n| n.as_str()) != Some(nonce) {
                return Err(OidcError::IdToken("nonce does not match".into()));
            }
        }
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(String::from);
        let groups = match claims.get(&self.settings.groups_claim) {
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .filter_map(|g| g.as_str().map(String::from))
                .collect(),
            Some(serde_json::Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        Ok(ProviderUser {
            subject: text("sub").unwrap_or_default(),
            email: text("email").ok_or_else(|| {
                OidcError::IdToken("no email claim (ask for the email scope)".into())
            })?,
            email_verified: claims
                .get("email_verified")
                .and_then(|v| v.as_bool())
                .unwrap_or(true),
            groups,
            refresh_token: None,
        })
    }

    fn key_for(&mut self, kid: Option<&str>, refetch: bool) -> Result<DecodingKey, OidcError> {
        let stale = self
            .keys
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() > CACHE_FOR);
        if refetch || stale {
            let uri = self.discovery()?.jwks_uri;
            let set: JwkSet = self.get_json(&uri)?;
            self.keys = Some((set, Instant::now()));
        }
        let (set, _) = self
            .keys
            .as_ref()
            .ok_or_else(|| OidcError::Malformed("no key set".into()))?;
        let jwk = match kid {
            Some(kid) => set.find(kid),
            None => set.keys.first(),
        }
        .ok_or_else(|| OidcError::IdToken("no provider key for this token".into()))?;
        DecodingKey::from_jwk(jwk).map_err(|e| OidcError::IdToken(e.to_string()))
    }

    fn discovery(&mut self) -> Result<Discovery, OidcError> {
        if let Some((found, at)) = &self.discovery {
            if at.elapsed() < CACHE_FOR {
                return Ok(found.clone());
            }
        }
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer);
        let found: Discovery = self.get_json(&url)?;
        if found.issuer.trim_end_matches('/') != self.settings.issuer {
            return Err(OidcError::Malformed(format!(
                "the discovery document names issuer {}, not {}",
                found.issuer, self.settings.issuer
            )));
        }
        self.discovery = Some((found.clone(), Instant::now()));
        Ok(found)
    }

    fn get_json<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<T, OidcError> {
        let (status, body) =
            blocking_http::get(url, &[("Accept", "application/json")], &self.roots)
                .map_err(|e| OidcError::Unreachable(e.to_string()))?;
        json_answer(status, &body)
    }
}

/// A provider's JSON answer: parsed when 200, else refused with the start of its body.
fn json_answer<T: for<'de> Deserialize<'de>>(status: u16, body: &[u8]) -> Result<T, OidcError> {
    if status != 200 {
        return Err(OidcError::Refused {
            status,
            body: String::from_utf8_lossy(body).chars().take(300).collect(),
        });
    }
    serde_json::from_slice(body).map_err(|e| OidcError::Malformed(e.to_string()))
}

/// RFC 7636 S256: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(crate::digest::sha256(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        // RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
