//! [`UpstreamSpec`] → [`Upstream`]: the credential read (inline or from its variable), a
//! Bedrock upstream's AWS credentials loaded (which may run `credential_process`), a Vertex
//! upstream's token source (its service-account key file read), and for https the TLS client
//! with any `ca_file` roots. Built at start, and on a reload only for an upstream whose spec
//! changed.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::config::upstreams::{ProviderSpec, SecretSource, TokenSourceSpec, UpstreamSpec};
use crate::config::{invalid, ConfigError};
use crate::provider::aws_credentials::{AwsCredentialCell, CredentialSource};
use crate::provider::connect::tls_connector;
use crate::provider::google_auth::{GoogleTokenCell, ServiceAccount, TokenSource};
use crate::provider::upstream::{Credential, Provider, TlsClient, Upstream};

/// Whether building may run the commands a config names (`aws_credential_process`); a check
/// reads every file but runs nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commands {
    Run,
    Skip,
}

/// Builds upstream `spec` (`path` names it in errors: `upstreams[1]`).
pub fn build(spec: &UpstreamSpec, path: &str, commands: Commands) -> Result<Upstream, ConfigError> {
    let secret = spec.key.as_ref().and_then(SecretSource::lookup);
    let credential = secret.map(|s| Credential::new(spec.auth_header, s));
    let provider = provider(spec, path, credential.is_some(), commands)?;
    let mut upstream = Upstream::new(&spec.name, spec.endpoint.clone(), credential);
    upstream.provider = provider;
    upstream.health_probe = spec.health_probe.clone();
    upstream.field_policy = spec.field_policy.clone();
    if upstream.tls {
        upstream.tls_client = Some(tls_client(spec.ca_file.as_deref(), path)?);
    }
    Ok(upstream)
}

fn provider(
    spec: &UpstreamSpec,
    path: &str,
    has_key: bool,
    commands: Commands,
) -> Result<Provider, ConfigError> {
    // A cloud upstream whose only credential is a key named by an unset variable has none.
    let key_required = || match &spec.key {
        Some(SecretSource::Environment(var)) if !has_key => Err(invalid(
            format!("{path}.api_key_env"),
            format!("${var} is not set"),
        )),
        _ => Ok(()),
    };
    Ok(match &spec.provider {
        ProviderSpec::Anthropic => Provider::Anthropic,
        ProviderSpec::Bedrock { region, aws, .. } => {
            let aws = match aws {
                Some(CredentialSource::Process(_)) if commands == Commands::Skip => None,
                Some(source) => Some(
                    AwsCredentialCell::load(source.clone())
                        .map_err(|e| invalid(path, e.to_string()))?,
                ),
                None => {
                    key_required()?;
                    None
                }
            };
            Provider::Bedrock {
                region: region.clone(),
                aws,
            }
        }
        ProviderSpec::Vertex {
            project,
            region,
            token,
        } => {
            let source = match token {
                Some(TokenSourceSpec::ServiceAccountFile(file)) => {
                    let account = ServiceAccount::from_file(file).map_err(|e| {
                        invalid(format!("{path}.gcp_service_account_file"), e.to_string())
                    })?;
                    Some(TokenSource::ServiceAccount(Arc::new(account)))
                }
                Some(TokenSourceSpec::Command(command)) => {
                    Some(TokenSource::Command(command.clone()))
                }
                None => {
                    key_required()?;
                    None
                }
            };
            Provider::Vertex {
                project: project.clone(),
                region: region.clone(),
                token: source.map(GoogleTokenCell::new),
            }
        }
    })
}

/// The TLS client of an https upstream: the webpki roots plus those of `ca_file`.
fn tls_client(ca_file: Option<&str>, path: &str) -> Result<TlsClient, ConfigError> {
    let roots = match ca_file {
        Some(file) => CertificateDer::pem_file_iter(file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                invalid(
                    format!("{path}.ca_file"),
                    format!("cannot read `{file}`: {e}"),
                )
            })?,
        None => Vec::new(),
    };
    let client =
        tls_connector(&roots).map_err(|e| invalid(format!("{path}.ca_file"), e.to_string()))?;
    Ok(TlsClient(client))
}
