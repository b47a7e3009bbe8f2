//! The request path. [`serve_plain`] and [`serve_tls`] (after the handshake, [`crate::tls`])
//! read requests off one client connection (keep-alive and pipelining: answered in order, one at
//! a time); [`handle_request`] tells each request's story, phase by phase, each phase a plain
//! function in its own file that returns what it decided. The story function alone records the
//! decisions in the request's trail ([`exchange::Exchange`]); [`finish`] alone writes the
//! access record from it.
//!
//! 1. [`classify`]: method + canonical path → [`classify::Operation`] (local answer or
//!    forwarded call); a path an upstream could normalize into something else is refused.
//! 2. [`authenticate`]: credential → [`authenticate::Identity`] (virtual or issued key, JWT, a
//!    verified client certificate, pass-through, anonymous); a SigV4 signature is checked over
//!    the head here. Local operations are answered now ([`local`]).
//! 3. [`request_body`] + [`route`]: the body (held whole when governed: a governed member
//!    written twice or escaped is refused) and its `model` → [`route::Target`]; a SigV4
//!    signature is then checked over the body, and only then does its identity count.
//! 4. The key's allow-list (over the model asked for and every model served).
//! 5. Admission under the rate limits of key, user and team → [`crate::limits::Admission`].
//! 6. [`budget`]: the [`crate::limits::budget::Reservation`] at the served model's price
//!    ([`batches`] for governed message batches).
//! 7. [`forward`]: rewrite auth and routing fields, pooled connection, send, response head;
//!    fallback to the next deployment before any response byte reached the client.
//! 8. [`relay`]: stream the response back as it arrives, metering usage in place; the bytes
//!    that end it are held back and handed back ([`relay::Held`]) when what follows must come
//!    first.
//! 9. Settle: rate-limit tokens and the budget reservation to the metered cost.
//! 10. Commit (`store.durability = "sync"`): the record committed and fsynced.
//! 11. Write the held tail; the upstream connection goes back to the pool only if its response
//!     ended exactly on its framing.
//! 12. [`finish`]: usage → cost → one access record (and the ledger and audit lines).
//!
//! The one rule: sluice governs exactly the request the upstream executes. [`dry_run`] runs the
//! same phases without I/O, for fuzzing. Errors before the response starts become one
//! Anthropic-format error response each ([`error::GatewayError`]); after it starts, the relay
//! can only end the stream ([`relay::Broken`]).
// Input is parsed here: byte offsets into it must never panic (use `get`, or validate first).
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::string_slice))]

pub mod authenticate;
pub mod balance;
pub mod batches;
pub mod billing_group;
pub mod budget;
pub mod capability;
pub mod classify;
pub mod client;
pub mod dry_run;
pub mod error;
pub mod exchange;
pub mod finish;
pub mod forward;
pub mod local;
pub mod probe;
pub mod recent_values;
pub mod relay;
pub mod request_body;
pub mod request_id;
pub mod request_slots;
pub mod route;
pub mod signin;
pub mod spare_buffers;
pub mod upstream_refusal;
pub mod usage_notice;
pub mod verified_tokens;

use crate::telemetry::trace_context::TraceContext;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use monoio::net::TcpStream;

pub use error::GatewayError;

use crate::config::{Config, Durability};
use crate::format::count_tokens::CountAnswer;
use crate::http1::RequestHead;
use crate::json;
use crate::provider::connect::Connector;
use crate::provider::pool::Pool;
use crate::runtime::LocalShutdown;
use crate::state::live::{Live, Snapshot};
use crate::state::State;
use crate::store::recorder::worker::WorkerRecords;
use crate::store::recorder::Recorder;
use classify::Operation;
use client::{ClientConn, ClientStream};
use exchange::Exchange;
use request_body::RequestBody;
use request_id::RequestIds;
use request_slots::RequestSlots;
use route::ModelLookup;

/// One worker's gateway under one config: the config, the state built for it, and what only
/// this worker holds (connections, balancer, caches).
pub struct Gateway {
    pub config: Arc<Config>,
    pub state: Arc<State>,
    pub connector: Rc<Connector>,
    pub pool: Rc<Pool>,
    /// This worker's finished records, on their way to the recorder.
    pub finished: Rc<WorkerRecords>,
    pub records: Records,
    pub shutdown: Rc<LocalShutdown>,
    pub balancer: Rc<balance::Balancer>,
    request_ids: Rc<RequestIds>,
    /// Head values and model names this worker's requests sent recently, shared by their
    /// records.
    recent_values: Rc<recent_values::RecentValues>,
    /// I/O buffers finished requests handed back, for the next ones.
    pub spare_buffers: Rc<spare_buffers::SpareBuffers>,
    /// JWTs this worker verified under this config.
    pub verified_tokens: verified_tokens::VerifiedTokens,
    /// Sign-in tokens this worker verified (kept across reloads: sluice's keys do not change
    /// with the config).
    pub signin_tokens: Rc<verified_tokens::SignedInTokens>,
    worker: usize,
    /// Debug builds: `SLUICE_DEBUG_PANIC=1` arms the panic hook (see [`debug_panic`]).
    #[cfg(debug_assertions)]
    debug_panic: bool,
}

