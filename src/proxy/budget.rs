//! Budget phase: reserve the request's maximum cost against the caller's key, user, team and
//! Claude Code session budgets before forwarding, then settle to the real cost (or release on
//! failure). The request path holds the reservation and settles it once the relay hands back
//! the response's last bytes, *before* they go out: a client that sends its next request on
//! receiving that byte already sees the real spend.
//!
//! The maximum cost is `max_tokens` at the model's output price plus the body's length / 4 as
//! input tokens at the model's highest input price (the 1-hour cache write). Output is a strict
//! bound; the input estimate is the usual four bytes per token, so a request can cost more than
//! its reservation only through an unusually dense prompt.
//!
//! The price is the **served** model's: the id each deployment the request may reach is sent
//! (a route alias to an expensive model costs what it serves), the dearest of them. A served
//! model with no price (and no declared fallback price) cannot spend a budget: the request is
//! refused when any budget applies to it. Settlement charges the served model, or the model
//! the response names when that one is dearer.

use super::authenticate::Identity;
use super::classify::Operation;
use super::exchange::Exchange;
use super::request_body::RequestBody;
use super::route::Target;
use super::{Gateway, GatewayError};
use crate::limits::budget::Reservation;
use crate::limits::lease::{LeaseWait, LEASE_POLL, LEASE_WAIT};

/// Output tokens assumed when the request's `max_tokens` is not in the held part of the body.
pub const UNKNOWN_MAX_TOKENS: u64 = 64_000;

/// The response header that carries soft-threshold warnings.
pub const WARNING_HEADER: &str = "sluice-budget-warning";

/// Reserves the request's maximum cost (`None` when no budget is configured), or refuses it
/// with the budget that is exhausted. `ex` names the request in the audit log's warnings.
pub fn reserve(
    gw: &Gateway,
    identity: &Identity,
    (op, body, target): (&Operation, &RequestBody, &Target),
    ex: &Exchange,
) -> Result<Option<Reservation>, GatewayError> {
    if gw.state.budgets.is_empty() {
        return Ok(None);
    }
    reserve_cost(gw, identity, maximum_cost_pico(gw, op, body, target), ex)
}

/// As [`reserve`]; in a cluster, a request its node's lease cannot cover waits (at most
/// [`LEASE_WAIT`]) while the lease renewer asks the store for more, then is tried once more.
pub async fn reserve_leased(
    gw: &Gateway,
    identity: &Identity,
    parts: (&Operation, &RequestBody, &Target),
    ex: &Exchange,
) -> Result<Option<Reservation>, GatewayError> {
    let first = reserve(gw, identity, parts, ex);
    let Err(GatewayError::BudgetExceeded(refusal)) = &first else {
        return first;
    };
    if !refusal.awaiting_lease {
        return first;
    }
    let (op, body, target) = parts;
    let Ok(cost) = maximum_cost_pico(gw, op, body, target) else {
        return first;
    };
    let entities = identity.scopes();
    let deadline = std::time::Instant::now() + LEASE_WAIT;
    while std::time::Instant::now() < deadline
        && gw.state.budgets.lease_headroom(&entities, cost) == LeaseWait::Asked
    {
        monoio::time::sleep(LEASE_POLL).await;
    }
    reserve(gw, identity, parts, ex)
}

/// A served model without a price (it cannot spend a budget).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpriced(pub String);

/// Reserves `cost`, or refuses: over a budget, or `Err(model)` — a served model without a
/// price, which cannot spend a budget — when any budget applies.
pub fn reserve_cost(
    gw: &Gateway,
    identity: &Identity,
    cost: Result<u64, Unpriced>,
    ex: &Exchange,
) -> Result<Option<Reservation>, GatewayError> {
    let budgets = &gw.state.budgets;
    if budgets.is_empty() {
        return Ok(None);
    }
    let entities = identity.scopes();
    let (cost, unpriced) = match cost {
        Ok(cost) => (cost, None),
        Err(model) => (0, Some(model)),
    };
    let reservation = budgets
        .reserve(&entities, ex.request.session_id.as_deref(), cost)
        .map_err(GatewayError::BudgetExceeded)?;
    if let Some(model) = unpriced.filter(|_| reservation.applies()) {
        return Err(GatewayError::ModelUnpriced(model.0));
    }
    for warning in reservation.warnings.iter().filter(|w| w.crossed) {
        audit_crossing(gw, ex, &warning.which);
    }
    Ok(Some(reservation))
}

