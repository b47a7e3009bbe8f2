//! The configuration: what the operator wrote, validated, as plain data. Building it reads
//! nothing but the file's text and the command-line overrides — no certificate, key or CA
//! file, no environment variable, no command — so `check-config` and a reload can build one
//! freely; [`crate::state`] loads and runs what the config describes.
//!
//! - [`file`](mod@file): the TOML as serde structs (`deny_unknown_fields`); fixed choices are enums.
//! - [`server`]: listeners, size limits, timeouts, ledger, audit, admin and log settings.
//! - [`tls`]: the HTTPS listener's certificate files and client-certificate rules.
//! - [`upstreams`]: each upstream, by provider, and where its credentials come from.
//! - [`routes`]: model → deployments, balancing and ejection, the model list.
//! - [`keys`]: virtual keys (digests) and issued AWS key pairs.
//! - [`jwt`]: JWT verification keys and claims.
//! - [`policies`]: rate limits, budgets and prices.
//! - [`signin`]: sign-in at the company's OpenID Connect provider.
//! - [`managed`]: the policy documents Claude Code takes from `/managed/settings`.
//! - [`cri`]: customer-routed inference (Anthropic-minted tokens for Claude Enterprise callers).
//! - [`cluster`]: several nodes sharing state through PostgreSQL and Redis.
//! - [`telemetry`]: the collectors Claude Code's OpenTelemetry exports are relayed to.
//!
//! Every error names the path of the field at fault (`routes[2].model`).

pub mod cluster;
pub mod cri;
pub mod file;
pub mod jwt;
pub mod keys;
pub mod managed;
pub mod policies;
pub mod routes;
pub mod server;
pub mod signin;
pub mod telemetry;
pub mod tls;
pub mod upstreams;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use thiserror::Error;

use crate::runtime::writer_priority::WriterPriority;
use crate::runtime::IoDriver;
use crate::usage::pricing::PriceTable;
use file::FileConfig;
pub use keys::{KeySettings, VirtualKey};
pub use policies::Policies;
pub use routes::{Balance, Deployment, ModelInfo, ModelPattern, Route, Routing};
pub use server::{
    AccessLogTarget, AdminSettings, AuditSettings, Durability, Limits, MessageBatches,
    StoreSettings, Timeouts,
};
pub use upstreams::{ProviderSpec, UpstreamSpec};

/// A configuration problem, with the path of the field at fault.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// Command-line settings that override the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub upstream_api_key: Option<String>,
    pub workers: Option<usize>,
    pub io_driver: Option<String>,
}

/// The validated configuration every worker reads; [`crate::state::State`] holds what lives.
#[derive(Clone, Debug)]
pub struct Config {
    /// The plain HTTP listener, if any.
    pub listen: Option<SocketAddr>,
    /// The HTTPS listener, if any (then `tls` is set).
    pub listen_tls: Option<SocketAddr>,
    pub tls: Option<tls::TlsSettings>,
    pub workers: usize,
    pub io_driver: IoDriver,
    /// How the record writers are scheduled.
    pub writer_priority: WriterPriority,
    /// What happens to the Message Batches API.
    pub message_batches: MessageBatches,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub grace_period: Duration,
    pub upstreams: Vec<UpstreamSpec>,
    pub routes: Vec<Route>,
    /// The operator's provider model ids, replacing the built-in table's.
    pub model_ids: crate::provider::model_ids::Overrides,
    pub routing: Routing,
    /// The upstream local answers name (the first).
    pub default_upstream: usize,
    pub models: Vec<ModelInfo>,
    pub keys: KeySettings,
    pub pricing: PriceTable,
    pub access_log: AccessLogTarget,
    pub log_level: String,
    pub store: StoreSettings,
    pub audit: AuditSettings,
    pub admin: Option<AdminSettings>,
    pub jwt: Option<jwt::JwtSettings>,
    pub signin: Option<signin::SigninSettings>,
    pub managed_settings: managed::ManagedSettings,
    pub telemetry: telemetry::TelemetrySettings,
    pub cri: Option<cri::CriSettings>,
    /// Several nodes sharing keys, budgets and spend (`None`: this node alone).
    pub cluster: Option<cluster::ClusterSettings>,
    pub policies: Policies,
}

