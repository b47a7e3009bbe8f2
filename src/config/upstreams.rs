//! `[[upstreams]]` → [`UpstreamSpec`]: where each upstream is, what it speaks and where its
//! credentials come from — described, never fetched. Reading a CA file or a service-account
//! key, running `credential_process` or a token command and reading the environment happen
//! when [`crate::state`] builds the upstream, and again only when its spec changes.

use std::collections::HashSet;

use super::file::{FileConfig, UpstreamFile};
use super::server::duration;
use super::{invalid, ConfigError};
use crate::format::field_policy::{Egress, FieldPolicy, PolicyChanges};
use crate::provider::aws_credentials::{AwsCredentialsConfig, CredentialSource};
use crate::provider::health::Probe;
use crate::provider::upstream::{vertex_url, AuthHeader, Endpoint};

/// One configured upstream.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamSpec {
    pub name: String,
    pub endpoint: Endpoint,
    /// The credential sluice presents there (`api_key` / `api_key_env`), if any.
    pub key: Option<SecretSource>,
    pub auth_header: AuthHeader,
    pub provider: ProviderSpec,
    pub health_probe: Option<Probe>,
    /// Which request fields and betas reach it when sluice translates a request for it.
    pub field_policy: FieldPolicy,
    /// Extra PEM roots to trust (https only).
    pub ca_file: Option<String>,
    /// The models it serves (`None`: all).
    pub models: Option<Vec<super::routes::ModelPattern>>,
}

impl UpstreamSpec {
    /// Whether it serves `model` (as sent, or as its Anthropic id).
    pub fn serves(&self, model: &str) -> bool {
        let Some(list) = &self.models else {
            return true;
        };
        let id = crate::format::anthropic_model_id(model);
        list.iter().any(|p| p.matches(model) || p.matches(&id))
    }
}

/// What an upstream speaks, and (for the clouds) where its signing credentials come from.
#[derive(Clone, Debug, PartialEq)]
pub enum ProviderSpec {
    /// The Messages API: the Anthropic API, LiteLLM, any compatible gateway.
    Anthropic,
    /// AWS Bedrock: SigV4 with credentials from `aws`, or the upstream's key (a Bedrock API
    /// key) when `aws` is `None`.
    Bedrock {
        region: String,
        aws: Option<CredentialSource>,
        /// The inference-profile prefix put before `anthropic.` model ids sluice derives
        /// (`us`, `eu`, …; `None`: the bare id). Default: the region's, as Claude Code picks it.
        profile: Option<String>,
    },
    /// Google Vertex AI: OAuth2 tokens from `token`, or the upstream's key (a static access
    /// token) when `token` is `None`.
    Vertex {
        project: String,
        region: String,
        token: Option<TokenSourceSpec>,
    },
    /// Microsoft Foundry: the Messages API at `{resource}.services.ai.azure.com/anthropic`,
    /// with Entra ID tokens from `entra`, or the upstream's key (`x-api-key`).
    Foundry { entra: Option<EntraSpec> },
    /// Bedrock Mantle: the Messages API at `bedrock-mantle.{region}.api.aws/anthropic`, signed
    /// with SigV4 (service `bedrock-mantle`) from `aws`, or the upstream's key (a Bedrock API
    /// key, as a Bearer token) when `aws` is `None`.
    Mantle {
        region: String,
        aws: Option<CredentialSource>,
    },
    /// Claude Platform on AWS: the Messages API at `aws-external-anthropic.{region}.api.aws`
    /// with `anthropic-workspace-id`, signed with SigV4 (service `aws-external-anthropic`) from
    /// `aws`, or the upstream's key (`x-api-key`) when `aws` is `None`.
    AnthropicAws {
        region: String,
        workspace_id: String,
        aws: Option<CredentialSource>,
    },
    /// Claude Platform on Google Cloud: the Messages API under
    /// `claude.googleapis.com/v1/projects/{project}/locations/{location}/workspaces/{workspace}/invoke`,
    /// with Google OAuth2 tokens from `token`, or the upstream's key (a static token).
    AnthropicGoogleCloud {
        project: String,
        location: String,
        workspace_id: String,
        token: Option<TokenSourceSpec>,
    },
}

