//! Phase 2, authenticate: the client's credential (`x-api-key`, or `Authorization: Bearer`)
//! → an [`Identity`]. With virtual keys configured, a request without a valid one is refused
//! here and never reaches an upstream. Without keys every client is accepted: if the upstream
//! has its own credential the client's is replaced, otherwise it is passed through (identity = a
//! hash of it). The key itself is never logged or stored.

use super::verified_tokens::VerifiedTokens;
use super::GatewayError;
use crate::config::keys::digest;
use std::sync::Arc;

use crate::config::{Config, ModelPattern};
use crate::http1::RequestHead;
use crate::provider::sigv4;
use crate::record::{Caller, CallerNames};
use crate::state::jwt::looks_like_jwt;
use crate::state::State;

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A configured virtual key.
    Key {
        /// Shared with the key table: naming the caller copies nothing.
        names: Arc<CallerNames>,
        /// The models the key may use; `None`: all.
        models: Option<Arc<Vec<ModelPattern>>>,
    },
    /// A verified JWT.
    Jwt {
        /// `name` is the token's subject; shared with the worker's memory of the token.
        names: Arc<CallerNames>,
    },
    /// A verified client certificate that `[[server.tls.client_identities]]` maps (used when
    /// the request presents no key).
    Certificate {
        name: String,
        user: Option<String>,
        team: Option<String>,
    },
    /// A developer signed in at the company's identity provider (a sluice access token).
    SignedIn {
        email: String,
        team: Option<String>,
        /// The groups the identity provider listed at sign-in.
        groups: Vec<String>,
        /// The models the team may use (`[[signin.teams]] models`); `None`: all.
        models: Option<Arc<Vec<ModelPattern>>>,
    },
    /// A Claude Enterprise caller with an Anthropic-minted CRI token.
    CustomerRouted { org: String, user: String },
    /// Open access with the client's own credential (passed upstream when the upstream has none).
    PassThrough { fingerprint: String },
    /// Open access, no credential presented.
    Anonymous,
}

impl Identity {
    /// The identity as the access log writes it.
    pub fn label(&self) -> String {
        let (kind, name) = self.label_parts();
        match name {
            Some(name) => format!("{kind}:{name}"),
            None => kind.to_string(),
        }
    }

    /// Whom this identity's records name: a key's shared names, or the others' built now.
    pub fn caller(&self) -> Caller {
        match self {
            Identity::Key { names, .. } | Identity::Jwt { names } => {
                Caller::Known(Arc::clone(names))
            }
            Identity::Anonymous => Caller::Anonymous,
            _ => Caller::Other {
                label: self.label(),
                user: self.user().map(str::to_string),
                team: self.team().map(str::to_string),
            },
        }
    }

    /// Appends the [`label`](Self::label) to `out` without building it first.
    pub fn write_label(&self, out: &mut Vec<u8>) {
        let (kind, name) = self.label_parts();
        out.extend_from_slice(kind.as_bytes());
        if let Some(name) = name {
            out.push(b':');
            out.extend_from_slice(name.as_bytes());
        }
    }

    /// The label's kind and name (`anonymous` has no name).
    fn label_parts(&self) -> (&'static str, Option<&str>) {
        match self {
            Identity::Key { names, .. } => ("key", Some(&names.name)),
            Identity::Jwt { names } => ("jwt", Some(&names.name)),
            Identity::Certificate { name, .. } => ("cert", Some(name)),
            Identity::SignedIn { email, .. } => ("user", Some(email)),
            Identity::CustomerRouted { org, .. } => ("cri", Some(org)),
            Identity::PassThrough { fingerprint } => ("passthrough", Some(fingerprint)),
            Identity::Anonymous => ("anonymous", None),
        }
    }

    pub fn user(&self) -> Option<&str> {
        match self {
            Identity::Key { names, .. } | Identity::Jwt { names } => names.user.as_deref(),
            Identity::Certificate { user, .. } => user.as_deref(),
            Identity::SignedIn { email, .. } => Some(email),
            Identity::CustomerRouted { user, .. } => Some(user),
            _ => None,
        }
    }

