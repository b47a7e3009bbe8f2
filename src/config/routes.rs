//! `[[routes]]`, `[routing]` and `[[models]]`: which model goes to which upstreams, how the
//! first is picked, when a failing one is ejected, and what `/v1/models` lists.

use std::sync::Arc;
use std::time::Duration;

use super::file::FileConfig;
use super::server::duration;
use super::upstreams::{ProviderSpec, UpstreamSpec};
use super::{file, invalid, ConfigError};
use crate::format::{anthropic_model_id, ClientFormat};
use crate::provider::model_ids::{self, Cloud, Unmappable};

/// Which models go where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelPattern {
    Any,
    Exact(String),
    Prefix(String),
}

impl ModelPattern {
    pub(crate) fn parse(text: &str) -> ModelPattern {
        match text.strip_suffix('*') {
            Some("") => ModelPattern::Any,
            Some(prefix) => ModelPattern::Prefix(prefix.to_string()),
            None => ModelPattern::Exact(text.to_string()),
        }
    }

    /// Whether `model` matches.
    pub fn matches(&self, model: &str) -> bool {
        match self {
            ModelPattern::Any => true,
            ModelPattern::Exact(m) => m == model,
            ModelPattern::Prefix(p) => model.starts_with(p.as_str()),
        }
    }
}

/// One deployment of a route: an upstream, the model id it serves, its share of first picks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// Index into `config.upstreams`.
    pub upstream: usize,
    /// Send this model id upstream instead of the client's (shared with every request's
    /// record).
    pub upstream_model: Option<Arc<str>>,
    pub weight: u32,
    /// For a Bedrock or Vertex deployment of an exact-model route without `upstream_model`:
    /// the provider's id of that model (derived once, here).
    pub provider_model: Option<Arc<str>>,
    /// What session affinity hashes: the upstream's name and model, so every node with the
    /// same deployments agrees whatever their order.
    pub affinity_id: u64,
}

/// A deployment's [`Deployment::affinity_id`].
pub fn affinity_id(upstream_name: &str, upstream_model: Option<&str>) -> u64 {
    let mut bytes = upstream_name.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(upstream_model.unwrap_or_default().as_bytes());
    crate::digest::hash64(&bytes)
}

/// How a route picks its first deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub enum Balance {
    /// By weight, at random.
    #[serde(rename = "weighted")]
    Weighted,
    /// The one with the fewest requests in flight on this worker.
    #[serde(rename = "least_in_flight")]
    LeastInFlight,
    /// The less loaded of two picked at random.
    #[serde(rename = "p2c")]
    PowerOfTwo,
    /// Always the first healthy one.
    #[serde(rename = "ordered")]
    Ordered,
}

/// A model route: models matching `pattern` go to one of `deployments`, the others being the
/// fallbacks, in order.
#[derive(Clone, Debug)]
pub struct Route {
    pub pattern: ModelPattern,
    pub deployments: Vec<Deployment>,
    pub balance: Balance,
    pub max_attempts: usize,
    /// Requests of one Claude Code session go to one deployment (rendezvous hashing).
    pub session_affinity: bool,
}

/// Ejection and retry-budget settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Routing {
    pub eject_after_failures: u32,
    pub eject_base: Duration,
    pub eject_max: Duration,
    pub retry_budget_ratio: f64,
    pub retry_budget_min_per_second: u32,
}

/// A model `/v1/models` lists.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub id: String,
    pub display_name: String,
    pub created_at: String,
}

/// Every route, each naming upstreams that exist, each exact model mapped to the id of every
/// cloud deployment that serves it.
pub fn build(
    file: &FileConfig,
    upstreams: &[UpstreamSpec],
    ids: &model_ids::Overrides,
) -> Result<Vec<Route>, ConfigError> {
    file.routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut route = build_route(i, r, upstreams)?;
            map_provider_models(i, &mut route, upstreams, ids)?;
            Ok(route)
        })
        .collect()
}

