//! Phase 3, route: the request's model (the body's top-level `model`, found without parsing the
//! body) → the upstream that serves it. Model routes are tried in order; the first match wins.

use super::classify::Operation;
use super::model_field::{scan_model, ModelScan};
use super::GatewayError;
use crate::config::Config;
use crate::format::anthropic_model_id;

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Index into `config.upstreams`.
    pub upstream: usize,
    /// The model the client asked for, when the request names one.
    pub model: Option<String>,
    /// The model id the upstream must see, when the request names one.
    pub upstream_model: Option<String>,
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
    body: &[u8],
    whole: bool,
    config: &Config,
) -> Result<ModelLookup, GatewayError> {
    if !op.routes_by_model() {
        return Ok(ModelLookup::Known(Target {
            upstream: config.default_upstream,
            model: None,
            upstream_model: None,
        }));
    }
    let cloud = match op {
        Operation::Cloud(call) => Some(call),
        _ => None,
    };
    if let Some(model) = cloud.and_then(|c| c.path_model()) {
        return Ok(ModelLookup::Known(target_for(model, true, config)?));
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
        cloud.is_some(),
        config,
    )?))
}

/// The first route matching `model` (as sent, or as its Anthropic id).
fn target_for(model: &str, cloud: bool, config: &Config) -> Result<Target, GatewayError> {
    let anthropic_id = anthropic_model_id(model);
    let route = config
        .routes
        .iter()
        .find(|r| r.pattern.matches(model) || r.pattern.matches(&anthropic_id))
        .ok_or_else(|| GatewayError::ModelNotRouted(model.to_string()))?;
    let upstream_model = match (&route.upstream_model, cloud) {
        (Some(alias), _) => alias.clone(),
        (None, true) => anthropic_id,
        (None, false) => model.to_string(),
    };
    Ok(Target {
        upstream: route.upstream,
        model: Some(model.to_string()),
        upstream_model: Some(upstream_model),
    })
}
