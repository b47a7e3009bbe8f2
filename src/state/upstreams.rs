//! [`UpstreamSpec`] → [`Upstream`]: the credential read (inline or from its variable), a
//! Bedrock upstream's AWS credentials loaded (which may run `credential_process`), a Vertex
//! upstream's token source (its service-account key file read), and for https the TLS client
//! with any `ca_file` roots. Built at start, and on a reload only for an upstream whose spec
//! changed.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::config::upstreams::{
    ProviderSpec, SecretSource, TokenSourceSpec, UpstreamSpec, FOUNDRY_SCOPE,
};
use crate::config::{invalid, ConfigError};
use crate::provider::aws_credentials::{AwsCredentialCell, CredentialSource};
use crate::provider::connect::tls_connector;
use crate::provider::oauth::{ClientCredentials, OAuthTokenCell, ServiceAccount, TokenSource};
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
    let aws = |source: &Option<CredentialSource>| -> Result<_, ConfigError> {
        Ok(match source {
            Some(CredentialSource::Process(_)) if commands == Commands::Skip => None,
            Some(source) => Some(
                AwsCredentialCell::load(source.clone())
                    .map_err(|e| invalid(path, e.to_string()))?,
            ),
            None => {
                key_required()?;
                None
            }
        })
    };
    let google = |token: &Option<TokenSourceSpec>| -> Result<_, ConfigError> {
        let source = match token {
            Some(TokenSourceSpec::ServiceAccountFile(file)) => {
                let account = ServiceAccount::from_file(file).map_err(|e| {
                    invalid(format!("{path}.gcp_service_account_file"), e.to_string())
                })?;
                Some(TokenSource::ServiceAccount(Arc::new(account)))
            }
            Some(TokenSourceSpec::Command(command)) => Some(TokenSource::Command(command.clone())),
            None => {
                key_required()?;
                None
            }
        };
        Ok(source.map(OAuthTokenCell::new))
    };
    Ok(match &spec.provider {
        ProviderSpec::Anthropic => Provider::Anthropic,
        ProviderSpec::Bedrock {
            region,
            aws: source,
            ..
        } => Provider::Bedrock {
            region: region.clone(),
            aws: aws(source)?,
        },
        ProviderSpec::Vertex {
            project,
            region,
            token,
        } => Provider::Vertex {
            project: project.clone(),
            region: region.clone(),
            token: google(token)?,
        },
        ProviderSpec::Foundry { entra } => Provider::Foundry {
            token: match entra {
                Some(spec) => Some(OAuthTokenCell::new(TokenSource::ClientCredentials(
                    Arc::new(ClientCredentials {
                        token_url: spec.token_url.clone(),
                        client_id: spec.client_id.clone(),
                        client_secret: SecretSource::Environment(spec.secret_env.clone())
                            .resolve(&format!("{path}.entra_client_secret_env"))?,
                        scope: FOUNDRY_SCOPE.to_string(),
                    }),
                ))),
                None => {
                    key_required()?;
                    None
                }
            },
        },
        ProviderSpec::Mantle {
            region,
            aws: source,
        } => Provider::Mantle {
            region: region.clone(),
            aws: aws(source)?,
        },
        ProviderSpec::AnthropicAws {
            region,
            workspace_id,
            aws: source,
        } => Provider::AnthropicAws {
            region: region.clone(),
            workspace_id: workspace_id.clone(),
            aws: aws(source)?,
        },
        ProviderSpec::AnthropicGoogleCloud { token, .. } => Provider::AnthropicGoogleCloud {
            token: google(token)?,
        },
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