impl Gateway {
    pub fn new(
        worker: usize,
        snapshot: &Snapshot,
        connector: Connector,
        records: Records,
        shutdown: Rc<LocalShutdown>,
    ) -> Self {
        let (config, state) = (Arc::clone(&snapshot.config), Arc::clone(&snapshot.state));
        Self {
            pool: Rc::new(Pool::new(config.timeouts.pool_idle)),
            balancer: Rc::new(new_balancer(worker, &config, &state)),
            config,
            state,
            connector: Rc::new(connector),
            finished: Rc::new(WorkerRecords::new(records.recorder.clone())),
            records,
            shutdown,
            request_ids: Rc::new(RequestIds::new(worker)),
            recent_values: Rc::default(),
            spare_buffers: Rc::default(),
            verified_tokens: verified_tokens::VerifiedTokens::default(),
            signin_tokens: Rc::default(),
            worker,
            #[cfg(debug_assertions)]
            debug_panic: std::env::var_os("SLUICE_DEBUG_PANIC").is_some(),
        }
    }

    /// This worker's gateway under a reloaded config. The DNS cache and request ids carry on;
    /// pooled connections and balancer state too, unless the upstreams or the routing settings
    /// changed (then the upstream indices may mean something else).
    fn successor(&self, snapshot: &Snapshot) -> Self {
        let (config, state) = (Arc::clone(&snapshot.config), Arc::clone(&snapshot.state));
        let same_upstreams = Arc::ptr_eq(&state.health, &self.state.health)
            && config.routing == self.config.routing
            && config.timeouts.pool_idle == self.config.timeouts.pool_idle;
        let (pool, balancer) = if same_upstreams {
            (Rc::clone(&self.pool), Rc::clone(&self.balancer))
        } else {
            (
                Rc::new(Pool::new(config.timeouts.pool_idle)),
                Rc::new(new_balancer(self.worker, &config, &state)),
            )
        };
        Self {
            config,
            state,
            connector: Rc::clone(&self.connector),
            pool,
            finished: Rc::clone(&self.finished),
            records: self.records.clone(),
            shutdown: Rc::clone(&self.shutdown),
            balancer,
            request_ids: Rc::clone(&self.request_ids),
            recent_values: Rc::clone(&self.recent_values),
            spare_buffers: Rc::clone(&self.spare_buffers),
            verified_tokens: verified_tokens::VerifiedTokens::default(),
            signin_tokens: Rc::clone(&self.signin_tokens),
            worker: self.worker,
            #[cfg(debug_assertions)]
            debug_panic: self.debug_panic,
        }
    }
}

