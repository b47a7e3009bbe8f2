//! The sign-in endpoints, as Claude Code's gateway protocol has them, answered on a sign-in
//! thread:
//!
//! - `GET /.well-known/oauth-authorization-server`: RFC 8414 metadata.
//! - `POST /oauth/device_authorization`: RFC 8628 — a 256-bit device code and an 8-letter user
//!   code (`BCDF-GHJK`), single use, expiring; only their hashes are stored.
//! - `GET /device`: the code form; `POST /device`: same-origin only (`Sec-Fetch-Site` or
//!   `Origin`), binds the attempt to the browser with a cookie and sends it to the provider
//!   (authorization code + PKCE + nonce).
//! - `GET /oauth/callback`: the provider's answer for that browser: code exchange, ID token
//!   checks, the email domain, groups → team; the device code is approved (or denied).
//! - `POST /oauth/token`: the device grant (`authorization_pending`, `slow_down` with 5 s more
//!   per early poll, `access_denied`, `expired_token`) and the refresh grant (rotated on use, a
//!   reused token ends its session, a user the provider no longer signs in gets
//!   `invalid_grant`).
//! - `POST /oauth/revoke`: RFC 7009, for a refresh or an access token: ends the session.

use std::sync::Arc;

use serde_json::json;

use super::oidc::{OidcError, Provider};
use super::store::{Device, DeviceStatus, Session, SigninStore, SigninStoreError};
use super::tokens::{now_secs, random_token, AccessClaims, TokenVerifier};
use super::{pages, SigninCall, SigninReply, SigninRequest};
use crate::audit::{AuditEvent, AuditLog};
use crate::config::signin::SigninSettings;
use crate::digest::sha256;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The user-code alphabet: consonants that read unambiguously (RFC 8628 §6.1).
const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKMNPQRSTVWXYZ";
const BROWSER_COOKIE: &str = "sluice_signin";
/// How much longer a client must wait after polling too early.
const SLOW_DOWN_STEP: u64 = 5;

/// One sign-in thread's view: the store, the provider, the settings and the verifier.
pub struct Endpoints {
    pub store: SigninStore,
    pub provider: Provider,
    pub settings: Arc<SigninSettings>,
    pub verifier: Arc<TokenVerifier>,
    pub attempts: Arc<Attempts>,
    /// Where sign-ins, refusals and ended sessions are audited.
    pub audit: AuditLog,
}

/// Sign-ins started (device authorizations) and codes tried (verification-page posts) per
/// client address and minute, shared by the sign-in threads: a user code has 20⁸ values, and
/// guessing one takes more tries than an address gets.
#[derive(Default)]
pub struct Attempts {
    #[expect(
        clippy::disallowed_types,
        reason = "shared by the sign-in side threads only; workers never take it"
    )]
    counts: std::sync::Mutex<std::collections::HashMap<(bool, std::net::IpAddr), (u64, u32)>>,
}

/// Attempts an address may make per minute, of each kind.
pub const ATTEMPTS_PER_MINUTE: u32 = 10;

impl Attempts {
    /// Counts one attempt; false when the address is over its limit this minute.
    fn allow(&self, verifying: bool, ip: Option<std::net::IpAddr>, now: u64) -> bool {
        let Some(ip) = ip else { return true };
        let minute = now / 60;
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() > 100_000 {
            counts.clear();
        }
        let entry = counts.entry((verifying, ip)).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        entry.1 <= ATTEMPTS_PER_MINUTE
    }
}

impl Endpoints {
    /// Answers one sign-in request.
    /// These endpoints, auditing in `audit`.
    pub fn audited_in(mut self, audit: AuditLog) -> Self {
        self.audit = audit;
        self
    }

    pub fn handle(&mut self, request: &SigninRequest) -> SigninReply {
        let outcome = match request.call {
            SigninCall::Discovery => Ok(self.discovery(request)),
            SigninCall::DeviceAuthorization => self.device_authorization(request),
            SigninCall::DevicePage => Ok(self.device_page(request)),
            SigninCall::DeviceSubmit => self.device_submit(request),
            SigninCall::Callback => self.callback(request),
            SigninCall::Token => self.token(request),
            SigninCall::Revoke => self.revoke(request),
        };
        outcome.unwrap_or_else(|e| {
            tracing::error!(error = %e, "sign-in store failed");
            oauth_error(503, "temporarily_unavailable", "try again shortly")
        })
    }