/// The response header fields that tell the client a soft threshold is passed.
pub fn warning_headers(
    reservation: &Reservation,
) -> Vec<(&'static str, compact_str::CompactString)> {
    reservation
        .warnings
        .iter()
        .map(|w| {
            (
                WARNING_HEADER,
                compact_str::format_compact!("soft threshold passed: {}", w.which),
            )
        })
        .collect()
}

/// Settles `reservation` to the cost metered in `ex`'s response; keeps it when an upstream was
/// tried but no usage was seen (the cost is unknown, not zero); releases it when nothing was
/// served.
pub fn settle(gw: &Gateway, reservation: Reservation, ex: &Exchange) {
    match ex.metered_cost_pico(&gw.config.pricing) {
        Some(cost) => reservation.settle(cost),
        None if ex.attempts.upstream.is_some() && ex.response.status < 400 => reservation.keep(),
        None => drop(reservation),
    }
}

/// The request's maximum cost on the dearest model it may be served by; `Err(model)` names a
/// served model without a price.
fn maximum_cost_pico(
    gw: &Gateway,
    op: &Operation,
    body: &RequestBody,
    target: &Target,
) -> Result<u64, Unpriced> {
    let counting = match op {
        Operation::CountTokens => true,
        Operation::Cloud(call) => call.counts_tokens(),
        _ => false,
    };
    if counting || target.model.is_none() {
        return Ok(0);
    }
    let max_tokens = crate::json::edit::field(body.held(), "max_tokens");
    let mut dearest = 0u64;
    for candidate in &target.candidates {
        let Some(model) = candidate
            .upstream_model
            .as_deref()
            .or(target.model.as_deref())
        else {
            continue;
        };
        dearest = dearest.max(request_cost_pico(gw, model, max_tokens, body.len())?);
    }
    Ok(dearest)
}

/// The maximum cost of one request served by `model`: its `max_tokens` (raw JSON; absent or
/// unreadable: [`UNKNOWN_MAX_TOKENS`]) at the output price, plus `body_len` / 4 input tokens
/// at the highest input price. `Err(model)` when the model has no price.
pub fn request_cost_pico(
    gw: &Gateway,
    model: &str,
    max_tokens: Option<&[u8]>,
    body_len: u64,
) -> Result<u64, Unpriced> {
    let max_tokens = max_tokens
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(UNKNOWN_MAX_TOKENS);
    let entry = gw
        .config
        .pricing
        .lookup(model)
        .ok_or_else(|| Unpriced(model.to_string()))?;
    let price = entry.long_prompt.map_or(entry.price, |(_, long)| long);
    let input_price = price.input.max(price.cache_write_1h);
    Ok(max_tokens
        .saturating_mul(price.output)
        .saturating_add((body_len / 4).saturating_mul(input_price)))
}

fn audit_crossing(gw: &Gateway, ex: &Exchange, which: &str) {
    gw.records.audit.record(crate::audit::AuditEvent {
        kind: "budget",
        time: std::time::SystemTime::now(),
        request_id: ex.request.id.to_string(),
        identity: ex.identity.label().to_string(),
        decision: "warning",
        status: 0,
        reason: Some("budget_soft_threshold"),
        format: ex.format.label(),
        model: ex.model.clone(),
        upstream: None,
        fallbacks: Vec::new(),
        detail: Some(which.to_string()),
    });
}
