//! `[server.tls]` → [`EdgeTls`]: every certificate loaded and checked (key, chain order,
//! validity), the client CA read, the identities parsed. An error names the field at fault.

use std::time::{Duration, SystemTime};

use rustls::RootCertStore;

use super::file::TlsFile;
use super::{duration, invalid, ConfigError};
use crate::tls::certificates::{self, ServedCertificate};
use crate::tls::client_identity::{ClientIdentities, ClientIdentityRule, NamePattern};
use crate::tls::{server_config, ClientAuth, EdgeTls};

const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_HANDSHAKES: usize = 1024;

/// Builds the HTTPS settings, checking the certificates at `now`.
pub fn build(file: &TlsFile, now: SystemTime) -> Result<EdgeTls, ConfigError> {
    let provider = server_config::provider();
    let mut served = vec![
        certificates::load(&file.cert_file, &file.key_file, &provider, now)
            .map_err(|e| invalid("server.tls.cert_file", e.to_string()))?,
    ];
    for (i, extra) in file.certificates.iter().enumerate() {
        let loaded = certificates::load(&extra.cert_file, &extra.key_file, &provider, now)
            .map_err(|e| invalid(format!("server.tls.certificates[{i}]"), e.to_string()))?;
        served.push(loaded);
    }
    let client_auth = match file.client_auth.as_deref().unwrap_or("off") {
        "off" => ClientAuth::Off,
        "optional" => ClientAuth::Optional,
        "required" => ClientAuth::Required,
        other => {
            return Err(invalid(
                "server.tls.client_auth",
                format!("`{other}`: expected `off`, `optional` or `required`"),
            ))
        }
    };
    let client_roots = client_roots(file, client_auth)?;
    let client_identities = identities(file, client_auth)?;
    let server_config = server_config::build(&served, client_auth, client_roots)
        .map_err(|e| invalid("server.tls", e.to_string()))?;
    let handshake_timeout = match &file.handshake_timeout {
        Some(text) => duration("server.tls.handshake_timeout", text)?,
        None => DEFAULT_HANDSHAKE_TIMEOUT,
    };
    Ok(EdgeTls {
        server_config,
        certificates: served,
        client_auth,
        client_identities,
        handshake_timeout,
        max_handshakes_per_worker: file
            .max_handshakes_per_worker
            .unwrap_or(DEFAULT_MAX_HANDSHAKES)
            .max(1),
    })
}

fn client_roots(file: &TlsFile, auth: ClientAuth) -> Result<Option<RootCertStore>, ConfigError> {
    let path = "server.tls.client_ca_file";
    match (&file.client_ca_file, auth) {
        (None, ClientAuth::Off) => Ok(None),
        (None, _) => Err(invalid(
            path,
            "client_auth asks for client certificates: name the CA that issues them",
        )),
        (Some(_), ClientAuth::Off) => Err(invalid(
            path,
            "set client_auth = \"optional\" or \"required\" to use a client CA",
        )),
        (Some(ca), _) => {
            let chain = certificates::read_chain(ca).map_err(|e| invalid(path, e.to_string()))?;
            let mut roots = RootCertStore::empty();
            for cert in chain {
                roots
                    .add(cert)
                    .map_err(|e| invalid(path, format!("{ca}: {e}")))?;
            }
            Ok(Some(roots))
        }
    }
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

/// The certificates that expire within [`certificates::EXPIRY_WARNING`] of `now`.
pub fn expiring_soon(tls: &EdgeTls, now: SystemTime) -> Vec<&ServedCertificate> {
    tls.certificates
        .iter()
        .filter(|c| c.remaining(now) < certificates::EXPIRY_WARNING)
        .collect()
}
