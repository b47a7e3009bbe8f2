//! The Message Batches API, governed (`server.message_batches = "governed"`; refused by
//! default). A batch names a model per request inside its body, so creating one is governed
//! for every request it holds, as if each were sent on its own:
//!
//! - the body parses as `{"requests": [{"custom_id", "params": {…}}, …]}` with no member twice
//!   (serde refuses a duplicated `requests`, `custom_id` or `params`), and each `params` has
//!   its governed members once and plainly spelled ([`crate::json::members::check_governed`]);
//! - each model is one the key may use and that routes **unaliased** (a batch goes to the
//!   default upstream as it is: an alias would be executed as the name the client wrote);
//! - the maximum cost of every request is reserved together and kept: the results arrive later,
//!   outside any request sluice sees, so the reservation is what the budget is charged.
//!
//! Listing, reading, results, cancelling and deleting batches name no model and pass through.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::authenticate::Identity;
use super::exchange::Exchange;
use super::{body_problem, budget, Gateway, GatewayError};
use crate::json;
use crate::json::members::{check_governed, scan_model, ModelScan};
use crate::limits::budget::Reservation;

/// At most this many requests in one batch (the Anthropic API's own limit).
const MAX_REQUESTS: usize = 100_000;

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    requests: Vec<BatchedRequest<'a>>,
}

#[derive(Deserialize)]
struct BatchedRequest<'a> {
    #[serde(rename = "custom_id")]
    _custom_id: &'a RawValue,
    #[serde(borrow)]
    params: &'a RawValue,
}

/// Checks a batch-creation body for `identity` and reserves the maximum cost of all its
/// requests (`None` when no budget is configured).
pub fn govern(
    gw: &Gateway,
    identity: &Identity,
    body: &[u8],
    ex: &Exchange,
) -> Result<Option<Reservation>, GatewayError> {
    let batch: Batch<'_> = serde_json::from_slice(body).map_err(|e| {
        GatewayError::InvalidRequest(format!("the message batch is not valid: {e}"))
    })?;
    if batch.requests.is_empty() || batch.requests.len() > MAX_REQUESTS {
        return Err(GatewayError::InvalidRequest(format!(
            "a message batch holds 1 to {MAX_REQUESTS} requests"
        )));
    }
    let mut total = 0u64;
    let mut unpriced = None;
    for request in &batch.requests {
        let params = request.params.get().as_bytes();
        check_governed(params).map_err(body_problem)?;
        let model = match scan_model(params) {
            ModelScan::Found(model) => model,
            _ => {
                return Err(GatewayError::InvalidRequest(
                    "params.model: Field required".into(),
                ))
            }
        };
        check_model(gw, identity, &model)?;
        let max_tokens = json::edit::field(params, "max_tokens");
        match budget::request_cost_pico(gw, &model, max_tokens, params.len() as u64) {
            Ok(cost) => total = total.saturating_add(cost),
            Err(model) => unpriced = unpriced.or(Some(model)),
        }
    }
    let cost = unpriced.map_or(Ok(total), Err);
    budget::reserve_cost(gw, identity, cost, ex)
}

/// The key may use `model`, and a route serves it under that same name.
fn check_model(gw: &Gateway, identity: &Identity, model: &str) -> Result<(), GatewayError> {
    if !identity.allows(model) {
        return Err(identity.deny_model(model));
    }
    let route = gw
        .config
        .routes
        .iter()
        .find(|r| r.pattern.matches(model))
        .ok_or_else(|| GatewayError::ModelNotRouted(model.to_string()))?;
    let aliased = route.deployments.iter().any(|d| {
        d.upstream != gw.config.default_upstream
            || d.upstream_model.as_deref().is_some_and(|m| m != model)
    });
    if aliased {
        return Err(GatewayError::OperationNotAllowed(
            "a batched request's model routes to another upstream or model id; batches go to the default upstream unchanged",
        ));
    }
    Ok(())
}