pub(crate) fn new_balancer(worker: usize, config: &Config, state: &State) -> balance::Balancer {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
        ^ (worker as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    balance::Balancer::new(
        state.upstreams.len(),
        config.routing,
        Arc::clone(&state.health),
        seed,
    )
}

/// A worker's current [`Gateway`], rebuilt from the live config when a reload has moved its
/// generation on (checked once per request: one atomic load).
pub struct WorkerGateway {
    live: Arc<Live>,
    seen: Cell<u64>,
    current: std::cell::RefCell<Rc<Gateway>>,
    /// The boxes this worker's requests run in ([`RequestSlots`] of [`serve_request`]).
    request_slots: Box<dyn std::any::Any>,
}

impl WorkerGateway {
    pub fn new(
        worker: usize,
        live: Arc<Live>,
        records: Records,
        shutdown: Rc<LocalShutdown>,
    ) -> Self {
        let seen = live.generation();
        let gateway = Gateway::new(worker, &live.load(), Connector::new(), records, shutdown);
        Self {
            live,
            seen: Cell::new(seen),
            current: std::cell::RefCell::new(Rc::new(gateway)),
            request_slots: RequestSlots::erased(serve_request),
        }
    }

    /// Closes idle pooled connections past their time and lets go of unused spare buffers and
    /// request boxes, every second, until shutdown.
    pub async fn sweep(self: Rc<Self>) {
        let shutdown = Rc::clone(&self.current().shutdown);
        loop {
            monoio::select! {
                () = monoio::time::sleep(std::time::Duration::from_secs(1)) => {},
                () = shutdown.wait() => return,
            }
            let gw = self.current();
            gw.pool.sweep();
            gw.spare_buffers.sweep();
            if let Some(slots) = RequestSlots::of(&*self.request_slots, serve_request) {
                slots.sweep();
            }
        }
    }

    /// The gateway to serve the next request with.
    pub fn current(&self) -> Rc<Gateway> {
        let generation = self.live.generation();
        if generation != self.seen.get() {
            let next = Rc::new(self.current.borrow().successor(&self.live.load()));
            *self.current.borrow_mut() = next;
            self.seen.set(generation);
        }
        Rc::clone(&self.current.borrow())
    }
}

/// Where a finished request's records go: the access log, the spend ledger, the audit log.
#[derive(Clone)]
pub struct Records {
    pub recorder: Recorder,
    pub ledger: crate::store::ledger::Ledger,
    pub audit: crate::audit::AuditLog,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// A cluster node's outbox and shared stores.
    pub cluster: Option<Arc<crate::server::cluster::ClusterStatus>>,
    /// What the OpenTelemetry exporter sent and dropped, when it runs.
    pub export: Option<Arc<crate::telemetry::export::ExportCounts>>,
}

impl Records {
    /// Whether the records are being kept: the ledger keeps up and, in a cluster, the outbox
    /// is within its bound.
    pub fn store_healthy(&self) -> bool {
        self.ledger.is_healthy() && self.cluster.as_ref().is_none_or(|c| c.outbox.is_healthy())
    }

    /// Scrape-time gauges of the record writers.
    pub fn gauges(&self) -> crate::metrics::ScrapeGauges {
        crate::metrics::ScrapeGauges {
            queued: vec![
                ("recorder", self.recorder.queued()),
                ("ledger", self.ledger.queued()),
                ("audit", self.audit.queued()),
            ],
            dropped: vec![
                ("recorder", self.recorder.dropped()),
                ("ledger", self.ledger.dropped()),
                ("audit", self.audit.dropped()),
            ],
            ledger_healthy: self.ledger.is_healthy(),
            certificates: Vec::new(),
            telemetry: Vec::new(),
            export: self
                .export
                .as_ref()
                .map(|e| e.outcomes())
                .unwrap_or_default(),
            cluster: self.cluster.as_ref().map(|c| c.gauges()),
        }
    }
}

/// Serves one plain-HTTP client connection.
pub async fn serve_plain(stream: TcpStream, worker: Rc<WorkerGateway>) {
    serve_connection(ClientStream::Plain(stream), worker).await;
}

/// Serves one HTTPS client connection: the handshake (bounded by [`crate::tls::accept`]), then
/// requests as on a plain one.
pub async fn serve_tls(
    stream: TcpStream,
    worker: Rc<WorkerGateway>,
    handshakes: Rc<crate::tls::accept::HandshakeSlots>,
) {
    let gw = worker.current();
    let Some(tls) = gw.state.edge_tls.clone() else {
        return;
    };
    let metrics = Arc::clone(&gw.records.metrics);
    drop(gw);
    let counted = |outcome| metrics.count_tls_handshake(outcome);
    if let Some(session) = crate::tls::accept::accept(stream, &tls, &handshakes, counted).await {
        drop(tls);
        serve_connection(ClientStream::Tls(Box::new(session)), worker).await;
    }
}

/// Serves one client connection until it closes, idles out, or shutdown begins.
async fn serve_connection(stream: ClientStream, worker: Rc<WorkerGateway>) {
    let gw = worker.current();
    let mut client = ClientConn::new(stream, gw.config.limits, gw.config.timeouts);
    let shutdown = Rc::clone(&gw.shutdown);
    drop(gw);
    let unshared = RequestSlots::new(serve_request);
    let slots = RequestSlots::of(&*worker.request_slots, serve_request).unwrap_or(&unshared);
    let mut first = true;
    loop {
        let head = client.read_head(&shutdown, first).await;
        let gw = worker.current();
        let head = match head {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(err) => {
                Box::pin(refuse_unparsed(&mut client, &gw, err)).await;
                break;
            }
        };
        first = false;
        // The request's state machine runs in a box of the worker's (see request_slots): an
        // idle keep-alive connection holds just this loop's small state.
        let (back, keep_alive) = slots
            .start(|| serve_request(client, head, Rc::clone(&gw)))
            .await;
        client = back;
        if !keep_alive || gw.shutdown.is_fired() {
            break;
        }
    }
    client.close().await;
}

/// [`handle_request`] in a future that owns what it uses, so that the box it runs in can serve
/// the worker's next request (see [`request_slots`]). Gives the connection back, and whether
/// it may go on.
async fn serve_request(
    mut client: ClientConn,
    head: RequestHead,
    gw: Rc<Gateway>,
) -> (ClientConn, bool) {
    let keep_alive = handle_request(&mut client, head, &gw).await;
    (client, keep_alive)
}

/// Handles one request, start to finish. Returns whether the connection may go on.
pub async fn handle_request(client: &mut ClientConn, head: RequestHead, gw: &Gateway) -> bool {
    let mut ex = Exchange::new(&head, gw.request_ids.next(), &gw.recent_values);
    if gw.config.telemetry.export.is_some() {
        ex.request.trace = Some(TraceContext::continue_or_start(
            head.header_str("traceparent"),
        ));
    }
    let keep_alive = match run_phases(client, &head, gw, &mut ex).await {
        Ok(keep_alive) => keep_alive,
        Err(err) => {
            let close = !head.keep_alive || !client.body_read() || gw.shutdown.is_fired();
            tracing::debug!(request_id = %ex.request.id, error = %err, "request refused");
            let answered = local::reply_error(client, &err, close, &ex.request.id).await;
            ex.response = answered.response;
            answered.keep_alive
        }
    };
    finish::finish(gw, ex);
    keep_alive
}

/// The phases in order; each returns what it decided, and this function alone records it in
/// the request's trail.
async fn run_phases(
    client: &mut ClientConn,
    head: &RequestHead,
    gw: &Gateway,
    ex: &mut Exchange,
) -> Result<bool, GatewayError> {
    #[cfg(debug_assertions)]
    if gw.debug_panic && head.header("x-sluice-debug-panic").is_some() {
        debug_panic();
    }
    let op = classify::classify(head)?;
    ex.set_operation(&op);
    refuse_unavailable(&op, gw)?;
    if let Some(answered) = answer_publicly(client, head, &op, gw, ex).await? {
        ex.response = answered.response;
        return Ok(answered.keep_alive);
    }
    let auth = authenticate_head(client, head, gw)?;
    if auth.pending_sigv4.is_none() {
        ex.set_identity(&auth.identity);
    }
    let messages_only = matches!(op, Operation::Messages | Operation::CountTokens);
    if matches!(auth.identity, authenticate::Identity::CustomerRouted { .. }) && !messages_only {
        return Err(GatewayError::OperationNotAllowed(
            "customer-routed inference may use only /v1/messages and /v1/messages/count_tokens",
        ));
    }
    if op.is_local() {
        let answered = answer_locally(client, head, &op, &auth, gw, ex).await?;
        ex.response = answered.response;
        return Ok(answered.keep_alive);
    }
    let hold_whole = auth.pending_sigv4.is_some();
    let session = session_key(head, &auth.identity);
    let read = read_and_route(client, (head, &op), hold_whole, session.as_deref(), gw).await?;
    let target = read.target;
    ex.body_ready = Some(read.ready);
    ex.request_bytes = read.body.len();
    let tag = gw
        .config
        .signin
        .as_ref()
        .and_then(|s| s.billing_group_tag.as_deref());
    let untagged =
        billing_group::untag(client, (head, read.body, &op), &auth.identity, tag).await?;
    ex.billing_group = untagged.group;
    let body = untagged.body;
    let head = untagged.head.as_ref().unwrap_or(head);
    if let Some(pending) = &auth.pending_sigv4 {
        authenticate::verify_sigv4_body(head, body.held(), pending)?;
        ex.set_identity(&auth.identity);
    }
    ex.model = target.model.clone();
    if let Some(model) = target.refused_model(|m| auth.identity.allows(m)) {
        return Err(auth.identity.deny_model(model));
    }
    if let Some(model) = target
        .model
        .as_deref()
        .filter(|m| probe::is_probe(&op, Some(m), body.held()))
    {
        let answered = probe::answer(client, head, model, &ex.request.id).await?;
        ex.response = answered.response;
        return Ok(answered.keep_alive);
    }
    let admission = admit(&gw.state.limiter, &auth.identity, &op, &body).await?;
    let quota = quota_headers(&admission);
    ex.response_headers.extend(quota);
    let reservation = if op == Operation::MessageBatches(classify::BatchCall::Create) {
        batches::govern(gw, &auth.identity, body.held(), ex)?
    } else {
        budget::reserve_leased(gw, &auth.identity, (&op, &body, &target), ex).await?
    };
    if let Some(reservation) = &reservation {
        ex.response_headers
            .extend(budget::warning_headers(reservation));
        if let (Operation::Messages, Some(standing)) = (&op, &reservation.standing) {
            let now = crate::signin::tokens::now_secs();
            ex.response_headers
                .extend(usage_notice::headers(standing, now));
        }
    }
    let governed = Governed {
        admission,
        reservation,
    };
    let out = Outgoing {
        head,
        op: &op,
        body: &body,
        target: &target,
        customer_routed: matches!(auth.identity, authenticate::Identity::CustomerRouted { .. }),
    };
    deliver(client, &out, governed, gw, ex).await
}

/// What admission decided for a request: its rate-limit admission and budget reservation.
struct Governed<'a> {
    admission: crate::limits::Admission<'a>,
    reservation: Option<crate::limits::budget::Reservation>,
}