    /// Whether this identity may use `model` (as sent, or as its Anthropic id).
    pub fn allows(&self, model: &str) -> bool {
        match self {
            Identity::Key {
                models: Some(allowed),
                ..
            }
            | Identity::SignedIn {
                models: Some(allowed),
                ..
            } => {
                let id = crate::format::anthropic_model_id(model);
                allowed.iter().any(|p| p.matches(model) || p.matches(&id))
            }
            _ => true,
        }
    }

    /// The refusal of a model this identity may not use: 400 for a signed-in developer (Claude
    /// Code's gateway contract), 403 for everyone else.
    pub fn deny_model(&self, model: &str) -> GatewayError {
        match self {
            Identity::SignedIn { .. } => GatewayError::ModelDenied(model.to_string()),
            _ => GatewayError::ModelNotAllowed(model.to_string()),
        }
    }

    /// The key, user and team that limits and budgets apply to (`user` and `team` as returned
    /// by [`Self::user`] and [`Self::team`]).
    pub fn scopes(&self) -> [(crate::limits::Scope, Option<&str>); 3] {
        use crate::limits::Scope;
        let key = match self {
            Identity::Key { names, .. } => Some(names.name.as_str()),
            _ => None,
        };
        [
            (Scope::Key, key),
            (Scope::User, self.user()),
            (Scope::Team, self.team()),
        ]
    }

    /// The sign-in groups (none for other identities).
    pub fn groups(&self) -> &[String] {
        match self {
            Identity::SignedIn { groups, .. } => groups,
            _ => &[],
        }
    }

    pub fn team(&self) -> Option<&str> {
        match self {
            Identity::Key { names, .. } | Identity::Jwt { names } => names.team.as_deref(),
            Identity::Certificate { team, .. } | Identity::SignedIn { team, .. } => team.as_deref(),
            _ => None,
        }
    }
}

/// An identity, and the SigV4 signature that must be verified before it counts.
#[derive(Debug)]
pub struct Authenticated {
    pub identity: Identity,
    /// A SigV4-signed request: what its signature is verified with.
    pub pending_sigv4: Option<PendingSignature>,
}

/// The gateway-issued AWS key a SigV4 request names. Until its signature verifies, the
/// request is nobody's: it is recorded as anonymous and reads a bounded body only.
#[derive(Debug)]
pub struct PendingSignature {
    secret: String,
    regions: Vec<String>,
    /// The signature was checked over the declared `x-amz-content-sha256`; the body must hash
    /// to it.
    pub head_verified: bool,
}

/// What the connection, rather than the request, says about the caller.
#[derive(Clone, Copy, Default)]
pub struct Connection<'a> {
    /// JWTs already verified on this worker.
    pub tokens: Option<&'a VerifiedTokens>,
    /// The names of the client certificate verified in the TLS handshake.
    pub certificate: Option<&'a [String]>,
    /// Sign-in tokens already verified on this worker.
    pub signin_tokens: Option<&'a super::verified_tokens::SignedInTokens>,
}

/// Authenticates a request (a SigV4 signature is checked by [`verify_sigv4_head`] and
/// [`verify_sigv4_body`]).
pub fn authenticate(
    head: &RequestHead,
    config: &Config,
    state: &State,
    connection: Connection<'_>,
) -> Result<Authenticated, GatewayError> {
    let sigv4 = head
        .header_str("authorization")
        .and_then(sigv4::parse_authorization)
        .filter(|_| !state.open_access(config));
    if let Some(presented) = sigv4 {
        let key = state
            .keys
            .aws_key(presented.access_key_id)
            .ok_or(GatewayError::Unauthorized)?;
        return Ok(Authenticated {
            identity: Identity::Key {
                names: Arc::clone(&key.names),
                models: None,
            },
            pending_sigv4: Some(PendingSignature {
                secret: key.secret.clone(),
                regions: key.regions.clone(),
                head_verified: false,
            }),
        });
    }
    identify(head, config, state, connection).map(|identity| Authenticated {
        identity,
        pending_sigv4: None,
    })
}

