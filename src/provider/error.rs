//! Why the provider layer could not do something off the request path: an upstream URL that is
//! not one, a side request (token endpoint, health probe) that failed, credentials that could not
//! be had. Each is logged or shown by `check-config` with its message; none reaches a client.

use std::process::ExitStatus;

/// An upstream base URL sluice cannot use.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("`{0}` must start with http:// or https://")]
    Scheme(String),
    #[error("`{0}` is not a base URL (host, optional port and path)")]
    NotBase(String),
    #[error("`{0}` has an invalid host or port")]
    HostPort(String),
}

/// A side request (token endpoint, health probe) that got no response.
#[derive(Debug, thiserror::Error)]
pub enum SideRequestError {
    #[error("{0}")]
    Url(#[from] UrlError),
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("no address for {0}")]
    NoAddress(String),
    #[error("connect {addr}: {source}")]
    Connect {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("socket: {0}")]
    Socket(std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS: {0} is not a server name")]
    ServerName(String),
    #[error("send: {0}")]
    Send(std::io::Error),
    #[error("receive: {0}")]
    Receive(std::io::Error),
    #[error("connection closed before a response")]
    Closed,
    #[error("malformed response: {0}")]
    Malformed(#[from] crate::http1::Http1Error),
}

/// Credentials that could not be had (at config load, or refreshing on a side thread).
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a service-account key: {why}")]
    NotServiceAccount { path: String, why: String },
    #[error("{path}: private_key is not an RSA PEM key: {why}")]
    PrivateKey { path: String, why: String },
    #[error("RS256 signing failed: {0}")]
    Signing(String),
    #[error("cannot run {what}: {source}")]
    Spawn {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{what} failed ({status})")]
    CommandFailed {
        what: &'static str,
        status: ExitStatus,
    },
    #[error("the token command printed nothing")]
    EmptyToken,
    #[error("credential_process printed no credentials JSON: {0}")]
    ProcessOutput(String),
    #[error("credential_process Expiration: {0}")]
    Expiration(String),
    #[error("token endpoint: {0}")]
    TokenRequest(#[from] SideRequestError),
    #[error("token endpoint answered {status}: {body}")]
    TokenStatus { status: u16, body: String },
    #[error("token endpoint: {0}")]
    TokenResponse(String),
    #[error("no AWS credentials: set aws_access_key_id/aws_secret_access_key, aws_profile, aws_credential_process, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")]
    NoAwsCredentials,
    #[error("profile `{profile}` in {path} has no aws_access_key_id/aws_secret_access_key")]
    ProfileIncomplete { profile: String, path: String },
}