impl ProviderSpec {
    /// The `provider` name in the config.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ProviderSpec::Anthropic => "anthropic",
            ProviderSpec::Bedrock { .. } => "bedrock",
            ProviderSpec::Vertex { .. } => "vertex",
            ProviderSpec::Foundry { .. } => "foundry",
            ProviderSpec::Mantle { .. } => "mantle",
            ProviderSpec::AnthropicAws { .. } => "anthropic_aws",
            ProviderSpec::AnthropicGoogleCloud { .. } => "anthropic_google_cloud",
        }
    }
}

/// A Foundry upstream's Entra ID application (client-credentials grant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntraSpec {
    pub token_url: String,
    pub client_id: String,
    /// The environment variable holding the client secret.
    pub secret_env: String,
}

/// The scope a Foundry token is asked for (Azure Cognitive Services).
pub const FOUNDRY_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// Where a Vertex upstream's OAuth2 tokens come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSourceSpec {
    /// A service-account key file (tokens by the JWT-bearer grant).
    ServiceAccountFile(String),
    /// A command printing an access token.
    Command(String),
}

/// A secret written in the config or named by an environment variable. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline(String),
    Environment(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            SecretSource::Environment(var) => write!(f, "Environment({var})"),
        }
    }
}

impl SecretSource {
    /// The secret, if it is written or its variable is set (and not empty).
    pub fn lookup(&self) -> Option<String> {
        match self {
            SecretSource::Inline(secret) => Some(secret.clone()),
            SecretSource::Environment(var) => std::env::var(var).ok().filter(|v| !v.is_empty()),
        }
    }

    /// The secret; `path` names the field in the error when the variable is unset or empty.
    pub fn resolve(&self, path: &str) -> Result<String, ConfigError> {
        match self {
            SecretSource::Inline(secret) => Ok(secret.clone()),
            SecretSource::Environment(var) => std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| invalid(path, format!("${var} is not set"))),
        }
    }
}

/// Every upstream, checked: unique names, one credential source each, fields that belong to
/// the provider named.
pub fn build(file: &FileConfig) -> Result<Vec<UpstreamSpec>, ConfigError> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, u) in file.upstreams.iter().enumerate() {
        let path = format!("upstreams[{i}]");
        if u.name.is_empty() || !names.insert(u.name.clone()) {
            return Err(invalid(
                format!("{path}.name"),
                "must be a unique, non-empty name",
            ));
        }
        out.push(build_one(u, &path)?);
    }
    Ok(out)
}

fn build_one(u: &UpstreamFile, path: &str) -> Result<UpstreamSpec, ConfigError> {
    let key = match (&u.api_key, &u.api_key_env) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                format!("{path}.api_key"),
                "set api_key or api_key_env, not both",
            ))
        }
        (Some(key), None) => Some(SecretSource::Inline(key.clone())),
        (None, Some(var)) => Some(SecretSource::Environment(var.clone())),
        (None, None) => None,
    };
    let provider = provider(u, path, key.is_some())?;
    let field_policy = field_policy(u, &provider, path)?;
    let auth_header = match provider {
        ProviderSpec::Bedrock { .. }
        | ProviderSpec::Vertex { .. }
        | ProviderSpec::Mantle { .. }
        | ProviderSpec::AnthropicGoogleCloud { .. } => AuthHeader::Bearer,
        ProviderSpec::AnthropicAws { .. } => AuthHeader::XApiKey,
        ProviderSpec::Anthropic | ProviderSpec::Foundry { .. } => {
            u.auth_header.unwrap_or(AuthHeader::XApiKey)
        }
    };
    let url = match (&u.url, &provider) {
        (Some(url), _) => url.clone(),
        (None, provider) => default_url(u, provider, path)?,
    };
    let endpoint =
        Endpoint::parse(&url).map_err(|m| invalid(format!("{path}.url"), m.to_string()))?;
    if u.ca_file.is_some() && !endpoint.tls {
        return Err(invalid(
            format!("{path}.ca_file"),
            "only an https upstream uses a ca_file",
        ));
    }
    Ok(UpstreamSpec {
        name: u.name.clone(),
        endpoint,
        key,
        auth_header,
        provider,
        health_probe: health_probe(u, path)?,
        field_policy,
        ca_file: u.ca_file.clone(),
        models: match &u.models {
            Some(list) if list.is_empty() || list.iter().any(String::is_empty) => {
                return Err(invalid(
                    format!("{path}.models"),
                    "list the models it serves (or leave models out)",
                ))
            }
            Some(list) => Some(
                list.iter()
                    .map(|m| super::routes::ModelPattern::parse(m))
                    .collect(),
            ),
            None => None,
        },
    })
}

