//! `[server.tls]` → [`TlsSettings`]: which certificate files to serve, whether clients are
//! asked for certificates and who a certificate's name is. The files are read and checked
//! when [`crate::state`] loads them (at start, on every reload, and by `check-config`).

use std::time::Duration;

use super::file::TlsFile;
use super::server::duration;
use super::{invalid, ConfigError};
use crate::tls::client_identity::{ClientIdentities, ClientIdentityRule, NamePattern};
use crate::tls::ClientAuth;

const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_HANDSHAKES: usize = 1024;

/// The HTTPS listener's settings.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// (certificate chain file, key file), the default first; each has its config path.
    pub certificates: Vec<CertificateFiles>,
    pub client_auth: ClientAuth,
    /// The CAs that issue client certificates (set unless `client_auth` is off).
    pub client_ca_file: Option<String>,
    pub client_identities: ClientIdentities,
    pub handshake_timeout: Duration,
    pub max_handshakes_per_worker: usize,
}

/// One served certificate's files, and where the config names them (for errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    pub path: String,
    pub cert_file: String,
    pub key_file: String,
}

/// Checks `[server.tls]`: a client CA exactly when client certificates are asked for,
/// identity rules that name something.
pub fn build(file: &TlsFile) -> Result<TlsSettings, ConfigError> {
    let mut certificates = vec![CertificateFiles {
        path: "server.tls.cert_file".into(),
        cert_file: file.cert_file.clone(),
        key_file: file.key_file.clone(),
    }];
    for (i, extra) in file.certificates.iter().enumerate() {
        certificates.push(CertificateFiles {
            path: format!("server.tls.certificates[{i}]"),
            cert_file: extra.cert_file.clone(),
            key_file: extra.key_file.clone(),
        });
    }
    let client_auth = file.client_auth.unwrap_or(ClientAuth::Off);
    let ca_path = "server.tls.client_ca_file";
    match (&file.client_ca_file, client_auth) {
        (None, ClientAuth::Optional | ClientAuth::Required) => {
            return Err(invalid(
                ca_path,
                "client_auth asks for client certificates: name the CA that issues them",
            ))
        }
        (Some(_), ClientAuth::Off) => {
            return Err(invalid(
                ca_path,
                "set client_auth = \"optional\" or \"required\" to use a client CA",
            ))
        }
        _ => {}
    }
    let handshake_timeout = match &file.handshake_timeout {
        Some(text) => duration("server.tls.handshake_timeout", text)?,
        None => DEFAULT_HANDSHAKE_TIMEOUT,
    };
    Ok(TlsSettings {
        certificates,
        client_auth,
        client_ca_file: file.client_ca_file.clone(),
        client_identities: identities(file, client_auth)?,
        handshake_timeout,
        max_handshakes_per_worker: file
            .max_handshakes_per_worker
            .unwrap_or(DEFAULT_MAX_HANDSHAKES)
            .max(1),
    })
}

fn identities(file: &TlsFile, auth: ClientAuth) -> Result<ClientIdentities, ConfigError> {
    if !file.client_identities.is_empty() && auth == ClientAuth::Off {
        return Err(invalid(
            "server.tls.client_identities",
            "client certificates are not asked for (client_auth = \"off\")",
        ));
    }
    let mut rules = Vec::new();
    for (i, entry) in file.client_identities.iter().enumerate() {
        let name = entry.name.trim();
        if name.is_empty() || name == "*" {
            return Err(invalid(
                format!("server.tls.client_identities[{i}].name"),
                "name a certificate name, or a suffix such as `*@example.com`",
            ));
        }
        rules.push(ClientIdentityRule {
            pattern: NamePattern::parse(name),
            user: entry.user.clone(),
            team: entry.team.clone(),
        });
    }
    Ok(ClientIdentities { rules })
}
