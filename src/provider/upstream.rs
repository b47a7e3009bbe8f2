//! An upstream: where requests go ([`Endpoint`]: scheme, host, port, base path, parsed from the
//! config) and, once [`crate::state`] has built it, the credential and TLS client sluice uses
//! there ([`Upstream`]); immutable afterwards.
use std::fmt;
use std::sync::Arc;

/// Which header carries the upstream credential (`auth_header` in the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub enum AuthHeader {
    /// `x-api-key: <key>` (the Anthropic API).
    #[serde(rename = "x-api-key")]
    XApiKey,
    /// `authorization: Bearer <key>` (LiteLLM and most gateways).
    #[serde(rename = "authorization", alias = "bearer")]
    Bearer,
}

/// The credential sluice sends upstream. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub header: AuthHeader,
    /// The header's value, built once: the secret, or `Bearer <secret>`.
    value: String,
}

impl Credential {
    pub fn new(header: AuthHeader, secret: String) -> Self {
        let value = match header {
            AuthHeader::XApiKey => secret,
            AuthHeader::Bearer => format!("Bearer {secret}"),
        };
        Self { header, value }
    }

    /// The header (name, value) that presents this credential.
    pub fn header_field(&self) -> (&'static str, &[u8]) {
        let name = match self.header {
            AuthHeader::XApiKey => "x-api-key",
            AuthHeader::Bearer => "authorization",
        };
        (name, self.value.as_bytes())
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({:?}, <redacted>)", self.header)
    }
}

/// The TLS client an https upstream is reached with (its trust roots).
#[derive(Clone)]
pub struct TlsClient(pub monoio_rustls::TlsConnector);

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsClient")
    }
}

/// What an upstream speaks.
#[derive(Clone, Debug)]
pub enum Provider {
    /// The Messages API: the Anthropic API, LiteLLM, any compatible gateway.
    Anthropic,
    /// AWS Bedrock InvokeModel: SigV4-signed with these credentials, or a Bedrock API key
    /// (the upstream's `credential`, as a Bearer token) when there are none.
    Bedrock {
        region: String,
        aws: Option<std::sync::Arc<super::aws_credentials::AwsCredentialCell>>,
    },
    /// Google Vertex AI rawPredict: OAuth2 tokens from `token`, or the upstream's `credential`
    /// (a static token) when there is none.
    Vertex {
        project: String,
        region: String,
        token: Option<std::sync::Arc<super::oauth::OAuthTokenCell>>,
    },
    /// Microsoft Foundry: the Messages API with Entra ID tokens from `token`, or the
    /// upstream's key when there is none.
    Foundry {
        token: Option<std::sync::Arc<super::oauth::OAuthTokenCell>>,
    },
    /// Bedrock Mantle: the Messages API, SigV4-signed (service `bedrock-mantle`) with these
    /// credentials, or a Bedrock API key (the upstream's `credential`) when there are none.
    Mantle {
        region: String,
        aws: Option<std::sync::Arc<super::aws_credentials::AwsCredentialCell>>,
    },
    /// Claude Platform on AWS: the Messages API with `anthropic-workspace-id`, SigV4-signed
    /// (service `aws-external-anthropic`) or with the upstream's key.
    AnthropicAws {
        region: String,
        workspace_id: String,
        aws: Option<std::sync::Arc<super::aws_credentials::AwsCredentialCell>>,
    },
    /// Claude Platform on Google Cloud: the Messages API with Google OAuth2 tokens from
    /// `token`, or the upstream's `credential` (a static token).
    AnthropicGoogleCloud {
        token: Option<std::sync::Arc<super::oauth::OAuthTokenCell>>,
    },
}

impl Provider {
    /// The provider as OpenTelemetry's GenAI conventions name it (`gen_ai.provider.name`).
    pub fn semconv_name(&self) -> &'static str {
        match self {
            Provider::Anthropic
            | Provider::AnthropicAws { .. }
            | Provider::AnthropicGoogleCloud { .. } => "anthropic",
            Provider::Bedrock { .. } | Provider::Mantle { .. } => "aws.bedrock",
            Provider::Vertex { .. } => "gcp.vertex_ai",
            Provider::Foundry { .. } => "azure.ai.inference",
        }
    }

    pub fn is_bedrock(&self) -> bool {
        matches!(self, Provider::Bedrock { .. })
    }

    /// Starts the side threads that keep this provider's credentials fresh.
    pub fn start_refreshers(&self) {
        match self {
            Provider::Bedrock {
                aws: Some(cell), ..
            }
            | Provider::Mantle {
                aws: Some(cell), ..
            }
            | Provider::AnthropicAws {
                aws: Some(cell), ..
            } => cell.start_refresher(),
            Provider::Vertex {
                token: Some(cell), ..
            }
            | Provider::AnthropicGoogleCloud { token: Some(cell) }
            | Provider::Foundry { token: Some(cell) } => cell.start(),
            _ => {}
        }
    }

    /// The SigV4 signing this provider needs: (credentials, region, service).
    pub fn sigv4(
        &self,
    ) -> Option<(
        &super::aws_credentials::AwsCredentialCell,
        &str,
        &'static str,
    )> {
        match self {
            Provider::Bedrock {
                region,
                aws: Some(aws),
            } => Some((aws, region, "bedrock")),
            Provider::Mantle {
                region,
                aws: Some(aws),
            } => Some((aws, region, "bedrock-mantle")),
            Provider::AnthropicAws {
                region,
                aws: Some(aws),
                ..
            } => Some((aws, region, "aws-external-anthropic")),
            _ => None,
        }
    }

    /// The OAuth2 token cell this provider authenticates with (`authorization: Bearer`), if
    /// any: Google for Vertex and Claude Platform on Google Cloud, Entra ID for Foundry.
    pub fn oauth_token(&self) -> Option<&super::oauth::OAuthTokenCell> {
        match self {
            Provider::Vertex {
                token: Some(cell), ..
            }
            | Provider::AnthropicGoogleCloud { token: Some(cell) }
            | Provider::Foundry { token: Some(cell) } => Some(cell),
            _ => None,
        }
    }
}