/// Where a provider is when the config gives no `url`: the provider's own endpoint.
fn default_url(
    u: &UpstreamFile,
    provider: &ProviderSpec,
    path: &str,
) -> Result<String, ConfigError> {
    Ok(match provider {
        ProviderSpec::Bedrock { region, .. } => {
            format!("https://bedrock-runtime.{region}.amazonaws.com")
        }
        ProviderSpec::Vertex { region, .. } => vertex_url(region),
        ProviderSpec::Foundry { .. } => match &u.resource {
            Some(resource) => format!("https://{resource}.services.ai.azure.com/anthropic"),
            None => {
                return Err(invalid(
                    format!("{path}.resource"),
                    "a foundry upstream needs its Azure resource name (or a url)",
                ))
            }
        },
        ProviderSpec::Mantle { region, .. } => {
            format!("https://bedrock-mantle.{region}.api.aws/anthropic")
        }
        ProviderSpec::AnthropicAws { region, .. } => {
            format!("https://aws-external-anthropic.{region}.api.aws")
        }
        ProviderSpec::AnthropicGoogleCloud {
            project,
            location,
            workspace_id,
            ..
        } => format!(
            "https://claude.googleapis.com/v1/projects/{project}/locations/{location}/workspaces/{workspace_id}/invoke"
        ),
        ProviderSpec::Anthropic => {
            return Err(invalid(format!("{path}.url"), "missing field `url`"))
        }
    })
}

fn health_probe(u: &UpstreamFile, path: &str) -> Result<Option<Probe>, ConfigError> {
    match &u.health_check_path {
        Some(p) if !p.starts_with('/') => Err(invalid(
            format!("{path}.health_check_path"),
            "must start with /",
        )),
        Some(p) => Ok(Some(Probe {
            path: p.clone(),
            interval: duration(
                &format!("{path}.health_check_interval"),
                u.health_check_interval.as_deref().unwrap_or("10s"),
            )?,
        })),
        None => Ok(None),
    }
}

