//! Phase 7, finish: usage → cost, timings, and the request's access record handed to the
//! writer thread. Runs for every request, answered locally, refused or forwarded.

use std::time::Instant;

use super::exchange::Exchange;
use super::Gateway;
use crate::usage::pricing::pico_to_usd;

/// Completes the record of `ex` and queues it.
pub fn finish(gw: &Gateway, mut ex: Exchange) {
    complete(gw, &mut ex);
    let r = &ex.record;
    if !ex.ledger_synced {
        gw.records.ledger.record(r);
        gw.records.audit.record(request_event(r));
    }
    gw.access_log.record(ex.record);
}

/// The audit log's line for a request decision.
fn request_event(r: &crate::record::AccessRecord) -> crate::audit::AuditEvent {
    crate::audit::AuditEvent {
        kind: "request",
        time: r.time,
        request_id: r.request_id.clone(),
        identity: r.identity.clone(),
        decision: if r.status < 400 || r.upstream.is_some() {
            "allowed"
        } else {
            "refused"
        },
        status: r.status,
        reason: r.error,
        format: r.format.label(),
        model: r.model.clone(),
        upstream: r.upstream.clone(),
        fallbacks: r.fallbacks.clone(),
        detail: None,
    }
}

/// Fills timings, usage and cost into the record. Usage and cost are taken once (the relay may
/// complete a record early, to commit it before the last byte); timings are brought up to date
/// on every call.
pub fn complete(gw: &Gateway, ex: &mut Exchange) {
    let now = Instant::now();
    let added = added_us(ex);
    let r = &mut ex.record;
    r.total_us = micros(now - ex.started);
    if let Some(head) = ex.upstream_head {
        r.ttfb_us = Some(micros(head - ex.started));
    }
    r.added_us = added;
    if std::mem::replace(&mut ex.completed, true) {
        return;
    }
    let metered = std::mem::take(&mut ex.metered);
    let r = &mut ex.record;
    r.stream_complete = metered.complete;
    r.upstream_error = metered.error_type;
    if let Some(usage) = metered.usage {
        r.input_tokens = usage.input_tokens;
        r.output_tokens = usage.output_tokens;
        r.cache_creation_input_tokens = usage.cache_creation_input_tokens;
        let (w5, w1) = usage.cache_writes();
        r.cache_creation_5m_input_tokens = w5;
        r.cache_creation_1h_input_tokens = w1;
        r.cache_read_input_tokens = usage.cache_read_input_tokens;
        r.web_search_requests = usage.web_search_requests;
        let served = super::budget::served_model(r);
        let cost = gw
            .config
            .pricing
            .served_cost_pico(served, metered.model.as_deref(), &usage);
        if let Some(cost) = cost {
            r.cost_usd = pico_to_usd(cost);
            r.cost_pico = cost;
            r.metered = true;
        }
    }
}

/// `store.durability = "sync"`: completes the record and waits (without blocking the worker)
/// until the ledger has committed it and the audit log has synced its line. Returns whether
/// the response's last byte may go out: always once both are durable; if they are not within
/// [`SYNC_TIMEOUT`], only when `store.on_failure = "open"`.
pub async fn commit_before_last_byte(gw: &Gateway, ex: &mut Exchange) -> bool {
    complete(gw, ex);
    let ledger = gw.records.ledger.record_and_wait(&ex.record);
    let audit_on = gw.records.audit.is_on();
    let audit = audit_on
        .then(|| gw.records.audit.record_and_wait(request_event(&ex.record)))
        .flatten();
    ex.ledger_synced = true;
    let (Some(ledger), true) = (ledger, audit.is_some() || !audit_on) else {
        return !gw.config.store.fail_closed;
    };
    let both = async {
        let audited = match audit {
            Some(rx) => rx.recv_async().await.is_ok(),
            None => true,
        };
        ledger.recv_async().await.is_ok() && audited
    };
    match monoio::time::timeout(SYNC_TIMEOUT, both).await {
        Ok(true) => true,
        _ => {
            tracing::error!(
                request_id = %ex.record.request_id,
                "spend ledger did not commit the record in time"
            );
            !gw.config.store.fail_closed
        }
    }
}

/// How long a response's last byte waits for its ledger commit.
pub const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// sluice's own time: up to the upstream request being on the wire (minus the client's body
/// upload), plus from the upstream's response head to the client's.
fn added_us(ex: &Exchange) -> u64 {
    let before = match (ex.upstream_sent, ex.body_ready) {
        (Some(sent), Some(ready)) => micros(sent.saturating_duration_since(ready)),
        _ => 0,
    };
    let before = before.saturating_sub(micros(ex.upload_time));
    let after = match (ex.upstream_head, ex.client_head_sent) {
        (Some(up), Some(down)) => micros(down.saturating_duration_since(up)),
        _ => 0,
    };
    before + after
}

fn micros(d: std::time::Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}