/// Vertex's host for a location: `global`, the `us`/`eu` multi-regions, or a region.
pub fn vertex_url(region: &str) -> String {
    match region {
        "global" => "https://aiplatform.googleapis.com".into(),
        "us" | "eu" => format!("https://aiplatform.{region}.rep.googleapis.com"),
        _ => format!("https://{region}-aiplatform.googleapis.com"),
    }
}

/// Where an upstream is: scheme, host, port and base path, parsed from its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The Host header value (`host` or `host:port` when the port is not the scheme's default).
    pub host_header: String,
    /// Prefix put before every request path (`/anthropic` for a LiteLLM pass-through route).
    pub base_path: String,
}

impl Endpoint {
    /// Parses a base URL (`http[s]://host[:port][/base]`).
    pub fn parse(url: &str) -> Result<Self, super::error::UrlError> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(super::error::UrlError::Scheme(url.to_string()));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at_checked(i).unwrap_or((rest, "")),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') || path.contains(['?', '#']) {
            return Err(super::error::UrlError::NotBase(url.to_string()));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = split_host_port(authority, default_port)
            .ok_or_else(|| super::error::UrlError::HostPort(url.to_string()))?;
        let host_header = if port == default_port {
            authority_host(&host)
        } else {
            format!("{}:{port}", authority_host(&host))
        };
        Ok(Endpoint {
            tls,
            host,
            port,
            host_header,
            base_path: path.trim_end_matches('/').to_string(),
        })
    }
}

/// One upstream as the request path uses it: its endpoint with the credentials and TLS client
/// loaded ([`crate::state`] builds it from the config's spec).
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Shared with every request record that names it.
    pub name: Arc<str>,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The Host header value (`host` or `host:port` when the port is not the scheme's default).
    pub host_header: String,
    /// Prefix put before every request path (`/anthropic` for a LiteLLM pass-through route).
    pub base_path: String,
    pub credential: Option<Credential>,
    /// For https upstreams: the verified TLS client (webpki roots plus any `ca_file`).
    pub tls_client: Option<TlsClient>,
    pub provider: Provider,
    /// Active health checking, when configured.
    pub health_probe: Option<super::health::Probe>,
    /// Which request fields and betas reach it when sluice translates a request for it.
    pub field_policy: crate::format::field_policy::FieldPolicy,
}

impl Upstream {
    /// An upstream at `endpoint`, speaking the Messages API, with no probe.
    pub fn new(name: &str, endpoint: Endpoint, credential: Option<Credential>) -> Self {
        Upstream {
            name: Arc::from(name),
            tls: endpoint.tls,
            host: endpoint.host,
            port: endpoint.port,
            host_header: endpoint.host_header,
            base_path: endpoint.base_path,
            credential,
            tls_client: None,
            provider: Provider::Anthropic,
            health_probe: None,
            field_policy: Default::default(),
        }
    }

    /// Builds an upstream from its URL (`http[s]://host[:port][/base]`).
    pub fn from_url(
        name: &str,
        url: &str,
        credential: Option<Credential>,
    ) -> Result<Self, super::error::UrlError> {
        Ok(Self::new(name, Endpoint::parse(url)?, credential))
    }

    /// The URL, for logs (no credential in it).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.host_header, self.base_path)
    }
}

fn authority_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let (host, after) = rest.split_at_checked(end)?;
        let after = after.strip_prefix(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, default_port),
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    valid.then(|| (host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        let u = Upstream::from_url("a", "https://api.anthropic.com", None).unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.host_header.as_str()),
            (true, "api.anthropic.com", 443, "api.anthropic.com")
        );
        let u = Upstream::from_url("l", "http://litellm:4000/anthropic/", None).unwrap();
        assert_eq!(
            (u.port, u.host_header.as_str(), u.base_path.as_str()),
            (4000, "litellm:4000", "/anthropic")
        );
        let u = Upstream::from_url("v6", "http://[::1]:8080", None).unwrap();
        assert_eq!(
            (u.host.as_str(), u.host_header.as_str()),
            ("::1", "[::1]:8080")
        );
        for bad in [
            "ftp://x",
            "http://",
            "http://a:b",
            "http://u@h",
            "http://h/?q",
        ] {
            assert!(Upstream::from_url("x", bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn vertex_hosts_follow_the_location() {
        assert_eq!(vertex_url("global"), "https://aiplatform.googleapis.com");
        assert_eq!(vertex_url("eu"), "https://aiplatform.eu.rep.googleapis.com");
        assert_eq!(
            vertex_url("us-east5"),
            "https://us-east5-aiplatform.googleapis.com"
        );
    }

    #[test]
    fn credential_debug_hides_the_secret() {
        let c = Credential::new(AuthHeader::Bearer, "sk-secret".into());
        assert!(!format!("{c:?}").contains("sk-secret"));
        assert_eq!(
            c.header_field(),
            ("authorization", &b"Bearer sk-secret"[..])
        );
        let key = Credential::new(AuthHeader::XApiKey, "sk-key".into());
        assert!(!format!("{key:?}").contains("sk-key"));
        assert_eq!(key.header_field(), ("x-api-key", &b"sk-key"[..]));
    }
}
