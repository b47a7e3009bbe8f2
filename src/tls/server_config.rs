//! The rustls server configuration of sluice's HTTPS listener: TLS 1.3 and 1.2 (ring), ALPN
//! `http/1.1`, one certificate per name chosen by SNI (the first one is the default), session
//! resumption by tickets and by id, and optional client certificates.
//!
//! Ticket keys and the session cache belong to the process, not to one configuration: a reload
//! that renews the certificates keeps them, so clients resume across it.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{
    ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache,
    StoresServerSessions, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use super::certificates::ServedCertificate;
use super::ClientAuth;

/// Sessions kept for resumption by id (TLS 1.2 clients without tickets), per process.
const SESSION_CACHE_ENTRIES: usize = 8192;

/// The crypto provider sluice's TLS uses everywhere (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a server configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ServerConfigError {
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA: {0}")]
    ClientCa(#[from] rustls::server::VerifierBuilderError),
}

/// Builds the server configuration for `certificates` (the first is the default) and, when
/// client certificates are asked for, the CAs that issue them.
pub fn build(
    certificates: &[ServedCertificate],
    client_auth: ClientAuth,
    client_roots: Option<RootCertStore>,
) -> Result<Arc<ServerConfig>, ServerConfigError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match (client_auth, client_roots) {
        (ClientAuth::Off, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(roots)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(verifier.build()?)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(SniResolver::new(certificates)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = ticketer()?;
    config.session_storage = session_cache();
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

fn ticketer() -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
    static TICKETER: OnceLock<Arc<dyn ProducesTickets>> = OnceLock::new();
    if let Some(t) = TICKETER.get() {
        return Ok(Arc::clone(t));
    }
    let fresh = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::clone(TICKETER.get_or_init(|| fresh)))
}

fn session_cache() -> Arc<dyn StoresServerSessions> {
    static CACHE: OnceLock<Arc<dyn StoresServerSessions>> = OnceLock::new();
    Arc::clone(CACHE.get_or_init(|| ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES)))
}

/// Picks the certificate for the name the client asked for (SNI): an exact name, then a
/// wildcard one label up, else the default (the first certificate).
#[derive(Debug)]
struct SniResolver {
    by_name: Vec<(String, Arc<CertifiedKey>)>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn new(certificates: &[ServedCertificate]) -> Self {
        let by_name = certificates
            .iter()
            .flat_map(|c| {
                c.names
                    .iter()
                    .map(move |n| (n.clone(), Arc::clone(&c.certified)))
            })
            .collect();
        Self {
            by_name,
            default: certificates.first().map(|c| Arc::clone(&c.certified)),
        }
    }

    fn for_name(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        let exact = self.by_name.iter().find(|(n, _)| *n == name);
        let wildcard = || {
            let (_, parent) = name.split_once('.')?;
            let pattern = format!("*.{parent}");
            self.by_name.iter().find(|(n, _)| *n == pattern)
        };
        exact.or_else(wildcard).map(|(_, key)| key)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello.server_name().and_then(|name| self.for_name(name));
        chosen.or(self.default.as_ref()).map(Arc::clone)
    }
}