impl Config {
    /// The routes whose served model has no price (and no fallback price is declared), as
    /// (`routes[i]` or `routes[i].deployments[j]`, served model): requests to them are refused
    /// under any budget. A route that forwards models as sent (a `*` or prefix pattern without
    /// `upstream_model`) is priced per request and not listed.
    pub fn unpriced_routes(&self) -> Vec<(String, String)> {
        let mut unpriced = Vec::new();
        for (i, route) in self.routes.iter().enumerate() {
            for (j, deployment) in route.deployments.iter().enumerate() {
                let served = match (&deployment.upstream_model, &route.pattern) {
                    (Some(alias), _) => alias.as_ref(),
                    (None, ModelPattern::Exact(model)) => model.as_str(),
                    (None, _) => continue,
                };
                if self.pricing.lookup(served).is_none() {
                    let place = if route.deployments.len() == 1 {
                        format!("routes[{i}]")
                    } else {
                        format!("routes[{i}].deployments[{j}]")
                    };
                    unpriced.push((place, served.to_string()));
                }
            }
        }
        unpriced
    }
}

/// Reads and parses a config file (no overrides applied yet).
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.display().to_string(),
        source,
    })?;
    parse_text(&text)
}

/// Parses config text; errors carry the path of the field (`server.listen`).
pub fn parse_text(text: &str) -> Result<FileConfig, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().to_string();
        let where_ = inner
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        invalid(
            if path == "." {
                "(top level)".into()
            } else {
                path
            },
            format!("{message}{where_}"),
        )
    })
}

/// Applies overrides and validates: the one way a [`Config`] comes into being.
pub fn build(mut file: FileConfig, overrides: &Overrides) -> Result<Config, ConfigError> {
    apply_overrides(&mut file, overrides)?;
    let listeners = server::build_listeners(&file)?;
    let workers = match file.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let upstreams = upstreams::build(&file)?;
    let model_ids = routes::build_model_ids(&file)?;
    let routes = routes::build(&file, &upstreams, &model_ids)?;
    Ok(Config {
        listen: listeners.listen,
        listen_tls: listeners.listen_tls,
        tls: listeners.tls,
        workers,
        io_driver: file.server.io_driver,
        writer_priority: file.server.writer_priority,
        message_batches: file.server.message_batches,
        limits: server::build_limits(&file)?,
        timeouts: server::build_timeouts(&file)?,
        grace_period: server::duration("server.grace_period", &file.server.grace_period)?,
        default_upstream: 0,
        upstreams,
        routes,
        model_ids,
        routing: routes::build_routing(&file)?,
        models: routes::build_models(&file),
        keys: keys::build(&file.keys, &file.aws_keys)?,
        pricing: policies::build_pricing(&file)?,
        access_log: match file.log.access_log.as_str() {
            "-" => AccessLogTarget::Stdout,
            "off" | "" => AccessLogTarget::Off,
            path => AccessLogTarget::File(path.to_string()),
        },
        log_level: file.log.level.clone(),
        store: StoreSettings {
            path: (file.store.path != "off").then(|| file.store.path.clone().into()),
            commit_interval: server::duration(
                "store.commit_interval",
                &file.store.commit_interval,
            )?,
            fail_closed: file.store.on_failure == file::OnFailure::Closed,
            durability: file.store.durability,
        },
        admin: server::build_admin(&file)?,
        jwt: file.jwt.as_ref().map(jwt::build).transpose()?,
        signin: file
            .signin
            .as_ref()
            .map(|s| signin::build(s, file.store.path != "off"))
            .transpose()?,
        managed_settings: managed::build(&file.managed_settings)?,
        telemetry: telemetry::build(&file.telemetry)?,
        cri: file.cri.as_ref().map(cri::build).transpose()?,
        cluster: cluster::build(
            file.cluster.as_ref(),
            file.store.backend,
            file.store.path != "off",
        )?,
        policies: policies::build(&file)?,
        audit: AuditSettings {
            path: (file.audit.path != "off").then(|| file.audit.path.clone().into()),
            max_bytes: file.audit.max_bytes.max(4096),
        },
    })
}

