//! The request path without I/O: every decision sluice takes from a request's bytes, in the
//! order [`super::handle_request`] takes them — head scan, classify, authenticate (SigV4 over
//! the head, then the body), the access record's header fields, the governed members, route,
//! the allow-list, the body translation for each deployment and the upstream head rewrite.
//! Nothing is sent anywhere. The `request_path` fuzz target and the hostile-header property
//! drive arbitrary requests through it: whatever the bytes, it returns, it never panics.

use bytes::BytesMut;

use super::classify::{self, Operation};
use super::exchange::Exchange;
use super::request_body::RequestBody;
use super::{authenticate, forward, route, GatewayError};
use crate::config::Config;
use crate::http1::{self, rewrite};
use crate::json::members;
use crate::state::live::Snapshot;
use crate::state::State;

/// How far a request got, and what it was decided to be.
#[derive(Debug)]
pub struct DryRun {
    pub operation: Option<Operation>,
    pub identity: Option<String>,
    pub model: Option<String>,
    /// The upstream heads written, one per deployment tried.
    pub upstream_heads: usize,
    /// Where it stopped, if it was refused.
    pub refused: Option<&'static str>,
}

/// Runs `raw` (a request head, then its body) through every phase that needs no I/O.
pub fn run(raw: &[u8], snapshot: &Snapshot) -> DryRun {
    let (config, state) = (&*snapshot.config, &*snapshot.state);
    let mut outcome = DryRun {
        operation: None,
        identity: None,
        model: None,
        upstream_heads: 0,
        refused: None,
    };
    if let Err(e) = phases(raw, config, state, &mut outcome) {
        outcome.refused = Some(e.response().label);
    }
    outcome
}

fn phases(
    raw: &[u8],
    config: &Config,
    state: &State,
    outcome: &mut DryRun,
) -> Result<(), GatewayError> {
    let mut buf = BytesMut::from(raw);
    let Some(head) = http1::take_request(&mut buf, config.limits.head)? else {
        return Ok(()); // an incomplete head: sluice would read on
    };
    let body_bytes = buf.freeze();
    let mut ex = Exchange::new(&head, "req_dry_run".into(), &Default::default());
    let op = classify::classify(&head)?;
    ex.set_operation(&op);
    outcome.operation = Some(op.clone());
    let mut auth =
        authenticate::authenticate(&head, config, state, authenticate::Connection::default())?;
    if let Some(pending) = auth.pending_sigv4.as_mut() {
        authenticate::verify_sigv4_head(&head, pending, config.limits.replay_buffer_bytes)?;
        authenticate::verify_sigv4_body(&head, &body_bytes, pending)?;
    }
    ex.set_identity(&auth.identity);
    outcome.identity = Some(auth.identity.label());
    if op.is_local() {
        return Ok(());
    }
    if op.routes_by_model() {
        members::check_governed(&body_bytes).map_err(super::body_problem)?;
    }
    let balancer = super::new_balancer(0, config, state);
    let target = match route::route(
        &op,
        (&body_bytes, true),
        None,
        config,
        (&balancer, &Default::default()),
    )? {
        route::ModelLookup::Known(target) => target,
        route::ModelLookup::NeedWholeBody => return Ok(()),
    };
    outcome.model = target.model.as_deref().map(String::from);
    if let Some(model) = target.refused_model(|m| auth.identity.allows(m)) {
        return Err(auth.identity.deny_model(model));
    }
    let body = RequestBody::Whole {
        bytes: body_bytes,
        reframed: false,
    };
    for candidate in &target.candidates {
        let Some(upstream) = state.upstreams.get(candidate.upstream) else {
            continue;
        };
        let translation = forward::plan(
            &op,
            &head,
            &body,
            target.model.as_deref(),
            candidate,
            upstream,
        )?;
        let plan = rewrite::RequestRewrite {
            target: translation.path.as_deref().map(str::as_bytes),
            host: upstream.host_header.as_bytes(),
            drop_client_credentials: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        rewrite::rewrite_request(&head, &plan, &mut out);
        outcome.upstream_heads += 1;
    }
    Ok(())
}
