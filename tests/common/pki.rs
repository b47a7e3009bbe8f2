//! A throwaway PKI for HTTPS tests: a root CA, an intermediate, server certificates with chosen
//! names and lifetimes, client certificates with chosen names, and the rustls client settings
//! that trust the root.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};

/// A certificate (chain) file and its key file.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The leaf's not-after, in Unix seconds.
    pub not_after: i64,
}

/// One CA and its files, in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The root certificate (PEM), to trust.
    pub ca_file: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    intermediate: rcgen::Certificate,
    intermediate_key: KeyPair,
    next: std::cell::Cell<u32>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params(&format!("{name} root"))
            .self_signed(&ca_key)
            .unwrap();
        let intermediate_key = KeyPair::generate().unwrap();
        let intermediate = ca_params(&format!("{name} intermediate"))
            .signed_by(&intermediate_key, &ca, &ca_key)
            .unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Pki {
            dir,
            ca_file,
            ca,
            ca_key,
            intermediate,
            intermediate_key,
            next: std::cell::Cell::new(0),
        }
    }

    fn path(&self, stem: &str) -> PathBuf {
        let n = self.next.get();
        self.next.set(n + 1);
        self.dir.path().join(format!("{stem}-{n}.pem"))
    }

    /// A server certificate for `names`, valid from a day ago for `days` more days, signed by
    /// the intermediate; its file holds the leaf then the intermediate.
    pub fn server(&self, names: &[&str], days: i64) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(days);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.write_leaf("server", params, true)
    }

    /// The same, with the chain written in the wrong order (intermediate first).
    pub fn server_chain_reversed(&self, names: &[&str]) -> Issued {
        let issued = self.server(names, 30);
        let text = std::fs::read_to_string(&issued.cert).unwrap();
        let (leaf, intermediate) =
            text.split_at(text.find("-----END CERTIFICATE-----").unwrap() + 26);
        std::fs::write(
            &issued.cert,
            format!("{}\n{}", intermediate.trim(), leaf.trim()),
        )
        .unwrap();
        issued
    }

    /// A client certificate presenting `email` (SAN) and `cn` (subject CN).
    pub fn client(&self, email: &str, cn: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .subject_alt_names
            .push(SanType::Rfc822Name(email.try_into().unwrap()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.write_leaf("client", params, true)
    }

    fn write_leaf(&self, stem: &str, params: CertificateParams, with_chain: bool) -> Issued {
        let not_after = params.not_after.unix_timestamp();
        let key = KeyPair::generate().unwrap();
        let leaf = params
            .signed_by(&key, &self.intermediate, &self.intermediate_key)
            .unwrap();
        let cert_path = self.path(&format!("{stem}-cert"));
        let key_path = self.path(&format!("{stem}-key"));
        let chain = if with_chain {
            format!("{}{}", leaf.pem(), self.intermediate.pem())
        } else {
            leaf.pem()
        };
        std::fs::write(&cert_path, chain).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Issued {
            cert: cert_path,
            key: key_path,
            not_after,
        }
    }

    /// The root's DER, for a client's trust store.
    pub fn root_der(&self) -> rustls::pki_types::CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// Signs a certificate for `names` directly with the root (no intermediate).
    pub fn server_from_root(&self, names: &[&str]) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let not_after = params.not_after.unix_timestamp();
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let cert_path = self.path("root-signed-cert");
        let key_path = self.path("root-signed-key");
        std::fs::write(&cert_path, leaf.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Issued {
            cert: cert_path,
            key: key_path,
            not_after,
        }
    }

    /// rustls client settings trusting this root (TLS 1.3 and 1.2, or only `versions`),
    /// offering ALPN `http/1.1`, with an optional client certificate.
    pub fn client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        client_cert: Option<&Issued>,
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.root_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match client_cert {
            Some(issued) => {
                let (chain, key) = load(issued);
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Reads an issued certificate chain and key.
pub fn load(
    issued: &Issued,
) -> (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    use rustls::pki_types::pem::PemObject;
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(&issued.cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&issued.key).unwrap();
    (chain, key)
}

/// Copies `from`'s files over `to`'s (as a renewal leaves them: new content, same paths),
/// replacing each file atomically.
pub fn renew_in_place(from: &Issued, to: &Issued) {
    for (src, dst) in [(&from.cert, &to.cert), (&from.key, &to.key)] {
        let tmp = dst.with_extension("new");
        std::fs::copy(src, &tmp).unwrap();
        std::fs::rename(&tmp, dst).unwrap();
    }
}

/// The TOML of an HTTPS listener on a free loopback port serving `cert`.
pub fn tls_config(cert: &Issued, extra: &str) -> String {
    format!(
        "[server]\nlisten_tls = \"127.0.0.1:0\"\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}\n",
        cert.cert.display(),
        cert.key.display()
    )
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