/// The provider of upstream `u` and where its credentials come from.
fn provider(u: &UpstreamFile, path: &str, has_key: bool) -> Result<ProviderSpec, ConfigError> {
    use super::file::ProviderKind;
    let aws_fields = [
        &u.aws_access_key_id,
        &u.aws_secret_access_key,
        &u.aws_session_token,
        &u.aws_profile,
        &u.aws_credential_process,
    ];
    let gcp_fields = [
        &u.project,
        &u.gcp_service_account_file,
        &u.gcp_token_command,
    ];
    let kind = u.provider.unwrap_or(ProviderKind::Anthropic);
    let aws_kinds = [
        ProviderKind::Bedrock,
        ProviderKind::Mantle,
        ProviderKind::AnthropicAws,
    ];
    if !aws_kinds.contains(&kind) && aws_fields.iter().any(|f| f.is_some()) {
        return Err(invalid(
            path,
            "aws_* fields are for provider = \"bedrock\", \"mantle\" or \"anthropic_aws\"",
        ));
    }
    if kind != ProviderKind::Bedrock && u.inference_profile.is_some() {
        return Err(invalid(
            format!("{path}.inference_profile"),
            "inference_profile is for provider = \"bedrock\"",
        ));
    }
    let gcp_kinds = [ProviderKind::Vertex, ProviderKind::AnthropicGoogleCloud];
    if !gcp_kinds.contains(&kind) && gcp_fields.iter().any(|f| f.is_some()) {
        return Err(invalid(
            path,
            "project and gcp_* fields are for provider = \"vertex\" or \"anthropic_google_cloud\"",
        ));
    }
    let foundry_fields = [
        &u.resource,
        &u.entra_tenant_id,
        &u.entra_client_id,
        &u.entra_client_secret_env,
        &u.entra_token_url,
    ];
    if kind != ProviderKind::Foundry && foundry_fields.iter().any(|f| f.is_some()) {
        return Err(invalid(
            path,
            "resource and entra_* fields are for provider = \"foundry\"",
        ));
    }
    let workspace_kinds = [
        ProviderKind::AnthropicAws,
        ProviderKind::AnthropicGoogleCloud,
    ];
    if !workspace_kinds.contains(&kind) && u.workspace_id.is_some() {
        return Err(invalid(
            format!("{path}.workspace_id"),
            "workspace_id is for provider = \"anthropic_aws\" or \"anthropic_google_cloud\"",
        ));
    }
    let required = |v: &Option<String>, name: &str, why: &str| {
        v.clone()
            .ok_or_else(|| invalid(format!("{path}.{name}"), why.to_string()))
    };
    match kind {
        ProviderKind::Anthropic if u.region.is_some() => Err(invalid(
            format!("{path}.region"),
            "region is for bedrock and vertex upstreams",
        )),
        ProviderKind::Anthropic => Ok(ProviderSpec::Anthropic),
        ProviderKind::Bedrock => Ok(ProviderSpec::Bedrock {
            region: required(
                &u.region,
                "region",
                "a bedrock upstream needs its AWS region",
            )?,
            aws: aws_source(u, path, has_key)?,
            profile: inference_profile(u, path)?,
        }),
        ProviderKind::Vertex => Ok(ProviderSpec::Vertex {
            project: required(
                &u.project,
                "project",
                "a vertex upstream needs its Google Cloud project",
            )?,
            region: required(
                &u.region,
                "region",
                "a vertex upstream needs its location (global, us, eu, or a region)",
            )?,
            token: token_source(u, path, has_key)?,
        }),
        ProviderKind::Foundry if u.region.is_some() => Err(invalid(
            format!("{path}.region"),
            "a foundry upstream is named by its resource, not a region",
        )),
        ProviderKind::Foundry => Ok(ProviderSpec::Foundry {
            entra: entra(u, path, has_key)?,
        }),
        ProviderKind::Mantle => Ok(ProviderSpec::Mantle {
            region: required(
                &u.region,
                "region",
                "a mantle upstream needs its AWS region",
            )?,
            aws: aws_source(u, path, has_key)?,
        }),
        ProviderKind::AnthropicAws => Ok(ProviderSpec::AnthropicAws {
            region: required(
                &u.region,
                "region",
                "an anthropic_aws upstream needs its AWS region",
            )?,
            workspace_id: required(
                &u.workspace_id,
                "workspace_id",
                "an anthropic_aws upstream needs its workspace",
            )?,
            aws: aws_source(u, path, has_key)?,
        }),
        ProviderKind::AnthropicGoogleCloud => Ok(ProviderSpec::AnthropicGoogleCloud {
            project: required(
                &u.project,
                "project",
                "an anthropic_google_cloud upstream needs its Google Cloud project",
            )?,
            location: u.region.clone().unwrap_or_else(|| "global".into()),
            workspace_id: required(
                &u.workspace_id,
                "workspace_id",
                "an anthropic_google_cloud upstream needs its workspace",
            )?,
            token: token_source(u, path, has_key)?,
        }),
    }
}

/// The fields and betas upstream `u` takes: its provider's defaults with its own changes (an
/// Anthropic upstream takes everything, so only drops apply there).
fn field_policy(
    u: &UpstreamFile,
    provider: &ProviderSpec,
    path: &str,
) -> Result<FieldPolicy, ConfigError> {
    let egress = match provider {
        ProviderSpec::Bedrock { .. } => Egress::Bedrock,
        ProviderSpec::Vertex { .. } => Egress::Vertex,
        // The others speak the Messages API and take what the Anthropic API takes.
        _ => Egress::Anthropic,
    };
    let passes = [
        ("pass_fields", &u.pass_fields),
        ("pass_betas", &u.pass_betas),
    ];
    if let (Egress::Anthropic, Some((name, _))) =
        (egress, passes.iter().find(|(_, v)| !v.is_empty()))
    {
        return Err(invalid(
            format!("{path}.{name}"),
            format!(
                "a {} upstream takes every field and beta; only drop_fields and drop_betas apply",
                provider.kind_name()
            ),
        ));
    }
    let changes = PolicyChanges {
        pass_fields: u.pass_fields.clone(),
        drop_fields: u.drop_fields.clone(),
        pass_betas: u.pass_betas.clone(),
        drop_betas: u.drop_betas.clone(),
    };
    Ok(FieldPolicy::new(egress, &changes))
}

