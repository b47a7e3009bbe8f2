//! Phase 3, route: the request's model (the body's top-level `model`, found without parsing the
//! body, or the model in a Bedrock/Vertex path) → a route (first match wins, on the model as
//! sent or its Anthropic id) → its deployments in the order to try them ([`super::balance`]).

use std::sync::Arc;

use smallvec::{smallvec, SmallVec};

use super::balance::Balancer;
use super::classify::Operation;
use super::recent_values::RecentValues;
use super::GatewayError;
use crate::config::routes::served_model;
use crate::config::Config;
use crate::format::{anthropic_model_id, ClientFormat};
use crate::json::members::{scan_model, ModelScan};

/// One deployment to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Index into `config.upstreams`.
    pub upstream: usize,
    /// The model id this deployment must see, when the request names one (shared with the
    /// target's model when it is the same id).
    pub upstream_model: Option<Arc<str>>,
    /// `upstream_model` is the operator's alias target (configured), not derived from the
    /// client's model name.
    pub aliased: bool,
}

/// Longest model name shared with other requests naming it (see [`RecentValues`]); a longer
/// one is copied.
const MAX_SHARED_MODEL: usize = 128;

/// A route's deployments for one request: a primary and a fallback or two need no allocation.
pub type Candidates = SmallVec<[Candidate; 3]>;

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The model the client asked for, when the request names one (shared with the exchange
    /// and the record).
    pub model: Option<Arc<str>>,
    /// The deployments to try, first choice first (at least one; inline up to three).
    pub candidates: Candidates,
}

impl Target {
    /// The first model `allows` refuses: the model the client named, or a model id sluice
    /// derived from it for a deployment (a cloud id mapped to the Anthropic id) — what the
    /// upstream executes is governed too. An operator's alias target is the operator's choice.
    pub fn refused_model(&self, allows: impl Fn(&str) -> bool) -> Option<&str> {
        let named = self.model.as_deref().filter(|m| !allows(m));
        named.or_else(|| {
            self.candidates
                .iter()
                .filter(|c| !c.aliased)
                .filter_map(|c| c.upstream_model.as_deref())
                .find(|m| !allows(m))
        })
    }
}

/// What the held body tells about the model.
pub enum ModelLookup {
    Known(Target),
    /// The model is not in the part of the body held so far.
    NeedWholeBody,
}

/// Routes a request, given the body bytes held so far (`whole`: they are the entire body).
pub fn route(
    op: &Operation,
    (body, whole): (&[u8], bool),
    session: Option<&[u8]>,
    config: &Config,
    (balancer, recent): (&Balancer, &RecentValues),
) -> Result<ModelLookup, GatewayError> {
    if !op.routes_by_model() {
        return Ok(ModelLookup::Known(Target {
            model: None,
            candidates: smallvec![Candidate {
                upstream: config.default_upstream,
                upstream_model: None,
                aliased: false,
            }],
        }));
    }
    let client = match op {
        Operation::Cloud(call) => call.format(),
        _ => ClientFormat::Anthropic,
    };
    if let Some(model) = match op {
        Operation::Cloud(call) => call.path_model(),
        _ => None,
    } {
        return Ok(ModelLookup::Known(target_for(
            model,
            client,
            session,
            config,
            (balancer, recent),
        )?));
    }
    let model = match scan_model(body) {
        ModelScan::Found(model) => model,
        ModelScan::Incomplete if !whole => return Ok(ModelLookup::NeedWholeBody),
        ModelScan::Absent => {
            return Err(GatewayError::InvalidRequest("model: Field required".into()))
        }
        ModelScan::Incomplete | ModelScan::Invalid => {
            return Err(GatewayError::InvalidRequest(
                "the request body is not a valid JSON object".into(),
            ))
        }
    };
    Ok(ModelLookup::Known(target_for(
        &model,
        client,
        session,
        config,
        (balancer, recent),
    )?))
}

/// The first route matching `model` (as sent, or as its Anthropic id), its deployments ordered,
/// each with the model id its provider knows. A deployment that cannot serve the model under
/// any id is left out; when none is left the request is refused, saying why.
fn target_for(
    model: &str,
    client: ClientFormat,
    session: Option<&[u8]>,
    config: &Config,
    (balancer, recent): (&Balancer, &RecentValues),
) -> Result<Target, GatewayError> {
    let anthropic_id = anthropic_model_id(model);
    let route = config
        .routes
        .iter()
        .find(|r| r.pattern.matches(model) || r.pattern.matches(&anthropic_id))
        .ok_or_else(|| GatewayError::ModelNotRouted(model.to_string()))?;
    let model = match model.len() <= MAX_SHARED_MODEL {
        true => recent.share(model),
        false => Arc::from(model),
    };
    let mut unmappable = None;
    let candidates: Candidates = balancer
        .order(route, session)
        .into_iter()
        .filter_map(|d| route.deployments.get(d))
        .filter_map(|deployment| {
            let upstream_model = match served_model(config, deployment, &model, client) {
                Ok(id) => id,
                Err(e) => {
                    unmappable = Some(e);
                    return None;
                }
            };
            Some(Candidate {
                upstream: deployment.upstream,
                upstream_model: Some(upstream_model),
                aliased: deployment.upstream_model.is_some(),
            })
        })
        .collect();
    if let (true, Some(e)) = (candidates.is_empty(), unmappable) {
        return Err(GatewayError::InvalidRequest(format!(
            "{e}: no deployment of the route for `{model}` can serve it"
        )));
    }
    Ok(Target {
        model: Some(model),
        candidates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_covers_a_derived_upstream_model_but_not_an_alias_target() {
        let candidate = |model: &str, aliased| Candidate {
            upstream: 0,
            upstream_model: Some(model.into()),
            aliased,
        };
        let haiku_only = |m: &str| m.starts_with("claude-haiku-") || m.starts_with("arn:");
        let derived = Target {
            model: Some("arn:aws:bedrock:r:1:inference-profile/claude-opus-4-8".into()),
            candidates: smallvec![candidate("claude-opus-4-8", false)],
        };
        assert_eq!(derived.refused_model(haiku_only), Some("claude-opus-4-8"));
        let alias = Target {
            model: Some("claude-haiku-fast".into()),
            candidates: smallvec![candidate("claude-opus-4-8", true)],
        };
        assert_eq!(alias.refused_model(haiku_only), None);
        let named = Target {
            model: Some("claude-opus-4-8".into()),
            candidates: smallvec![candidate("claude-opus-4-8", false)],
        };
        assert_eq!(named.refused_model(haiku_only), Some("claude-opus-4-8"));
    }
}
