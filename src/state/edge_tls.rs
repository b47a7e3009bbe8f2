//! [`TlsSettings`] → [`EdgeTls`]: every certificate loaded and checked (key, chain order,
//! validity) and the client CA read. Runs at start, on every reload (renewed files are what a
//! reload picks up) and under `check-config`; an error names the field at fault.

use std::time::SystemTime;

use rustls::RootCertStore;

use crate::config::tls::TlsSettings;
use crate::config::{invalid, ConfigError};
use crate::tls::certificates::{self, ServedCertificate};
use crate::tls::{server_config, ClientAuth, EdgeTls};

/// Loads the HTTPS listener's certificates, checking them at `now`.
pub fn load(settings: &TlsSettings, now: SystemTime) -> Result<EdgeTls, ConfigError> {
    let provider = server_config::provider();
    let mut served = Vec::new();
    for files in &settings.certificates {
        let loaded = certificates::load(&files.cert_file, &files.key_file, &provider, now)
            .map_err(|e| invalid(files.path.clone(), e.to_string()))?;
        served.push(loaded);
    }
    let client_roots = client_roots(settings)?;
    let server_config = server_config::build(&served, settings.client_auth, client_roots)
        .map_err(|e| invalid("server.tls", e.to_string()))?;
    Ok(EdgeTls {
        server_config,
        certificates: served,
        client_auth: settings.client_auth,
        handshake_timeout: settings.handshake_timeout,
        max_handshakes_per_worker: settings.max_handshakes_per_worker,
    })
}

fn client_roots(settings: &TlsSettings) -> Result<Option<RootCertStore>, ConfigError> {
    let path = "server.tls.client_ca_file";
    match (&settings.client_ca_file, settings.client_auth) {
        (Some(ca), ClientAuth::Optional | ClientAuth::Required) => {
            let chain = certificates::read_chain(ca).map_err(|e| invalid(path, e.to_string()))?;
            let mut roots = RootCertStore::empty();
            for cert in chain {
                roots
                    .add(cert)
                    .map_err(|e| invalid(path, format!("{ca}: {e}")))?;
            }
            Ok(Some(roots))
        }
        _ => Ok(None),
    }
}

/// The certificates that expire within [`certificates::EXPIRY_WARNING`] of `now`.
pub fn expiring_soon(tls: &EdgeTls, now: SystemTime) -> Vec<&ServedCertificate> {
    tls.certificates
        .iter()
        .filter(|c| c.remaining(now) < certificates::EXPIRY_WARNING)
        .collect()
}