/// Phases 7 to 11: forward (with fallback) and relay, settle, commit, write the held tail,
/// pool the upstream connection. Returns whether the client connection may go on.
async fn deliver(
    client: &mut ClientConn,
    out: &Outgoing<'_>,
    governed: Governed<'_>,
    gw: &Gateway,
    ex: &mut Exchange,
) -> Result<bool, GatewayError> {
    let sync = gw.config.store.durability == Durability::Sync && gw.records.ledger.is_on();
    let hold_last = sync || governed.reservation.is_some();
    let forwarded = forward_with_fallback(client, out, hold_last, gw, ex).await;
    let ended = match forwarded {
        Ok((relayed, upstream)) => {
            ex.response = relayed.response;
            relayed.ended.map(|held| (held, upstream))
        }
        Err(err) => {
            settle(gw, governed, ex);
            return Err(err);
        }
    };
    settle(gw, governed, ex);
    let (held, upstream) = match ended {
        Ok(ended) => ended,
        Err(broken) => {
            ex.response.error = Some(broken.label());
            return Ok(false);
        }
    };
    if sync && !finish::commit_before_last_byte(gw, ex).await {
        ex.response.error = Some(relay::Broken::LedgerSync.label());
        return Ok(false);
    }
    if !held.tail.is_empty() {
        match client.write_all(held.tail).await {
            Ok(written) => gw.spare_buffers.give_write(written),
            Err(_) => {
                ex.response.error = Some(relay::Broken::Client.label());
                return Ok(false);
            }
        }
    }
    // One clock read for the head's time (when it went out with the rest), the pooled
    // connection's check-in and the record's end.
    let done = std::time::Instant::now();
    ex.response.done = Some(done);
    ex.response.client_head_sent.get_or_insert(done);
    if let Some(conn) = held.reusable {
        gw.pool.checkin(upstream, conn, done);
    }
    Ok(held.keep_alive)
}

