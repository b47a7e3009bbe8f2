//! Budget phase: reserve the request's maximum cost against the caller's key, user, team and
//! Claude Code session budgets before forwarding, then settle to the real cost (or release on
//! failure). The reservation rides in the exchange so the relay can settle it *before* the
//! response's last byte goes out: a client that sends its next request on receiving that byte
//! already sees the real spend.
//!
//! The maximum cost is `max_tokens` at the model's output price plus the body's length / 4 as
//! input tokens at the model's highest input price (the 1-hour cache write). Output is a strict
//! bound; the input estimate is the usual four bytes per token, so a request can cost more than
//! its reservation only through an unusually dense prompt.

use super::authenticate::Identity;
use super::classify::Operation;
use super::exchange::Exchange;
use super::request_body::RequestBody;
use super::{Gateway, GatewayError};

/// Output tokens assumed when the request's `max_tokens` is not in the held part of the body.
const UNKNOWN_MAX_TOKENS: u64 = 64_000;

/// The response header that carries soft-threshold warnings.
pub const WARNING_HEADER: &str = "sluice-budget-warning";

/// Reserves the request's maximum cost into `ex`, or refuses it with the budget that is
/// exhausted.
pub fn reserve(
    gw: &Gateway,
    identity: &Identity,
    op: &Operation,
    body: &RequestBody,
    model: Option<&str>,
    ex: &mut Exchange,
) -> Result<(), GatewayError> {
    let budgets = &gw.config.budgets;
    if budgets.is_empty() {
        return Ok(());
    }
    let (user, team) = (identity.user(), identity.team());
    let entities = identity.scopes(&user, &team);
    let cost = maximum_cost_pico(gw, op, body, model);
    let reservation = budgets
        .reserve(&entities, ex.record.session_id.as_deref(), cost)
        .map_err(|r| GatewayError::BudgetExceeded {
            which: r.which,
            retry_after: r.retry_after,
        })?;
    for warning in &reservation.warnings {
        ex.response_headers.push((
            WARNING_HEADER,
            format!("soft threshold passed: {}", warning.which),
        ));
        if warning.crossed {
            audit_crossing(gw, ex, &warning.which);
        }
    }
    ex.reservation = Some(reservation);
    Ok(())
}

/// Settles the exchange's reservation (if it still holds one) to the metered cost; keeps it
/// when the upstream answered but no usage was seen (the cost is unknown, not zero); releases
/// it when nothing was served.
pub fn settle(gw: &Gateway, ex: &mut Exchange) {
    let Some(reservation) = ex.reservation.take() else {
        return;
    };
    let cost = ex
        .metered
        .usage
        .as_ref()
        .zip(ex.record.model.as_deref().or(ex.metered.model.as_deref()))
        .and_then(|(usage, model)| gw.config.pricing.cost_pico(model, usage));
    match cost {
        Some(cost) => reservation.settle(cost),
        None if ex.record.upstream.is_some() && ex.record.status < 400 => reservation.keep(),
        None => drop(reservation),
    }
}

fn maximum_cost_pico(gw: &Gateway, op: &Operation, body: &RequestBody, model: Option<&str>) -> u64 {
    if matches!(op, Operation::CountTokens)
        || matches!(
            op,
            Operation::Cloud(crate::format::CloudCall::VertexCountTokens)
        )
    {
        return 0;
    }
    let Some(entry) = model.and_then(|m| gw.config.pricing.lookup(m)) else {
        return 0;
    };
    let price = entry.long_prompt.map_or(entry.price, |(_, long)| long);
    let max_tokens = crate::format::json_edit::field(body.held(), "max_tokens")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(UNKNOWN_MAX_TOKENS);
    let input_tokens = body.len() / 4;
    let input_price = price.input.max(price.cache_write_1h);
    max_tokens
        .saturating_mul(price.output)
        .saturating_add(input_tokens.saturating_mul(input_price))
}

fn audit_crossing(gw: &Gateway, ex: &Exchange, which: &str) {
    let r = &ex.record;
    gw.records.audit.record(crate::audit::AuditEvent {
        kind: "budget",
        time: std::time::SystemTime::now(),
        request_id: r.request_id.clone(),
        identity: r.identity.clone(),
        decision: "warning",
        status: 0,
        reason: Some("budget_soft_threshold"),
        format: r.format,
        model: r.model.clone(),
        upstream: None,
        fallbacks: Vec::new(),
        detail: Some(which.to_string()),
    });
}