/// The `[model_ids]` table as [`model_ids::Overrides`].
pub fn build_model_ids(file: &FileConfig) -> Result<model_ids::Overrides, ConfigError> {
    file.model_ids
        .iter()
        .map(|(model, ids)| {
            let all = [
                &ids.bedrock,
                &ids.vertex,
                &ids.foundry,
                &ids.mantle,
                &ids.anthropic_aws,
                &ids.anthropic_google_cloud,
            ];
            if all.iter().any(|v| v.as_deref().is_some_and(str::is_empty)) {
                return Err(invalid(
                    format!("model_ids.{model}"),
                    "ids must not be empty",
                ));
            }
            let over = model_ids::IdOverride {
                bedrock: ids.bedrock.clone(),
                vertex: ids.vertex.clone(),
                foundry: ids.foundry.clone(),
                mantle: ids.mantle.clone(),
                anthropic_aws: ids.anthropic_aws.clone(),
                anthropic_google_cloud: ids.anthropic_google_cloud.clone(),
            };
            Ok((model.clone(), over))
        })
        .collect()
}

/// Which cloud an upstream is, and (Bedrock) its inference-profile prefix.
pub fn cloud_of(provider: &ProviderSpec) -> Option<(Cloud, Option<&str>)> {
    match provider {
        ProviderSpec::Anthropic => None,
        ProviderSpec::Bedrock { profile, .. } => Some((Cloud::Bedrock, profile.as_deref())),
        ProviderSpec::Vertex { .. } => Some((Cloud::Vertex, None)),
        ProviderSpec::Foundry { .. } => Some((Cloud::Foundry, None)),
        ProviderSpec::Mantle { .. } => Some((Cloud::Mantle, None)),
        ProviderSpec::AnthropicAws { .. } => Some((Cloud::AnthropicAws, None)),
        ProviderSpec::AnthropicGoogleCloud { .. } => Some((Cloud::AnthropicGoogleCloud, None)),
    }
}

/// The model id `deployment` is sent for a request naming `model` in `client`'s format: the
/// operator's `upstream_model`; else the client's own id when it speaks the provider's format;
/// else the Anthropic id (a Messages upstream) or the cloud's id for it.
pub fn served_model(
    config: &super::Config,
    deployment: &Deployment,
    model: &Arc<str>,
    client: ClientFormat,
) -> Result<Arc<str>, Unmappable> {
    let upstream = config.upstreams.get(deployment.upstream);
    let id = provider_model(config, deployment, model, client)?;
    match upstream.filter(|u| !u.serves(&id)) {
        Some(u) => Err(Unmappable::NotListed {
            model: id.to_string(),
            upstream: u.name.clone(),
        }),
        None => Ok(id),
    }
}

/// [`served_model`] before the upstream's model list is consulted. The client's own name, an
/// alias and a derived id fixed by the config are shared, not copied.
fn provider_model(
    config: &super::Config,
    deployment: &Deployment,
    model: &Arc<str>,
    client: ClientFormat,
) -> Result<Arc<str>, Unmappable> {
    if let Some(alias) = &deployment.upstream_model {
        return Ok(Arc::clone(alias));
    }
    let provider = config
        .upstreams
        .get(deployment.upstream)
        .map(|u| &u.provider);
    let Some((cloud, profile)) = provider.and_then(cloud_of) else {
        // A Messages client in Bedrock Mantle mode names `anthropic.claude-…`, which only the
        // clouds know: a Messages upstream gets the Anthropic id.
        let cloud_id = model_ids::is_cloud_id(model);
        return Ok(match client {
            ClientFormat::Anthropic if !cloud_id => Arc::clone(model),
            _ => shared(model, anthropic_model_id(model)),
        });
    };
    let same_format = matches!(
        (client, cloud),
        (ClientFormat::Bedrock, Cloud::Bedrock) | (ClientFormat::Vertex, Cloud::Vertex)
    );
    if same_format {
        return Ok(Arc::clone(model));
    }
    match &deployment.provider_model {
        Some(id) => Ok(Arc::clone(id)),
        None => model_ids::provider_id(
            &anthropic_model_id(model),
            cloud,
            profile,
            &config.model_ids,
        )
        .map(Arc::from),
    }
}

