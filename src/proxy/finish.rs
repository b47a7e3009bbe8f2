//! The last phase, finish: the request's trail → its one access record (usage → cost,
//! timings, outcome), handed to the writer threads. Runs for every request, answered locally,
//! refused or forwarded; [`record`] is the only place an access record is written.

use std::time::Instant;

use super::exchange::Exchange;
use super::Gateway;
use crate::record::AccessRecord;
use crate::store::recorder::Finished;
use crate::usage::pricing::pico_to_usd;

/// Writes the record of `ex` and hands it to the recorder (which also takes it to the ledger
/// and the audit log, unless they have it already).
pub fn finish(gw: &Gateway, ex: Exchange) {
    let stored = ex.ledger_synced;
    let record = record(gw, ex);
    gw.finished.push(Finished { record, stored });
}

/// The access record of `ex` as it stands now (the trail's text moves into it).
pub fn record(gw: &Gateway, ex: Exchange) -> AccessRecord {
    let cost = ex.metered_cost_pico(&gw.config.pricing);
    let savings = ex.metered_cache_savings_pico(&gw.config.pricing);
    let added = added_us(&ex);
    let now = ex.response.done.unwrap_or_else(Instant::now);
    let Exchange {
        request,
        started,
        operation,
        format,
        identity,
        model,
        billing_group,
        request_bytes,
        attempts,
        response,
        ..
    } = ex;
    let usage = response.metered.usage;
    let mut r = AccessRecord {
        time: request.time,
        request_id: request.id,
        upstream_request_id: response.upstream_request_id,
        method: request.method,
        path: request.path,
        operation,
        caller: identity,
        session_id: request.session_id,
        user_agent: request.user_agent,
        agent_id: request.agent_id,
        parent_agent_id: request.parent_agent_id,
        managed_settings_checksum: request.managed_settings_checksum,
        billing_group,
        format,
        upstream_model: attempts
            .upstream_model
            .filter(|m| Some(m) != model.as_ref()),
        model,
        upstream: attempts.upstream,
        provider: attempts.provider,
        trace: request.trace,
        stream: response.stream,
        status: response.status,
        error: response.error,
        rejected: response.rejected,
        upstream_error: response.metered.error_type,
        stream_complete: response.metered.complete,
        request_bytes,
        response_bytes: response.bytes,
        total_us: micros(now - started),
        ttfb_us: response.upstream_head.map(|at| micros(at - started)),
        added_us: added,
        upstream_connect_us: attempts.connect_us,
        pooled_connection: attempts.pooled_connection,
        attempts: attempts.count,
        fallbacks: attempts.fallbacks,
        dropped: attempts.dropped,
        ..AccessRecord::default()
    };
    if let Some(usage) = usage {
        r.input_tokens = usage.input_tokens;
        r.output_tokens = usage.output_tokens;
        r.cache_creation_input_tokens = usage.cache_creation_input_tokens;
        let (w5, w1) = usage.cache_writes();
        r.cache_creation_5m_input_tokens = w5;
        r.cache_creation_1h_input_tokens = w1;
        r.cache_read_input_tokens = usage.cache_read_input_tokens;
        r.web_search_requests = usage.web_search_requests;
    }
    if let Some(cost) = cost {
        r.cost_usd = pico_to_usd(cost);
        r.cost_pico = cost;
        r.metered = true;
    }
    if let Some(saved) = savings {
        r.cache_savings_usd = saved as f64 / 1e12;
        r.cache_savings_pico = saved;
    }
    r
}

/// `store.durability = "sync"`: completes the record and waits (without blocking the worker)
/// until the ledger has committed it and the audit log has synced its line. Returns whether
/// the response's last byte may go out: always once both are durable; if they are not within
/// [`SYNC_TIMEOUT`], only when `store.on_failure = "open"`.
pub async fn commit_before_last_byte(gw: &Gateway, ex: &mut Exchange) -> bool {
    let r = record(gw, ex.clone());
    let ledger = gw.records.ledger.record_and_wait(&r);
    let audit_on = gw.records.audit.is_on();
    let audit = audit_on
        .then(|| {
            gw.records
                .audit
                .record_and_wait(crate::audit::AuditEvent::request(&r))
        })
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
                request_id = %ex.request.id,
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
    let before = match (ex.attempts.sent, ex.body_ready) {
        (Some(sent), Some(ready)) => micros(sent.saturating_duration_since(ready)),
        _ => 0,
    };
    let before = before.saturating_sub(micros(ex.attempts.upload_time));
    let after = match (ex.response.upstream_head, ex.response.client_head_sent) {
        (Some(up), Some(down)) => micros(down.saturating_duration_since(up)),
        _ => 0,
    };
    before + after
}

fn micros(d: std::time::Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}