fn apply_overrides(file: &mut FileConfig, o: &Overrides) -> Result<(), ConfigError> {
    if let Some(listen) = &o.listen {
        file.server.listen = listen.clone();
    }
    if let Some(workers) = o.workers {
        file.server.workers = workers;
    }
    if let Some(driver) = &o.io_driver {
        file.server.io_driver = toml::Value::String(driver.clone())
            .try_into()
            .map_err(|e: toml::de::Error| invalid("server.io_driver", e.message().to_string()))?;
    }
    if file.upstreams.is_empty() {
        file.upstreams.push(file::UpstreamFile {
            name: "anthropic".into(),
            provider: None,
            url: Some("https://api.anthropic.com".into()),
            region: None,
            aws_access_key_id: None,
            aws_secret_access_key: None,
            aws_session_token: None,
            aws_profile: None,
            aws_credential_process: None,
            project: None,
            resource: None,
            entra_tenant_id: None,
            entra_client_id: None,
            entra_client_secret_env: None,
            entra_token_url: None,
            workspace_id: None,
            gcp_service_account_file: None,
            gcp_token_command: None,
            health_check_path: None,
            health_check_interval: None,
            api_key: None,
            api_key_env: Some("ANTHROPIC_API_KEY".into()),
            auth_header: None,
            ca_file: None,
            inference_profile: None,
            models: None,
            pass_fields: Vec::new(),
            drop_fields: Vec::new(),
            pass_betas: Vec::new(),
            drop_betas: Vec::new(),
        });
    }
    if let Some(first) = file.upstreams.first_mut() {
        if let Some(url) = &o.upstream {
            first.url = Some(url.clone());
        }
        if let Some(key) = &o.upstream_api_key {
            first.api_key = Some(key.clone());
            first.api_key_env = None;
        }
    }
    if file.routes.is_empty() {
        let name = file
            .upstreams
            .first()
            .map(|u| u.name.clone())
            .unwrap_or_default();
        file.routes.push(file::RouteFile {
            model: "*".into(),
            upstream: Some(name),
            upstream_model: None,
            deployments: Vec::new(),
            balance: None,
            max_attempts: None,
            affinity: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_text(text: &str) -> Result<Config, ConfigError> {
        build(parse_text(text)?, &Overrides::default())
    }

    #[test]
    fn newer_providers_default_to_their_endpoints() {
        let c = build_text(
            "[[upstreams]]\nname = \"f\"\nprovider = \"foundry\"\nresource = \"corp\"\napi_key = \"k\"\n[[upstreams]]\nname = \"m\"\nprovider = \"mantle\"\nregion = \"eu-west-1\"\napi_key = \"k\"\n[[upstreams]]\nname = \"a\"\nprovider = \"anthropic_aws\"\nregion = \"us-west-2\"\nworkspace_id = \"w\"\napi_key = \"k\"\n[[upstreams]]\nname = \"g\"\nprovider = \"anthropic_google_cloud\"\nproject = \"p\"\nworkspace_id = \"w\"\napi_key = \"t\"\n",
        )
        .unwrap();
        let at: Vec<(String, String)> = c
            .upstreams
            .iter()
            .map(|u| (u.endpoint.host.clone(), u.endpoint.base_path.clone()))
            .collect();
        let expected = [
            ("corp.services.ai.azure.com", "/anthropic"),
            ("bedrock-mantle.eu-west-1.api.aws", "/anthropic"),
            ("aws-external-anthropic.us-west-2.api.aws", ""),
            (
                "claude.googleapis.com",
                "/v1/projects/p/locations/global/workspaces/w/invoke",
            ),
        ];
        for ((host, base), (want_host, want_base)) in at.iter().zip(expected) {
            assert_eq!((host.as_str(), base.as_str()), (want_host, want_base));
        }
        for bad in [
            "[[upstreams]]\nname = \"f\"\nprovider = \"foundry\"\napi_key = \"k\"\n",
            "[[upstreams]]\nname = \"a\"\nprovider = \"anthropic_aws\"\nregion = \"r\"\napi_key = \"k\"\n",
            "[[upstreams]]\nname = \"x\"\nurl = \"http://h\"\nworkspace_id = \"w\"\n",
        ] {
            assert!(build_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_build() {
        let c = build_text("").unwrap();
        assert_eq!(c.listen.unwrap().to_string(), "127.0.0.1:4100");
        assert_eq!(c.upstreams[0].endpoint.host, "api.anthropic.com");
        assert!(c.routes[0].pattern.matches("claude-opus-4-8"));
    }

    #[test]
    fn errors_name_their_path() {
        let cases = [
            ("[server]\nlisten = 5\n", "server.listen"),
            ("[server]\nlisen = \"x\"\n", "server"),
            ("[[upstreams]]\nname = \"a\"\nurl = \"ftp://x\"\n", "upstreams[0].url"),
            ("[[upstreams]]\nname = \"a\"\nurl = \"http://x\"\n[[routes]]\nmodel = \"*\"\nupstream = \"b\"\n", "routes[0].upstream"),
            ("[timeouts]\nhead_read = \"soon\"\n", "timeouts.head_read"),
            ("[[keys]]\nname = \"k\"\nsha256 = \"zz\"\n", "keys[0].sha256"),
            ("[[budgets]]\nscope = \"org\"\nname = \"x\"\nlimit_usd = 1.0\n", "budgets[0].scope"),
            ("[[budgets]]\nscope = \"session\"\nname = \"s1\"\nlimit_usd = 1.0\n", "budgets[0].name"),
            ("[[budgets]]\nscope = \"session\"\nlimit_usd = 20000.0\n", "budgets[0].limit_usd"),
            ("[[budgets]]\nscope = \"team\"\nlimit_usd = 1.0\n", "budgets[0].name"),
            ("[[budgets]]\nscope = \"team\"\nname = \"x\"\nlimit_usd = 0.0\n", "budgets[0].limit_usd"),
            ("[[budgets]]\nscope = \"team\"\nname = \"x\"\nlimit_usd = 1.0\nperiod = \"hourly\"\n", "budgets[0].period"),
            ("[[budgets]]\nscope = \"team\"\nname = \"x\"\nlimit_usd = 1.0\nsoft_usd = 2.0\n", "budgets[0].soft_usd"),
            ("[store]\npath = \"off\"\n[[budgets]]\nscope = \"key\"\nname = \"x\"\nlimit_usd = 1.0\n", "budgets[0].name"),
            ("[admin]\nlisten = \"nowhere\"\nkey_sha256 = \"00\"\n", "admin.listen"),
            ("[admin]\nlisten = \"127.0.0.1:0\"\nkey_sha256 = \"00\"\n", "admin.key_sha256"),
        ];
        for (text, path) in cases {
            let err = build_text(text).unwrap_err().to_string();
            assert!(err.starts_with(path), "{text:?} gave {err}");
        }
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            listen: Some("127.0.0.1:0".into()),
            upstream: Some("http://127.0.0.1:9".into()),
            upstream_api_key: Some("sk-up".into()),
            workers: Some(3),
            io_driver: Some("epoll".into()),
        };
        let c = build(parse_text("").unwrap(), &o).unwrap();
        assert_eq!((c.listen.unwrap().port(), c.workers), (0, 3));
        assert_eq!(c.upstreams[0].endpoint.host, "127.0.0.1");
        assert!(c.upstreams[0].key.is_some());
    }
}