/// A Bedrock upstream's inference-profile prefix: `inference_profile` (`none` for the bare id),
/// else the region's.
fn inference_profile(u: &UpstreamFile, path: &str) -> Result<Option<String>, ConfigError> {
    use crate::provider::model_ids::{profile_prefix_for_region, PROFILE_PREFIXES};
    match u.inference_profile.as_deref() {
        Some("none") => Ok(None),
        Some(p) if PROFILE_PREFIXES.contains(&p) => Ok(Some(p.to_string())),
        Some(p) => Err(invalid(
            format!("{path}.inference_profile"),
            format!(
                "`{p}` is not a Bedrock inference-profile prefix (one of {}, or none)",
                PROFILE_PREFIXES.join(", ")
            ),
        )),
        None => Ok(Some(
            profile_prefix_for_region(u.region.as_deref().unwrap_or_default()).to_string(),
        )),
    }
}

/// A Foundry upstream's Entra ID application, or `None` when it uses an API key.
fn entra(u: &UpstreamFile, path: &str, has_key: bool) -> Result<Option<EntraSpec>, ConfigError> {
    match (&u.entra_client_id, &u.entra_client_secret_env) {
        (None, None) if u.entra_tenant_id.is_none() && u.entra_token_url.is_none() => {
            if has_key {
                Ok(None)
            } else {
                Err(invalid(
                    path,
                    "a foundry upstream needs api_key (or api_key_env), or entra_tenant_id, entra_client_id and entra_client_secret_env",
                ))
            }
        }
        (Some(client_id), Some(secret_env)) if !has_key => {
            let token_url = match (&u.entra_token_url, &u.entra_tenant_id) {
                (Some(url), _) => url.clone(),
                (None, Some(tenant)) => {
                    format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
                }
                (None, None) => {
                    return Err(invalid(
                        format!("{path}.entra_tenant_id"),
                        "Entra ID needs the tenant (or entra_token_url)",
                    ))
                }
            };
            Ok(Some(EntraSpec {
                token_url,
                client_id: client_id.clone(),
                secret_env: secret_env.clone(),
            }))
        }
        _ => Err(invalid(
            path,
            "give either api_key, or entra_tenant_id, entra_client_id and entra_client_secret_env",
        )),
    }
}

/// A Vertex upstream's token source, or `None` when its key is a static access token.
fn token_source(
    u: &UpstreamFile,
    path: &str,
    has_key: bool,
) -> Result<Option<TokenSourceSpec>, ConfigError> {
    match (&u.gcp_service_account_file, &u.gcp_token_command) {
        (Some(file), None) => Ok(Some(TokenSourceSpec::ServiceAccountFile(file.clone()))),
        (None, Some(command)) => Ok(Some(TokenSourceSpec::Command(command.clone()))),
        (None, None) if has_key => Ok(None),
        _ => Err(invalid(
            path,
            "give one token source: gcp_service_account_file, gcp_token_command, or api_key (a static access token)",
        )),
    }
}

/// A Bedrock upstream's credential source, or `None` when it uses a Bedrock API key.
fn aws_source(
    u: &UpstreamFile,
    path: &str,
    has_key: bool,
) -> Result<Option<CredentialSource>, ConfigError> {
    Ok(match (&u.aws_access_key_id, &u.aws_secret_access_key, &u.aws_profile, &u.aws_credential_process) {
        (Some(id), Some(secret), None, None) => Some(CredentialSource::Static(AwsCredentialsConfig {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
            session_token: u.aws_session_token.clone(),
        })),
        (None, None, Some(profile), None) => Some(CredentialSource::Profile(profile.clone())),
        (None, None, None, Some(command)) => Some(CredentialSource::Process(command.clone())),
        (None, None, None, None) if has_key => None,
        (None, None, None, None) => Some(CredentialSource::Environment),
        _ => {
            return Err(invalid(
                path,
                "give one credential source: aws_access_key_id + aws_secret_access_key, aws_profile, aws_credential_process, or api_key (a Bedrock API key)",
            ))
        }
    })
}