    fn discovery(&self, request: &SigninRequest) -> SigninReply {
        let base = &request.base_url;
        let mut document = json!({
                "issuer": base,
                "device_authorization_endpoint": format!("{base}/oauth/device_authorization"),
                "token_endpoint": format!("{base}/oauth/token"),
                "revocation_endpoint": format!("{base}/oauth/revoke"),
                "grant_types_supported": [DEVICE_GRANT, "refresh_token"],
                "response_types_supported": [],
                "token_endpoint_auth_methods_supported": ["none"],
                "scopes_supported": ["openid", "profile", "email"],
                "gateway_protocol_version": 1,
        });
        if request.cri_enabled {
            document["cri_enabled"] = json!(true);
        }
        SigninReply::json(200, &document)
    }

    fn device_authorization(
        &mut self,
        request: &SigninRequest,
    ) -> Result<SigninReply, SigninStoreError> {
        let now = now_secs();
        if !self.attempts.allow(false, request.client_ip, now) {
            return Ok(oauth_error(
                429,
                "slow_down",
                "too many sign-ins were started from your network: wait a minute",
            ));
        }
        let device_code = random_token();
        let user_code = user_code();
        let ttl = self.settings.device_code_ttl.as_secs();
        let interval = self.settings.poll_interval.as_secs().max(1);
        self.store.create_device(&Device {
            code_sha256: sha256(device_code.as_bytes()),
            user_code: user_code.clone(),
            expires_at: now + ttl,
            interval_s: interval,
            next_poll_at: now,
            status: DeviceStatus::Pending,
            browser_sha256: None,
            code_verifier: None,
            nonce: None,
        })?;
        let base = &request.base_url;
        let complete = form_urlencoded::Serializer::new(String::new())
            .append_pair("user_code", &user_code)
            .finish();
        let mut body = json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": format!("{base}/device"),
            "verification_uri_complete": format!("{base}/device?{complete}"),
            "expires_in": ttl,
            "interval": interval,
        });
        if let Some(notice) = &self.settings.login_notice {
            body["login_notice"] = json!(notice);
        }
        Ok(SigninReply::json(200, &body).no_store())
    }

    fn device_page(&self, request: &SigninRequest) -> SigninReply {
        let prefill = field(request.query.as_bytes(), "user_code");
        SigninReply::html(
            200,
            pages::code_form(
                prefill.as_deref(),
                self.settings.login_notice.as_deref(),
                None,
            ),
        )
    }

    fn device_submit(&mut self, request: &SigninRequest) -> Result<SigninReply, SigninStoreError> {
        let notice = self.settings.login_notice.clone();
        let form_error = |message: &str| {
            SigninReply::html(
                400,
                pages::code_form(None, notice.as_deref(), Some(message)),
            )
        };
        if !request.same_origin() {
            return Ok(form_error(
                "This request came from another site and was blocked. Open the verification link directly.",
            ));
        }
        let now = now_secs();
        if !self.attempts.allow(true, request.client_ip, now) {
            return Ok(SigninReply::html(
                429,
                pages::code_form(
                    None,
                    notice.as_deref(),
                    Some("Too many attempts came from your network. Wait a minute and try again."),
                ),
            ));
        }
        let typed = field(&request.body, "user_code").unwrap_or_default();
        let device = match self.store.device_by_user_code(&normalize_user_code(&typed))? {
            Some(d) if d.status == DeviceStatus::Pending && d.expires_at > now => d,
            _ => {
                return Ok(form_error(
                    "That code was not recognized: it may have expired. Check your terminal for the current code.",
                ))
            }
        };
        if field(&request.body, "action").as_deref() == Some("deny") {
            self.store
                .settle_device(&device.code_sha256, &DeviceStatus::Denied)?;
            self.audit.record(AuditEvent::signin(
                "refused",
                "",
                Some("denied_by_user"),
                None,
            ));
            return Ok(SigninReply::html(200, pages::denied()));
        }
        let (state, nonce, verifier, browser) = (
            random_token(),
            random_token(),
            random_token(),
            random_token(),
        );
        let redirect_uri = format!("{}/oauth/callback", request.base_url);
        let url = match self
            .provider
            .authorize_url(&redirect_uri, &state, &nonce, &verifier)
        {
            Ok(url) => url,
            Err(e) => {
                tracing::error!(error = %e, "cannot start a sign-in at the identity provider");
                return Ok(form_error(
                    "The identity provider cannot be reached right now. Try again shortly.",
                ));
            }
        };
        self.store.start_login(
            &device.code_sha256,
            &sha256(state.as_bytes()),
            &sha256(browser.as_bytes()),
            &verifier,
            &nonce,
        )?;
        let secure = if request.base_url.starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        Ok(SigninReply::redirect(&url).with_header(
            "set-cookie",
            format!(
                "{BROWSER_COOKIE}={browser}; Path=/oauth/callback; HttpOnly; SameSite=Lax; Max-Age=900{secure}"
            ),
        ))
    }

    fn callback(&mut self, request: &SigninRequest) -> Result<SigninReply, SigninStoreError> {
        let query = request.query.as_bytes();
        let failed = |status: u16, message: &str| {
            SigninReply::html(status, pages::outcome(None, Some(message))).with_header(
                "set-cookie",
                format!("{BROWSER_COOKIE}=; Path=/oauth/callback; Max-Age=0"),
            )
        };
        let state = field(query, "state").unwrap_or_default();
        let Some(device) = self.store.device_by_state(&sha256(state.as_bytes()))? else {
            return Ok(failed(
                400,
                "This sign-in link has expired. Start again from your terminal.",
            ));
        };
        let browser = request.cookie(BROWSER_COOKIE).unwrap_or_default();
        let same_browser = device
            .browser_sha256
            .as_deref()
            .is_some_and(|h| crate::digest::constant_time_eq(h, &sha256(browser.as_bytes())));
        if !same_browser {
            return Ok(failed(
                400,
                "This sign-in was started in a different browser. Open the verification link on the device that showed the code.",
            ));
        }
        if device.status != DeviceStatus::Pending || device.expires_at <= now_secs() {
            return Ok(failed(
                400,
                "This code has already been used or has expired.",
            ));
        }
        if let Some(error) = field(query, "error") {
            self.store
                .settle_device(&device.code_sha256, &DeviceStatus::Denied)?;
            self.audit.record(AuditEvent::signin(
                "refused",
                "",
                Some("provider_refused"),
                Some(error.clone()),
            ));
            return Ok(failed(
                403,
                &format!("The identity provider answered: {error}"),
            ));
        }
        let code = field(query, "code").unwrap_or_default();
        let redirect_uri = format!("{}/oauth/callback", request.base_url);
        let exchanged = self.provider.exchange(
            &code,
            &redirect_uri,
            device.code_verifier.as_deref().unwrap_or_default(),
            device.nonce.as_deref().unwrap_or_default(),
        );
        let user = match exchanged
            .map_err(SignInRefused::Provider)
            .and_then(|u| self.admit(u))
        {
            Ok(user) => user,
            Err(why) => {
                tracing::info!(reason = %why, "sign-in refused");
                let email = match &why {
                    SignInRefused::Domain(email) => email.as_str(),
                    _ => "",
                };
                self.audit.record(AuditEvent::signin(
                    "refused",
                    email,
                    Some(why.label()),
                    None,
                ));
                self.store
                    .settle_device(&device.code_sha256, &DeviceStatus::Denied)?;
                return Ok(failed(403, &why.to_string()));
            }
        };
        let session = Session {
            id: random_token(),
            team: self.settings.team_of(&user.groups),
            subject: user.subject,
            email: user.email.clone(),
            groups: user.groups,
            created_at: now_secs(),
            revoked: false,
            provider_refresh: user.refresh_token,
        };
        self.store.create_session(&session)?;
        let approved = self
            .store
            .settle_device(&device.code_sha256, &DeviceStatus::Approved(session.id))?;
        if !approved {
            return Ok(failed(
                400,
                "This code has already been used or has expired.",
            ));
        }
        tracing::info!(email = %user.email, "signed in");
        self.audit.record(AuditEvent::signin(
            "signed_in",
            &user.email,
            None,
            session.team.as_ref().map(|t| format!("team {t}")),
        ));
        Ok(
            SigninReply::html(200, pages::outcome(Some(&user.email), None)).with_header(
                "set-cookie",
                format!("{BROWSER_COOKIE}=; Path=/oauth/callback; Max-Age=0"),
            ),
        )
    }

    /// The provider's user, if sluice lets them in.
    fn admit(
        &self,
        user: super::oidc::ProviderUser,
    ) -> Result<super::oidc::ProviderUser, SignInRefused> {
        if !user.email_verified {
            return Err(SignInRefused::Unverified);
        }
        if !self.settings.allows_email(&user.email) {
            return Err(SignInRefused::Domain(user.email));
        }
        Ok(user)
    }

    fn token(&mut self, request: &SigninRequest) -> Result<SigninReply, SigninStoreError> {
        let form = request.body.as_slice();
        match field(form, "grant_type").as_deref() {
            Some(DEVICE_GRANT) => match field(form, "device_code") {
                Some(code) => self.device_grant(request, &code),
                None => Ok(oauth_error(
                    400,
                    "invalid_request",
                    "device_code is required",
                )),
            },
            Some("refresh_token") => match field(form, "refresh_token") {
                Some(token) => self.refresh_grant(request, &token),
                None => Ok(oauth_error(
                    400,
                    "invalid_request",
                    "refresh_token is required",
                )),
            },
            _ => Ok(oauth_error(
                400,
                "unsupported_grant_type",
                "the device_code and refresh_token grants are supported",
            )),
        }
    }

    fn device_grant(
        &mut self,
        request: &SigninRequest,
        code: &str,
    ) -> Result<SigninReply, SigninStoreError> {
        let now = now_secs();
        let hash = sha256(code.as_bytes());
        let Some(device) = self.store.device_by_code(&hash)? else {
            return Ok(oauth_error(
                400,
                "expired_token",
                "the device code is unknown or used",
            ));
        };
        if device.expires_at <= now {
            self.store.delete_device(&hash)?;
            return Ok(oauth_error(
                400,
                "expired_token",
                "the device code has expired",
            ));
        }
        match device.status {
            DeviceStatus::Pending if now < device.next_poll_at => {
                let interval = device.interval_s + SLOW_DOWN_STEP;
                self.store.set_poll(&hash, now + interval, interval)?;
                Ok(oauth_error(
                    400,
                    "slow_down",
                    "polling too fast: wait longer between polls",
                ))
            }
            DeviceStatus::Pending => {
                self.store
                    .set_poll(&hash, now + device.interval_s, device.interval_s)?;
                Ok(oauth_error(
                    400,
                    "authorization_pending",
                    "the sign-in is not finished yet",
                ))
            }
            DeviceStatus::Denied => {
                self.store.delete_device(&hash)?;
                Ok(oauth_error(400, "access_denied", "the sign-in was refused"))
            }
            DeviceStatus::Approved(session) => {
                if !self.store.delete_device(&hash)? {
                    return Ok(oauth_error(
                        400,
                        "expired_token",
                        "the device code was used",
                    ));
                }
                match self.store.session(&session)? {
                    Some(s) if !s.revoked => self.issue(request, &s),
                    _ => Ok(oauth_error(400, "access_denied", "the sign-in was ended")),
                }
            }
        }
    }

    fn refresh_grant(
        &mut self,
        request: &SigninRequest,
        token: &str,
    ) -> Result<SigninReply, SigninStoreError> {
        let now = now_secs();
        let invalid = || oauth_error(401, "invalid_grant", "sign in again");
        let Some(session_id) = self
            .store
            .use_refresh_token(&sha256(token.as_bytes()), now)?
        else {
            self.publish_revocations()?;
            return Ok(invalid());
        };
        let Some(session) = self.store.session(&session_id)?.filter(|s| !s.revoked) else {
            return Ok(invalid());
        };
        if let Some(provider_token) = &session.provider_refresh {
            match self.provider.refresh(provider_token) {
                Ok(Some(next)) => self.store.set_provider_refresh(&session.id, &next)?,
                Ok(None) => {}
                Err(OidcError::Refused { status, .. }) if (400..500).contains(&status) => {
                    tracing::info!(email = %session.email, "the identity provider no longer signs this user in: session ended");
                    self.audit.record(AuditEvent::signin(
                        "signed_out",
                        &session.email,
                        Some("provider_refused_refresh"),
                        None,
                    ));
                    self.end_sessions(std::slice::from_ref(&session.id))?;
                    return Ok(invalid());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "identity provider unreachable at refresh; the session continues")
                }
            }
        }
        self.issue(request, &session)
    }

    fn revoke(&mut self, request: &SigninRequest) -> Result<SigninReply, SigninStoreError> {
        let Some(token) = field(&request.body, "token") else {
            return Ok(oauth_error(400, "invalid_request", "token is required"));
        };
        let session = if super::tokens::looks_like_jwt(&token) {
            self.verifier.signed_session(&token)
        } else {
            self.store
                .refresh_token_session(&sha256(token.as_bytes()))?
        };
        if let Some(session) = session {
            self.end_sessions(&[session])?;
        }
        // RFC 7009 §2.2: an unknown or already revoked token is not an error.
        Ok(SigninReply::json(200, &json!({})))
    }

    /// Ends sessions in the store and at once for every worker.
    pub fn end_sessions(&mut self, ids: &[String]) -> Result<(), SigninStoreError> {
        let now = now_secs();
        for id in ids {
            self.store.revoke_session(id, now)?;
        }
        self.verifier.revoke(ids);
        Ok(())
    }

    /// Reloads keys (a rotation may be due) and revoked sessions into the verifier.
    pub fn publish_revocations(&mut self) -> Result<(), SigninStoreError> {
        let now = now_secs();
        let ttl = self.settings.access_token_ttl;
        let keys = self.store.signing_keys(now, ttl)?;
        let revoked = self
            .store
            .revoked_since(now.saturating_sub(ttl.as_secs() + 60))?;
        self.verifier.publish(keys, revoked);
        Ok(())
    }

    /// A fresh access token and refresh token for `session`.
    fn issue(
        &mut self,
        request: &SigninRequest,
        session: &Session,
    ) -> Result<SigninReply, SigninStoreError> {
        let now = now_secs();
        let ttl = self.settings.access_token_ttl.as_secs();
        let claims = AccessClaims {
            iss: request.base_url.clone(),
            sub: session.subject.clone(),
            email: session.email.clone(),
            groups: session.groups.clone(),
            team: session.team.clone(),
            billing_group_tag: self.settings.billing_group_tag.clone(),
            sid: session.id.clone(),
            iat: now,
            exp: now + ttl,
        };
        let Ok(access_token) = self.verifier.mint(&claims) else {
            return Ok(oauth_error(
                503,
                "temporarily_unavailable",
                "no signing key",
            ));
        };
        let refresh_token = random_token();
        self.store.add_refresh_token(
            &sha256(refresh_token.as_bytes()),
            &session.id,
            now + self.settings.refresh_token_ttl.as_secs(),
        )?;
        Ok(SigninReply::json(
            200,
            &json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": ttl,
                "refresh_token": refresh_token,
                "email": session.email,
            }),
        )
        .no_store())
    }
}