/// Phase 9: settles the rate-limit tokens and the budget reservation to what the response
/// metered.
fn settle(gw: &Gateway, governed: Governed<'_>, ex: &Exchange) {
    if let Some(usage) = &ex.response.metered.usage {
        governed
            .admission
            .settle(usage.input_tokens.saturating_add(usage.output_tokens));
    }
    if let Some(reservation) = governed.reservation {
        budget::settle(gw, reservation, ex);
    }
}

/// Answers what needs no identity: `/metrics`, health, the warm-up HEAD, Bedrock's
/// control-plane list (an empty list, no data) and the sign-in endpoints. `None`: the request
/// goes on.
async fn answer_publicly(
    client: &mut ClientConn,
    head: &RequestHead,
    op: &Operation,
    gw: &Gateway,
    ex: &Exchange,
) -> Result<Option<local::Answered>, GatewayError> {
    let reply = (
        ex.request.id.as_str(),
        head.keep_alive && client.body_read(),
    );
    if *op == Operation::Metrics {
        let mut gauges = gw.records.gauges();
        gauges.certificates = certificate_expiry(&gw.state);
        if let Some(relay) = &gw.state.telemetry {
            gauges.telemetry = relay.counts.outcomes();
        }
        let text = gw.records.metrics.render(&gauges);
        return local::metrics(client, head, text, reply).await.map(Some);
    }
    if matches!(
        op,
        Operation::Health | Operation::WarmUp | Operation::InferenceProfiles
    ) {
        if let (Operation::Health, Some(cluster)) = (op, &gw.records.cluster) {
            return local::health(client, head, cluster, reply).await.map(Some);
        }
        return local::answer(client, head, op, &gw.config, None, reply)
            .await
            .map(Some);
    }
    if let Operation::SignIn(call) = op {
        return signin::answer(client, head, *call, gw, reply.0)
            .await
            .map(Some);
    }
    Ok(None)
}

/// `(certificate, expiry in Unix seconds)` of each served HTTPS certificate.
fn certificate_expiry(state: &State) -> Vec<(String, u64)> {
    let Some(tls) = &state.edge_tls else {
        return Vec::new();
    };
    tls.certificates
        .iter()
        .map(|c| {
            let secs = c
                .not_after
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            (c.label().to_string(), secs)
        })
        .collect()
}

/// Operations this gateway does not serve as configured: message batches unless governed, and
/// anything forwarded while the ledger fails and `store.on_failure = "closed"`.
fn refuse_unavailable(op: &Operation, gw: &Gateway) -> Result<(), GatewayError> {
    if matches!(op, Operation::MessageBatches(_))
        && gw.config.message_batches == crate::config::MessageBatches::Refuse
    {
        return Err(GatewayError::OperationNotAllowed(
            "the Message Batches API is not available through this gateway: a batch names its models inside its body (server.message_batches = \"governed\" checks and reserves each)",
        ));
    }
    if gw.config.store.fail_closed && !gw.records.store_healthy() && !op.is_local() {
        return Err(GatewayError::StoreUnavailable);
    }
    Ok(())
}

