//! HTTPS at the edge: sluice terminates TLS itself, so client credentials never cross the
//! network in clear text and no second proxy adds its hop.
//!
//! - [`certificates`]: PEM chain and key → a checked certificate, its names and expiry.
//! - [`server_config`]: rustls settings (versions, ALPN, SNI, resumption, client certificates).
//! - [`accept`]: the handshake under a deadline and a per-worker bound; plain HTTP sent to the
//!   HTTPS port gets a clear 400.
//! - [`stream`]: the encrypted connection the request path reads and writes.
//! - [`client_identity`]: a verified client certificate → user and team.
//!
//! The configuration ([`EdgeTls`]) is rebuilt by a reload, which is how renewed certificate
//! files are picked up: new handshakes use the new one, handshakes in progress finish on theirs.

pub mod accept;
pub mod certificates;
pub mod client_identity;
pub mod server_config;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

pub use stream::TlsStream;

/// Whether clients are asked for a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Not asked.
    Off,
    /// Asked; a client without one is still served (by its key). One that presents a
    /// certificate the CA did not issue is refused in the handshake.
    Optional,
    /// The handshake fails without a certificate the CA issued.
    Required,
}

/// The HTTPS listener's settings, built from `[server.tls]`.
#[derive(Clone, Debug)]
pub struct EdgeTls {
    pub server_config: Arc<rustls::ServerConfig>,
    /// The served certificates; the first is the default.
    pub certificates: Vec<certificates::ServedCertificate>,
    pub client_auth: ClientAuth,
    pub handshake_timeout: Duration,
    pub max_handshakes_per_worker: usize,
}