/// `derived` from `model`, sharing `model` when it is the same id.
fn shared(model: &Arc<str>, derived: std::borrow::Cow<'_, str>) -> Arc<str> {
    if *derived == **model {
        Arc::clone(model)
    } else {
        Arc::from(derived.as_ref())
    }
}

/// One line of `sluice models`: a first-party model id a route serves, and the id one of its
/// deployments is sent for it (or why it cannot be).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelMapping {
    /// `routes[i]`.
    pub route: String,
    pub model: String,
    pub upstream: String,
    pub sent: Result<String, Unmappable>,
}

/// What each route sends each deployment for a first-party client: an exact route's model, a
/// wildcard route's for every model the gateway lists or the built-in table knows.
pub fn model_mappings(config: &super::Config) -> Vec<ModelMapping> {
    let mut known: Vec<String> = config.models.iter().map(|m| m.id.clone()).collect();
    known.extend(model_ids::known_models().map(str::to_string));
    known.extend(config.model_ids.keys().cloned());
    let mut seen = std::collections::HashSet::new();
    known.retain(|m| seen.insert(m.clone()));
    let mut rows = Vec::new();
    for (i, route) in config.routes.iter().enumerate() {
        let models: Vec<String> = match &route.pattern {
            ModelPattern::Exact(model) => vec![model.clone()],
            pattern => known
                .iter()
                .filter(|m| pattern.matches(m))
                .cloned()
                .collect(),
        };
        for model in models {
            for d in &route.deployments {
                rows.push(ModelMapping {
                    route: format!("routes[{i}]"),
                    model: model.clone(),
                    upstream: config
                        .upstreams
                        .get(d.upstream)
                        .map(|u| u.name.clone())
                        .unwrap_or_default(),
                    sent: served_model(
                        config,
                        d,
                        &Arc::from(model.as_str()),
                        ClientFormat::Anthropic,
                    )
                    .map(|id| id.to_string()),
                });
            }
        }
    }
    rows
}

/// Derives each cloud deployment's model id for an exact-model route; a model a cloud
/// deployment cannot serve under any id is an error naming the route.
fn map_provider_models(
    i: usize,
    route: &mut Route,
    upstreams: &[UpstreamSpec],
    ids: &model_ids::Overrides,
) -> Result<(), ConfigError> {
    let ModelPattern::Exact(model) = &route.pattern else {
        return Ok(());
    };
    let anthropic_id = anthropic_model_id(model);
    let single = route.deployments.len() == 1;
    let place = |j: usize| {
        if single {
            format!("routes[{i}]")
        } else {
            format!("routes[{i}].deployments[{j}]")
        }
    };
    for (j, d) in route.deployments.iter_mut().enumerate() {
        let upstream = upstreams.get(d.upstream);
        let served = d.upstream_model.as_deref().unwrap_or(model);
        if let Some(u) = upstream.filter(|u| !u.serves(served)) {
            return Err(invalid(
                place(j),
                format!(
                    "upstream `{}` does not list `{served}` among its models",
                    u.name
                ),
            ));
        }
        let cloud = upstream.and_then(|u| cloud_of(&u.provider));
        let (Some((cloud, profile)), None) = (cloud, &d.upstream_model) else {
            continue;
        };
        let id = model_ids::provider_id(&anthropic_id, cloud, profile, ids).map_err(|e| {
            invalid(
                place(j),
                format!("{e}; set upstream_model (or [model_ids])"),
            )
        })?;
        d.provider_model = Some(Arc::from(id));
    }
    Ok(())
}