/// Phase 2 on the head: the caller's identity. A SigV4 request that declares its payload hash
/// has its signature checked now, before any body byte is read; its identity counts only once
/// signature and payload verified (until then the request is recorded as anonymous).
fn authenticate_head(
    client: &ClientConn,
    head: &RequestHead,
    gw: &Gateway,
) -> Result<authenticate::Authenticated, GatewayError> {
    let connection = authenticate::Connection {
        tokens: Some(&gw.verified_tokens),
        certificate: client.certificate.as_deref(),
        signin_tokens: Some(&gw.signin_tokens),
    };
    let mut auth = authenticate::authenticate(head, &gw.config, &gw.state, connection)?;
    if let Some(pending) = auth.pending_sigv4.as_mut() {
        let limit = client.limits().replay_buffer_bytes;
        authenticate::verify_sigv4_head(head, pending, limit)?;
    }
    Ok(auth)
}

/// A local answer for an authenticated caller; a SigV4-signed one must carry no body, and its
/// signature is verified over the empty payload first.
async fn answer_locally(
    client: &mut ClientConn,
    head: &RequestHead,
    op: &Operation,
    auth: &authenticate::Authenticated,
    gw: &Gateway,
    ex: &mut Exchange,
) -> Result<local::Answered, GatewayError> {
    if let Some(pending) = &auth.pending_sigv4 {
        if head.framing != crate::http1::BodyFraming::Empty {
            return Err(GatewayError::Unauthorized);
        }
        authenticate::verify_sigv4_body(head, &[], pending)?;
        ex.set_identity(&auth.identity);
    }
    let reply = (
        ex.request.id.as_str(),
        head.keep_alive && client.body_read(),
    );
    if *op == Operation::ManagedSettings {
        return local::managed_settings(client, head, &gw.config, &auth.identity, reply).await;
    }
    if *op == Operation::Usage {
        return local::usage(client, head, gw, &auth.identity, reply).await;
    }
    if let Operation::Telemetry(signal) = op {
        if let crate::http1::BodyFraming::Length(n) = head.framing {
            ex.request_bytes = n;
        }
        return local::telemetry(client, head, *signal, gw, reply.0).await;
    }
    local::answer(client, head, op, &gw.config, Some(&auth.identity), reply).await
}

/// The request-rate quota the client is told about, in Anthropic's response headers.
fn quota_headers(admission: &crate::limits::Admission<'_>) -> usage_notice::Fields {
    use compact_str::ToCompactString;
    let Some(q) = &admission.quota else {
        return usage_notice::Fields::new();
    };
    smallvec::smallvec![
        (
            "anthropic-ratelimit-requests-limit",
            q.limit.to_compact_string(),
        ),
        (
            "anthropic-ratelimit-requests-remaining",
            q.remaining.to_compact_string(),
        ),
        ("anthropic-ratelimit-requests-reset", q.reset.clone()),
    ]
}

/// Response fields a governed answer usually gets from sluice: three for the rate limit, up to
/// nine for the usage notice, a few budget warnings.
const ADDED_RESPONSE_FIELDS: usize = 16;

/// A request ready to go upstream: its head, what it is, its body and where it may go.
struct Outgoing<'a> {
    head: &'a RequestHead,
    op: &'a Operation,
    body: &'a RequestBody,
    target: &'a route::Target,
    /// The caller is customer-routed: the upstream's identity and quota fields and error words
    /// never reach it.
    customer_routed: bool,
}