/// The signing name a client's SigV4 signature must carry: `bedrock` on Bedrock's own paths;
/// on the Messages API, the name of the mode the client runs in — Bedrock Mantle
/// (`bedrock-mantle`) or Claude Platform on AWS (`aws-external-anthropic`).
fn signed_service(head: &RequestHead) -> &'static str {
    const MESSAGES_SERVICES: [&str; 2] = ["bedrock-mantle", "aws-external-anthropic"];
    if super::classify::unprefixed(head.path()).is_none() {
        return "bedrock";
    }
    let presented = head
        .header_str("authorization")
        .and_then(|v| v.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3));
    MESSAGES_SERVICES
        .into_iter()
        .find(|s| Some(*s) == presented)
        .unwrap_or("bedrock-mantle")
}

/// Before any body byte is read: a request that declares `x-amz-content-sha256` has its
/// signature verified over the head and that hash now; one that does not may carry at most
/// `unverified_body_limit` bytes (its signature covers the body, which must be read first).
pub fn verify_sigv4_head(
    head: &RequestHead,
    pending: &mut PendingSignature,
    unverified_body_limit: usize,
) -> Result<(), GatewayError> {
    if head.header("x-amz-content-sha256").is_some() {
        verify(head, sigv4::Payload::Declared, pending)?;
        pending.head_verified = true;
        return Ok(());
    }
    match head.framing {
        crate::http1::BodyFraming::Empty => Ok(()),
        crate::http1::BodyFraming::Length(n) if n <= unverified_body_limit as u64 => Ok(()),
        _ => {
            tracing::info!(
                "SigV4 request refused: a body over {unverified_body_limit} bytes (or chunked) must declare x-amz-content-sha256"
            );
            Err(GatewayError::Unauthorized)
        }
    }
}

/// With the whole body read: the body is the one the signature covers.
pub fn verify_sigv4_body(
    head: &RequestHead,
    body: &[u8],
    pending: &PendingSignature,
) -> Result<(), GatewayError> {
    if pending.head_verified {
        return sigv4::check_payload(head.header_str("x-amz-content-sha256"), body).map_err(|e| {
            tracing::info!(error = %e, "SigV4 signature refused");
            GatewayError::Unauthorized
        });
    }
    verify(head, sigv4::Payload::Body(body), pending)
}

fn verify(
    head: &RequestHead,
    payload: sigv4::Payload<'_>,
    pending: &PendingSignature,
) -> Result<(), GatewayError> {
    let target = String::from_utf8_lossy(head.target()).into_owned();
    let scope = sigv4::Scope {
        service: signed_service(head),
        regions: &pending.regions,
    };
    sigv4::verify(
        head.method.as_str(),
        &target,
        |n| head.header_str(n),
        payload,
        scope,
        |_| Some(pending.secret.clone()),
    )
    .map(|_| ())
    .map_err(|e| {
        tracing::info!(error = %e, "SigV4 signature refused");
        GatewayError::Unauthorized
    })
}

fn identify(
    head: &RequestHead,
    config: &Config,
    state: &State,
    connection: Connection<'_>,
) -> Result<Identity, GatewayError> {
    let presented = presented_key(head);
    if state.open_access(config) {
        return Ok(match presented {
            Some(key) => Identity::PassThrough {
                fingerprint: hex::encode(&digest(key)[..6]),
            },
            None => Identity::Anonymous,
        });
    }
    let Some(key) = presented else {
        return certificate_identity(config, connection.certificate)
            .ok_or(GatewayError::Unauthorized);
    };
    let tokens = connection.tokens;
    if let Some(identity) = customer_routed(state, key)? {
        return Ok(identity);
    }
    if let Some(identity) = signed_in(state, key, connection.signin_tokens)? {
        return Ok(identity);
    }
    if let (Some(verifier), true) = (&state.jwt, looks_like_jwt(key)) {
        let token = std::str::from_utf8(key).map_err(|_| GatewayError::Unauthorized)?;
        let remembered = tokens.and_then(|t| t.get(token, verifier.leeway()));
        let names = match remembered {
            Some(names) => names,
            None => {
                let id = verifier.verify(token).map_err(|why| {
                    tracing::info!(reason = %why, "JWT refused");
                    GatewayError::Unauthorized
                })?;
                let names =
                    CallerNames::new("jwt", id.subject.clone(), id.user.clone(), id.team.clone());
                if let Some(t) = tokens {
                    t.remember(token, &id, &names);
                }
                names
            }
        };
        return Ok(Identity::Jwt { names });
    }
    let digest = digest(key);
    let issued;
    let found = match state.keys.find(&digest) {
        Some(found) => found,
        None => {
            issued = state.issued_keys.find(&digest);
            issued.as_ref().ok_or(GatewayError::Unauthorized)?
        }
    };
    if found
        .expires
        .is_some_and(|at| at <= std::time::SystemTime::now())
    {
        return Err(GatewayError::KeyExpired);
    }
    Ok(Identity::Key {
        names: Arc::clone(&found.names),
        models: found.models.clone(),
    })
}