fn build_route(
    i: usize,
    r: &file::RouteFile,
    upstreams: &[UpstreamSpec],
) -> Result<Route, ConfigError> {
    let path = format!("routes[{i}]");
    if r.model.is_empty() {
        return Err(invalid(format!("{path}.model"), "must not be empty"));
    }
    let find = |name: &str, at: String| {
        upstreams
            .iter()
            .position(|u| u.name == name)
            .ok_or_else(|| invalid(at, format!("no upstream is named `{name}`")))
    };
    let deployments = match (&r.upstream, r.deployments.is_empty()) {
        (Some(name), true) => vec![Deployment {
            upstream: find(name, format!("{path}.upstream"))?,
            upstream_model: r.upstream_model.as_deref().map(Arc::from),
            weight: 1,
            provider_model: None,
            affinity_id: affinity_id(name, r.upstream_model.as_deref()),
        }],
        (None, false) if r.upstream_model.is_none() => r
            .deployments
            .iter()
            .enumerate()
            .map(|(j, d)| {
                let weight = d.weight.unwrap_or(1);
                if weight == 0 {
                    return Err(invalid(
                        format!("{path}.deployments[{j}].weight"),
                        "must be at least 1",
                    ));
                }
                Ok(Deployment {
                    upstream: find(&d.upstream, format!("{path}.deployments[{j}].upstream"))?,
                    upstream_model: d.upstream_model.as_deref().map(Arc::from),
                    weight,
                    provider_model: None,
                    affinity_id: affinity_id(&d.upstream, d.upstream_model.as_deref()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(invalid(
                path,
                "give either `upstream` (and optionally `upstream_model`) or `deployments`",
            ))
        }
    };
    let balance = r.balance.unwrap_or(Balance::Weighted);
    let max_attempts = r.max_attempts.unwrap_or(deployments.len().min(3));
    if max_attempts == 0 {
        return Err(invalid(
            format!("{path}.max_attempts"),
            "must be at least 1",
        ));
    }
    let session_affinity = match r.affinity {
        Some(super::file::Affinity::Session) => true,
        Some(super::file::Affinity::None) => false,
        None => deployments.len() > 1,
    };
    Ok(Route {
        pattern: ModelPattern::parse(&r.model),
        deployments,
        balance,
        max_attempts,
        session_affinity,
    })
}

pub fn build_routing(file: &FileConfig) -> Result<Routing, ConfigError> {
    let r = &file.routing;
    if !(0.0..=1.0).contains(&r.retry_budget_ratio) {
        return Err(invalid(
            "routing.retry_budget_ratio",
            "must be between 0 and 1",
        ));
    }
    if r.eject_after_failures == 0 {
        return Err(invalid(
            "routing.eject_after_failures",
            "must be at least 1",
        ));
    }
    Ok(Routing {
        eject_after_failures: r.eject_after_failures,
        eject_base: duration("routing.eject_base", &r.eject_base)?,
        eject_max: duration("routing.eject_max", &r.eject_max)?,
        retry_budget_ratio: r.retry_budget_ratio,
        retry_budget_min_per_second: r.retry_budget_min_per_second,
    })
}

pub fn build_models(file: &FileConfig) -> Vec<ModelInfo> {
    if file.models.is_empty() {
        return default_models();
    }
    file.models
        .iter()
        .map(|m| ModelInfo {
            id: m.id.clone(),
            display_name: m.display_name.clone().unwrap_or_else(|| m.id.clone()),
            created_at: m
                .created_at
                .clone()
                .unwrap_or_else(|| "2025-01-01T00:00:00Z".into()),
        })
        .collect()
}

fn default_models() -> Vec<ModelInfo> {
    [
        ("claude-opus-5-5", "Claude Opus 5.5", "2026-10-01T00:00:00Z"),
        (
            "claude-sonnet-5-5",
            "Claude Sonnet 5.5",
            "2026-10-01T00:00:00Z",
        ),
        (
            "claude-haiku-5-5",
            "Claude Haiku 5.5",
            "2026-10-01T00:00:00Z",
        ),
        ("claude-opus-4-8", "Claude Opus 4.8", "2026-06-01T00:00:00Z"),
        (
            "claude-sonnet-4-6",
            "Claude Sonnet 4.6",
            "2026-02-01T00:00:00Z",
        ),
        (
            "claude-sonnet-4-5",
            "Claude Sonnet 4.5",
            "2025-09-29T00:00:00Z",
        ),
        (
            "claude-haiku-4-5",
            "Claude Haiku 4.5",
            "2025-10-01T00:00:00Z",
        ),
    ]
    .into_iter()
    .map(|(id, name, at)| ModelInfo {
        id: id.into(),
        display_name: name.into(),
        created_at: at.into(),
    })
    .collect()
}