/// Phases 7 and 8 over the route's deployments: forward to the first; on a connect failure,
/// timeout, 429, 5xx or 529 — before any response byte reached the client — fall back to the
/// next while the body can be replayed and the retry budget allows; relay the answer. Returns
/// the relay's result and the upstream (index) that answered; the attempts are in `ex`.
async fn forward_with_fallback(
    client: &mut ClientConn,
    out: &Outgoing<'_>,
    hold_last: bool,
    gw: &Gateway,
    ex: &mut Exchange,
) -> Result<(relay::Relayed, usize), GatewayError> {
    let (head, op, body, target) = (out.head, out.op, out.body, out.target);
    let replayable = !matches!(body, RequestBody::Partial { .. });
    let bedrock_client = op.format() == crate::format::ClientFormat::Bedrock;
    let not_routed =
        || GatewayError::ModelNotRouted(target.model.as_deref().unwrap_or_default().to_string());
    let mut last_error = None;
    let log = &mut ex.attempts;
    let trace = ex.request.trace.as_ref();
    for (attempt, candidate) in target.candidates.iter().enumerate() {
        if attempt > 0 && !(replayable && gw.balancer.allow_retry()) {
            break;
        }
        let more = replayable && attempt + 1 < target.candidates.len();
        let upstream = gw
            .state
            .upstreams
            .get(candidate.upstream)
            .ok_or_else(not_routed)?;
        log.upstream_model = candidate.upstream_model.clone();
        let translation =
            forward::plan(op, head, body, target.model.as_deref(), candidate, upstream)?;
        log.dropped.clone_from(&translation.dropped);
        let outbound = forward::Outbound {
            head,
            body,
            translation: &translation,
            index: candidate.upstream,
            upstream,
            trace,
        };
        let _in_flight = gw.balancer.enter(candidate.upstream);
        match forward::forward(client, &outbound, gw, log).await {
            Ok(response) => {
                let status = response.head.status;
                if retryable_status(status) {
                    gw.balancer
                        .failure(candidate.upstream, retry_after(&response.head));
                    if more {
                        log.fallbacks
                            .push(format!("{}: status {status}", upstream.name));
                        continue; // the response is dropped unread: its connection closes
                    }
                } else {
                    gw.balancer.success(candidate.upstream);
                }
                let betas = if status >= 400 && out.customer_routed {
                    forward::client_betas(out.head)
                } else {
                    Vec::new()
                };
                let audience = if out.customer_routed {
                    Some(upstream_refusal::Audience::CustomerRouted { betas: &betas })
                } else {
                    told_generically(out.op, &upstream.provider)
                        .then_some(upstream_refusal::Audience::CloudClient)
                };
                if let (true, Some(audience)) = (status >= 400, audience) {
                    let idle = gw.config.timeouts.stream_idle;
                    let (refusal, said) = upstream_refusal::read(response, idle, audience).await;
                    tracing::warn!(
                        request_id = %ex.request.id,
                        upstream = %upstream.name,
                        status,
                        upstream_said = %said,
                        "cloud upstream refused the request"
                    );
                    return Err(GatewayError::UpstreamRefused(refusal));
                }
                let counting = match op {
                    Operation::CountTokens => true,
                    Operation::Cloud(call) => call.counts_tokens(),
                    _ => false,
                };
                let conversion = match (bedrock_client, upstream.provider.is_bedrock()) {
                    (true, false) if counting => relay::Conversion::Count(CountAnswer::ToBedrock),
                    (false, true) if counting => relay::Conversion::Count(CountAnswer::FromBedrock),
                    (true, false) => relay::Conversion::SseToEventStream,
                    (false, true) => relay::Conversion::EventStreamToSse,
                    _ => relay::Conversion::None,
                };
                let plan = relay::RelayPlan {
                    req: head,
                    strip_upstream_identity: out.customer_routed,
                    added_headers: &ex.response_headers,
                    body_read: client.body_read(),
                    hold_last,
                    conversion,
                    model_named: ex.model.is_some(),
                };
                let relayed = relay::relay(client, response, &plan, gw).await;
                return Ok((relayed, candidate.upstream));
            }
            Err(err) if err.response().fault == error::Fault::Upstream => {
                gw.balancer.failure(candidate.upstream, None);
                if more {
                    log.fallbacks
                        .push(format!("{}: {}", upstream.name, err.response().label));
                }
                last_error = Some(err);
            }
            Err(err) => return Err(err),
        }
    }
    Err(last_error.unwrap_or_else(not_routed))
}

/// What session affinity keeps together: the caller's Claude Code session, scoped by who the
/// caller is (two callers' session ids never share a key).
fn session_key(head: &RequestHead, identity: &authenticate::Identity) -> Option<Vec<u8>> {
    let session = head.header("x-claude-code-session-id")?;
    let mut key = Vec::with_capacity(64 + session.len());
    identity.write_label(&mut key);
    key.push(0);
    key.extend_from_slice(session);
    Some(key)
}

/// A cloud upstream's refusal of a Messages-format request is told in generic words (its
/// messages may name the operator's cloud account); a cloud-format client gets it as is.
fn told_generically(op: &Operation, provider: &crate::provider::upstream::Provider) -> bool {
    matches!(op, Operation::Messages | Operation::CountTokens)
        && !matches!(provider, crate::provider::upstream::Provider::Anthropic)
}

/// Admission under the rate limits of the caller's key, user and team.
/// Rate-limit admission; in a cluster, a request its node's leases cannot admit waits (at most
/// [`crate::limits::lease::LEASE_WAIT`]) while the renewer asks the store for more, then is
/// tried once more.
async fn admit<'a>(
    limiter: &'a crate::limits::RateLimiter,
    identity: &authenticate::Identity,
    op: &Operation,
    body: &RequestBody,
) -> Result<crate::limits::Admission<'a>, GatewayError> {
    let streaming = match op {
        Operation::Cloud(call) => call.is_stream(),
        // Anything but an absent or `false` stream counts (a lenient upstream may read
        // `"true"` or `1` as true).
        _ => crate::json::edit::field(body.held(), "stream")
            .is_some_and(|v| v != b"false" && v != b"null"),
    };
    let entities = identity.scopes();
    let refused = |r: crate::limits::Refusal| GatewayError::RateLimited {
        which: r.which,
        retry_after: r.retry_after,
    };
    match limiter.admit(&entities, streaming) {
        Err(r) if r.awaiting_lease => {
            let deadline = std::time::Instant::now() + crate::limits::lease::LEASE_WAIT;
            while std::time::Instant::now() < deadline
                && limiter.lease_headroom(&entities) == crate::limits::lease::LeaseWait::Asked
            {
                monoio::time::sleep(crate::limits::lease::LEASE_POLL).await;
            }
            limiter.admit(&entities, streaming).map_err(refused)
        }
        other => other.map_err(refused),
    }
}