/// The Claude Enterprise caller a CRI token names, if the credential is one (and CRI is on):
/// refused when it does not verify, 503 while no fresh key set is held.
fn customer_routed(state: &State, key: &[u8]) -> Result<Option<Identity>, GatewayError> {
    let Some(cri) = &state.cri else {
        return Ok(None);
    };
    if !looks_like_jwt(key) {
        return Ok(None);
    }
    let token = std::str::from_utf8(key).map_err(|_| GatewayError::Unauthorized)?;
    if !crate::cri::CriVerifier::is_cri_token(token) {
        return Ok(None);
    }
    match cri.verify(token, crate::signin::tokens::now_secs()) {
        Ok(p) => Ok(Some(Identity::CustomerRouted {
            org: p.org,
            user: p.actor.unwrap_or(p.subject),
        })),
        Err(crate::cri::CriRefusal::KeysUnavailable) => Err(GatewayError::CriKeysUnavailable),
        Err(why) => {
            tracing::info!(reason = why.label(), detail = %why, "CRI token refused");
            Err(GatewayError::Unauthorized)
        }
    }
}

/// The developer a sluice access token names, if the credential is one: `Ok(None)` when it is
/// not sluice's (another verifier may know it); refused when it expired or its session ended.
fn signed_in(
    state: &State,
    key: &[u8],
    cache: Option<&super::verified_tokens::SignedInTokens>,
) -> Result<Option<Identity>, GatewayError> {
    let Some(signin) = &state.signin else {
        return Ok(None);
    };
    if !looks_like_jwt(key) {
        return Ok(None);
    }
    let token = std::str::from_utf8(key).map_err(|_| GatewayError::Unauthorized)?;
    let now = crate::signin::tokens::now_secs();
    let claims = match cache.and_then(|c| c.get(token)) {
        Some(claims) => {
            signin.verifier.check(&claims, now).map_err(refused)?;
            claims
        }
        None => {
            if !signin.verifier.knows(token) {
                return Ok(None);
            }
            let claims = signin.verifier.verify(token, now).map_err(refused)?;
            if let Some(c) = cache {
                c.remember(token, &claims);
            }
            claims
        }
    };
    let models = signin.settings.models_of(claims.team.as_deref());
    Ok(Some(Identity::SignedIn {
        email: claims.email,
        team: claims.team,
        groups: claims.groups,
        models,
    }))
}

fn refused(why: crate::signin::tokens::TokenError) -> GatewayError {
    use crate::signin::tokens::TokenError;
    tracing::info!(reason = %why, "sign-in token refused");
    match why {
        TokenError::Expired | TokenError::Revoked => GatewayError::SignInEnded,
        _ => GatewayError::Unauthorized,
    }
}

/// The identity a verified client certificate maps to, if any.
fn certificate_identity(config: &Config, names: Option<&[String]>) -> Option<Identity> {
    let rules = &config.tls.as_ref()?.client_identities;
    let found = rules.identify(names?)?;
    Some(Identity::Certificate {
        name: found.name,
        user: found.user,
        team: found.team,
    })
}