/// Why a user the provider signed in is not let in.
#[derive(Debug, thiserror::Error)]
enum SignInRefused {
    #[error("{0}")]
    Provider(OidcError),
    #[error("your email address is not verified at the identity provider")]
    Unverified,
    #[error("{0} is not in a domain allowed to sign in here")]
    Domain(String),
}

impl SignInRefused {
    /// The audit log's reason.
    fn label(&self) -> &'static str {
        match self {
            SignInRefused::Provider(_) => "provider_error",
            SignInRefused::Unverified => "email_unverified",
            SignInRefused::Domain(_) => "domain_not_allowed",
        }
    }
}

/// An OAuth error body (`{"error", "error_description"}`).
fn oauth_error(status: u16, error: &str, description: &str) -> SigninReply {
    SigninReply::json(
        status,
        &json!({ "error": error, "error_description": description }),
    )
    .no_store()
}

/// The value of `name` in an `application/x-www-form-urlencoded` text.
pub fn field(form: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(form)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A new user code: eight letters of [`USER_CODE_ALPHABET`] as `XXXX-XXXX`.
fn user_code() -> String {
    let bytes = super::tokens::random_bytes::<8>();
    let mut code = String::with_capacity(9);
    for (i, b) in bytes.iter().enumerate() {
        if i == 4 {
            code.push('-');
        }
        let index = usize::from(*b) % USER_CODE_ALPHABET.len();
        code.push(char::from(
            USER_CODE_ALPHABET.get(index).copied().unwrap_or(b'B'),
        ));
    }
    code
}

/// A user code as typed → as stored: letters upper-cased, anything else dropped, the dash put
/// back after the fourth.
fn normalize_user_code(typed: &str) -> String {
    let letters: String = typed
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    match (letters.get(..4), letters.get(4..)) {
        (Some(head), Some(tail)) if !tail.is_empty() => format!("{head}-{tail}"),
        _ => letters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_eight_letters_of_the_alphabet() {
        for _ in 0..100 {
            let code = user_code();
            assert_eq!(code.len(), 9);
            assert_eq!(code.as_bytes()[4], b'-');
            assert!(code
                .bytes()
                .filter(|b| *b != b'-')
                .all(|b| USER_CODE_ALPHABET.contains(&b)));
        }
        assert_ne!(user_code(), user_code());
    }

    #[test]
    fn a_typed_code_is_read_as_the_user_meant_it() {
        assert_eq!(normalize_user_code("bcdf ghjk"), "BCDF-GHJK");
        assert_eq!(normalize_user_code("BCDF-GHJK"), "BCDF-GHJK");
        assert_eq!(normalize_user_code(" bc-df-gh-jk "), "BCDF-GHJK");
        assert_eq!(normalize_user_code("ü"), "");
    }
}