/// Statuses that say "try elsewhere": rate limited, overloaded, or failed.
fn retryable_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

/// `retry-after` (whole seconds) or `retry-after-ms`, capped at five minutes.
fn retry_after(head: &crate::http1::ResponseHead) -> Option<std::time::Duration> {
    let ms = head
        .header_str("retry-after-ms")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or_else(|| {
            head.header_str("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| s * 1000)
        })?;
    Some(std::time::Duration::from_millis(ms.min(300_000)))
}

/// The request body as read, and where it goes.
struct Routed {
    body: RequestBody,
    target: route::Target,
    /// When the held part of the body was in memory.
    ready: std::time::Instant,
}

/// Reads the body (all of it when routing or translation needs it) and routes the request.
async fn read_and_route(
    client: &mut ClientConn,
    (head, op): (&RequestHead, &Operation),
    hold_whole: bool,
    session: Option<&[u8]>,
    gw: &Gateway,
) -> Result<Routed, GatewayError> {
    let mut body = request_body::read(client, head).await?;
    let batch_create = *op == Operation::MessageBatches(classify::BatchCall::Create);
    if hold_whole || op.routes_by_model() || batch_create {
        // A governed body is held whole (bounded by max_body_bytes): its governed members are
        // checked over all of it, translation edits it as a whole, a signature covers it.
        body = request_body::complete(client, body).await?;
        if !batch_create {
            json::members::check_governed(body.held()).map_err(body_problem)?;
        }
    }
    let ready = std::time::Instant::now();
    let whole = !matches!(body, RequestBody::Partial { .. });
    let route_held = |held: &[u8], whole| {
        let means = (&*gw.balancer, &*gw.recent_values);
        route::route(op, (held, whole), session, &gw.config, means)
    };
    let target = match route_held(body.held(), whole)? {
        ModelLookup::Known(target) => target,
        ModelLookup::NeedWholeBody => {
            body = request_body::complete(client, body).await?;
            match route_held(body.held(), true)? {
                ModelLookup::Known(target) => target,
                ModelLookup::NeedWholeBody => {
                    return Err(GatewayError::InvalidRequest("incomplete body".into()))
                }
            }
        }
    };
    // An aliased model is rewritten in the body, and an AWS request is signed over its body:
    // either way the body must be held whole.
    let aliased = target
        .candidates
        .iter()
        .any(|c| c.upstream_model != target.model);
    let signed = target.candidates.iter().any(|c| {
        gw.config.upstreams.get(c.upstream).is_some_and(|u| {
            use crate::config::ProviderSpec;
            matches!(
                u.provider,
                ProviderSpec::Bedrock { .. }
                    | ProviderSpec::Mantle { .. }
                    | ProviderSpec::AnthropicAws { .. }
            )
        })
    });
    if (aliased || signed) && matches!(body, RequestBody::Partial { .. }) {
        body = request_body::complete(client, body).await?;
    }
    Ok(Routed {
        body,
        target,
        ready,
    })
}

/// A test hook, in debug builds only, started with `SLUICE_DEBUG_PANIC=1`: a request carrying
/// `x-sluice-debug-panic` panics its worker's task, so tests can prove a panic is contained.
#[cfg(debug_assertions)]
#[expect(clippy::panic, reason = "the debug-build panic hook exists to panic")]
fn debug_panic() {
    panic!("x-sluice-debug-panic");
}

/// The refusal for a body whose governed members could be read more than one way.
pub(crate) fn body_problem(problem: json::members::BodyProblem) -> GatewayError {
    use json::members::BodyProblem;
    match problem {
        BodyProblem::Duplicate(member) => GatewayError::AmbiguousBody {
            member,
            why: "appears more than once",
        },
        BodyProblem::Escaped(member) => GatewayError::AmbiguousBody {
            member,
            why: "is written with escapes in its name",
        },
        BodyProblem::NotAnObject => {
            GatewayError::InvalidRequest("the request body is not a valid JSON object".into())
        }
    }
}

/// Answers a request whose head could not be parsed, logs it, and closes.
async fn refuse_unparsed(client: &mut ClientConn, gw: &Gateway, err: GatewayError) {
    let request_id = gw.request_ids.next();
    tracing::info!(request_id = %request_id, error = %err, "malformed request refused");
    let mut ex = Exchange::unparsed(request_id);
    ex.response = local::reply_error(client, &err, true, &ex.request.id)
        .await
        .response;
    finish::finish(gw, ex);
}