/// The credential the client presented: `x-api-key` first (Claude Code's `apiKeyHelper` sends
/// the same value in both), else a `Bearer` token.
fn presented_key(head: &RequestHead) -> Option<&[u8]> {
    if let Some(key) = head.header("x-api-key").filter(|k| !k.is_empty()) {
        return Some(key);
    }
    let auth = head.header("authorization")?;
    let scheme = auth.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| auth.get(7..).unwrap_or_default().trim_ascii())
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build, keys::hash_hex, parse_text, Overrides};
    use crate::http1::{parse_request, HeadLimits};
    use crate::state::Commands;

    fn head(auth: &str) -> RequestHead {
        let raw = format!("POST /v1/messages HTTP/1.1\r\nHost: h\r\n{auth}\r\n");
        parse_request(raw.as_bytes(), HeadLimits::default())
            .unwrap()
            .unwrap()
            .0
    }

    /// The session key's label is written in place, byte for byte what `label` builds.
    #[test]
    fn a_written_label_is_the_label() {
        let identities = [
            Identity::Anonymous,
            Identity::PassThrough {
                fingerprint: "0a1b2c".into(),
            },
            Identity::Jwt {
                names: CallerNames::new("jwt", "dev@example.com".into(), None, Some("core".into())),
            },
        ];
        for identity in identities {
            let mut out = b"prefix/".to_vec();
            identity.write_label(&mut out);
            assert_eq!(out, format!("prefix/{}", identity.label()).into_bytes());
        }
        assert_eq!(Identity::Anonymous.label(), "anonymous");
    }

    #[test]
    fn virtual_keys_gate_access() {
        let text = format!(
            "[[keys]]\nname = \"alice\"\nsha256 = \"{}\"\nteam = \"core\"\n",
            hash_hex("sk-alice")
        );
        let config = build(parse_text(&text).unwrap(), &Overrides::default()).unwrap();
        let state = State::build(&config, Commands::Skip).unwrap();
        let alice = authenticate(
            &head("x-api-key: sk-alice\r\n"),
            &config,
            &state,
            Connection::default(),
        )
        .unwrap()
        .identity;
        assert_eq!(alice.label(), "key:alice");
        assert_eq!(alice.team(), Some("core"));
        assert_eq!(
            authenticate(
                &head("Authorization: Bearer sk-alice\r\n"),
                &config,
                &state,
                Connection::default()
            )
            .unwrap()
            .identity,
            alice
        );
        for bad in [
            "x-api-key: sk-bob\r\n",
            "",
            "Authorization: Basic sk-alice\r\n",
            "x-api-key: \r\n",
        ] {
            assert!(
                matches!(
                    authenticate(&head(bad), &config, &state, Connection::default()),
                    Err(GatewayError::Unauthorized)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn aws_key_pairs_identify_and_leave_the_signature_to_check() {
        let text = "[[aws_keys]]\nname = \"ci\"\naccess_key_id = \"AKIDSLUICE\"\nsecret_access_key = \"s\"\nteam = \"build\"\n";
        let config = build(parse_text(text).unwrap(), &Overrides::default()).unwrap();
        let state = State::build(&config, Commands::Skip).unwrap();
        let signed = "Authorization: AWS4-HMAC-SHA256 Credential=AKIDSLUICE/20261122/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00\r\n";
        let auth = authenticate(&head(signed), &config, &state, Connection::default()).unwrap();
        assert_eq!(auth.identity.label(), "key:ci");
        assert!(auth.pending_sigv4.is_some());
        let unknown = signed.replace("AKIDSLUICE", "AKIDOTHER");
        assert!(matches!(
            authenticate(&head(&unknown), &config, &state, Connection::default()),
            Err(GatewayError::Unauthorized)
        ));
    }

    #[test]
    fn open_access_fingerprints_the_client_key() {
        let config = build(parse_text("").unwrap(), &Overrides::default()).unwrap();
        let state = State::build(&config, Commands::Skip).unwrap();
        let id = authenticate(
            &head("x-api-key: sk-test-123\r\n"),
            &config,
            &state,
            Connection::default(),
        )
        .unwrap()
        .identity;
        assert!(id.label().starts_with("passthrough:"));
        assert!(!id.label().contains("sk-test"));
        assert_eq!(
            authenticate(&head(""), &config, &state, Connection::default())
                .unwrap()
                .identity,
            Identity::Anonymous
        );
    }
}
