//! The certificates sluice serves: a PEM chain and its key, loaded and checked the way an
//! operator would want `check-config` to check them — the key matches the leaf, each
//! certificate is signed by the next (the chain is in order), none has expired — and read for
//! the names the leaf is valid for (SNI) and when it expires (`/metrics`, the 14-day warning).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use thiserror::Error;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// How close to its expiry a certificate is worth a warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// Why a certificate or key cannot be served.
#[derive(Debug, Error)]
pub enum CertificateError {
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: no PEM certificate in it")]
    NoCertificate { file: String },
    #[error("{file}: no PEM private key in it (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { file: String },
    #[error("{file}: certificate {position} cannot be parsed: {why}")]
    Parse {
        file: String,
        position: usize,
        why: String,
    },
    #[error("{file}: the private key is not usable: {why}")]
    Key { file: String, why: String },
    #[error("{key_file} is not the key of {cert_file}'s first certificate")]
    KeyMismatch { cert_file: String, key_file: String },
    #[error("{file}: certificate {position} is not signed by certificate {next} (the chain must run leaf first, each certificate followed by its issuer)")]
    ChainOrder {
        file: String,
        position: usize,
        next: usize,
    },
    #[error("{file}: certificate {position} expired at {at}")]
    Expired {
        file: String,
        position: usize,
        at: String,
    },
    #[error("{file}: certificate {position} is not valid before {at}")]
    NotYetValid {
        file: String,
        position: usize,
        at: String,
    },
}

/// A chain and key ready to serve, with what the leaf says about itself.
#[derive(Clone, Debug)]
pub struct ServedCertificate {
    pub certified: Arc<CertifiedKey>,
    /// The DNS names the leaf is valid for (its SANs, or its CN when it has none), lowercase;
    /// a wildcard stays as written (`*.example.com`).
    pub names: Vec<String>,
    /// When the first certificate of the chain to expire does.
    pub not_after: SystemTime,
    pub cert_file: String,
}

impl ServedCertificate {
    /// How long until it expires (zero once expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or_default()
    }

    /// The name it is known by in logs and metrics: its first name, or its file.
    pub fn label(&self) -> &str {
        self.names.first().map_or(&self.cert_file, String::as_str)
    }
}

/// Loads `cert_file` (leaf first, then intermediates) and `key_file`, and checks them at `now`.
pub fn load(
    cert_file: &str,
    key_file: &str,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<ServedCertificate, CertificateError> {
    let chain = read_chain(cert_file)?;
    let parsed = parse_all(cert_file, &chain)?;
    check_order(cert_file, &parsed)?;
    let not_after = check_validity(cert_file, &parsed, now)?;
    let names = parsed.first().map(dns_names).unwrap_or_default();
    let key = read_key(key_file)?;
    let signing =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| CertificateError::Key {
                file: key_file.into(),
                why: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain.clone(), signing);
    let mismatch = || CertificateError::KeyMismatch {
        cert_file: cert_file.into(),
        key_file: key_file.into(),
    };
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => return Err(mismatch()),
    }
    Ok(ServedCertificate {
        certified: Arc::new(certified),
        names,
        not_after,
        cert_file: cert_file.into(),
    })
}

/// Reads every PEM certificate of a file, in order.
pub fn read_chain(file: &str) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    let bytes = read(file)?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|_| CertificateError::NoCertificate { file: file.into() })?;
    if chain.is_empty() {
        return Err(CertificateError::NoCertificate { file: file.into() });
    }
    Ok(chain)
}

fn read_key(file: &str) -> Result<PrivateKeyDer<'static>, CertificateError> {
    let bytes = read(file)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| CertificateError::NoKey { file: file.into() })
}

fn read(file: &str) -> Result<Vec<u8>, CertificateError> {
    std::fs::read(file).map_err(|source| CertificateError::Read {
        file: file.into(),
        source,
    })
}

fn parse_all<'a>(
    file: &str,
    chain: &'a [CertificateDer<'static>],
) -> Result<Vec<X509Certificate<'a>>, CertificateError> {
    chain
        .iter()
        .enumerate()
        .map(|(i, der)| {
            x509_parser::parse_x509_certificate(der)
                .map(|(_, cert)| cert)
                .map_err(|e| CertificateError::Parse {
                    file: file.into(),
                    position: i + 1,
                    why: e.to_string(),
                })
        })
        .collect()
}

/// Each certificate must be issued and signed by the one after it.
fn check_order(file: &str, parsed: &[X509Certificate<'_>]) -> Result<(), CertificateError> {
    for (i, pair) in parsed.windows(2).enumerate() {
        let [cert, issuer] = pair else { continue };
        let named = cert.issuer().as_raw() == issuer.subject().as_raw();
        if !named || cert.verify_signature(Some(issuer.public_key())).is_err() {
            return Err(CertificateError::ChainOrder {
                file: file.into(),
                position: i + 1,
                next: i + 2,
            });
        }
    }
    Ok(())
}

/// Every certificate must be valid at `now`; returns the earliest expiry.
fn check_validity(
    file: &str,
    parsed: &[X509Certificate<'_>],
    now: SystemTime,
) -> Result<SystemTime, CertificateError> {
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut earliest = i64::MAX;
    for (i, cert) in parsed.iter().enumerate() {
        let validity = cert.validity();
        let (from, until) = (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        );
        if until < now_secs {
            return Err(CertificateError::Expired {
                file: file.into(),
                position: i + 1,
                at: validity.not_after.to_string(),
            });
        }
        if from > now_secs {
            return Err(CertificateError::NotYetValid {
                file: file.into(),
                position: i + 1,
                at: validity.not_before.to_string(),
            });
        }
        earliest = earliest.min(until);
    }
    Ok(UNIX_EPOCH + Duration::from_secs(earliest.max(0) as u64))
}

/// The DNS names a server certificate is valid for: its DNS SANs, or its CN without any.
fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let from_san = alt_names(cert, |name| match name {
        GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
        _ => None,
    });
    if !from_san.is_empty() {
        return from_san;
    }
    common_names(cert)
        .into_iter()
        .map(|cn| cn.to_ascii_lowercase())
        .collect()
}

/// The subject's common names.
pub fn common_names(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect()
}

/// The names a client certificate presents: email, DNS and URI SANs, then the subject's CN.
pub fn client_names(der: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names = alt_names(&cert, |name| match name {
        GeneralName::RFC822Name(s) | GeneralName::DNSName(s) | GeneralName::URI(s) => {
            Some((*s).to_string())
        }
        _ => None,
    });
    names.extend(common_names(&cert));
    names
}

/// The subject alternative names `keep` selects (none when the extension is absent or bad).
fn alt_names(
    cert: &X509Certificate<'_>,
    keep: impl Fn(&GeneralName<'_>) -> Option<String>,
) -> Vec<String> {
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san.value.general_names.iter().filter_map(keep).collect(),
        _ => Vec::new(),
    }
}
