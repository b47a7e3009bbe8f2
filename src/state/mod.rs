//! What the running gateway holds that lives, built from a [`Config`]: the upstreams with
//! their credentials and TLS clients, the health board, the key tables, the JWT verifier, the
//! HTTPS listener's certificates, the rate-limit and budget counters, sign-in and the
//! telemetry relay.
//!
//! [`State::build`] loads everything a config describes (files, variables, credential
//! commands) and starts nothing; [`State::start`] starts the side threads (credential
//! refreshers, health probers). A reload builds the next [`Config`] and asks the running state
//! to [`State::apply`] it: each part is kept as it is when its part of the config is unchanged,
//! rebuilt (taking over the counters of entities that remain) when it changed. Certificate and
//! JWT key files are read again on every reload, since renewing them in place is what a reload
//! is for; credential commands run again only for an upstream whose spec changed.
//!
//! - [`upstreams`]: an upstream's spec → its credentials and TLS client.
//! - [`keys`]: the virtual-key and AWS-key lookup table.
//! - [`jwt`]: the JWT verifier.
//! - [`edge_tls`]: the HTTPS listener's certificates, loaded and checked.
//! - [`budget_spend`]: budgets start from the spend the ledger holds.
//! - [`live`]: the running (config, state) pair the workers read.

pub mod budget_spend;
pub mod edge_tls;
pub mod jwt;
pub mod keys;
pub mod live;
pub mod upstreams;

use std::sync::Arc;

use thiserror::Error;

use crate::audit::AuditLog;
use crate::config::policies::Policies;
use crate::config::{Config, ConfigError};
use crate::cri::CriVerifier;
use crate::limits::budget::Budgets;
use crate::limits::RateLimiter;
use crate::provider::health::{self, HealthBoard};
use crate::provider::upstream::Upstream;
use crate::signin::Signin;
use crate::store::keys::IssuedKeys;
use crate::store::ledger::LedgerError;
use crate::telemetry::TelemetryRelay;
use crate::tls::EdgeTls;
pub use upstreams::Commands;

/// Why a state could not be built or applied.
#[derive(Debug, Error)]
pub enum StateError {
    /// Something the config names could not be loaded (the error names the field).
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot load budget spend: {0}")]
    Ledger(#[from] LedgerError),
    #[error("sign-in: {0}")]
    Signin(#[from] crate::signin::SigninError),
    #[error("{0}")]
    Cri(#[from] crate::cri::CriError),
}

/// Everything that lives while sluice serves.
#[derive(Debug)]
pub struct State {
    /// The upstreams, in the config's order (routes name them by index).
    pub upstreams: Vec<Upstream>,
    pub health: Arc<HealthBoard>,
    pub keys: Arc<keys::KeyTable>,
    /// Keys issued over the admin API (the key refresher keeps this table current).
    pub issued_keys: Arc<IssuedKeys>,
    pub jwt: Option<Arc<jwt::JwtVerifier>>,
    /// The HTTPS listener's certificates and settings.
    pub edge_tls: Option<Arc<EdgeTls>>,
    pub limiter: Arc<RateLimiter>,
    pub budgets: Arc<Budgets>,
    /// Sign-in at the company's identity provider, when configured (and the store is on).
    pub signin: Option<Arc<Signin>>,
    /// The relay of OpenTelemetry exports, when a collector is configured.
    pub telemetry: Option<Arc<TelemetryRelay>>,
    /// The verifier of customer-routed inference tokens, when `[cri]` is configured.
    pub cri: Option<Arc<CriVerifier>>,
}

impl State {
    /// Loads what `config` describes; starts no thread. With [`Commands::Skip`] (a check) no
    /// credential command runs.
    pub fn build(config: &Config, commands: Commands) -> Result<State, StateError> {
        // In a cluster, budgets and rate limits share one set of lease terms.
        let terms = config
            .cluster
            .as_ref()
            .map(crate::limits::lease::LeaseTerms::new);
        let upstreams = config
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, spec)| upstreams::build(spec, &format!("upstreams[{i}]"), commands))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(State {
            health: HealthBoard::new(upstreams.len()),
            upstreams,
            keys: Arc::new(keys::KeyTable::build(&config.keys)?),
            issued_keys: Arc::default(),
            jwt: build_jwt(config)?,
            edge_tls: load_edge_tls(config)?,
            limiter: Arc::new(limiter(&config.policies, terms.clone())),
            budgets: Arc::new(budgets(&config.policies, terms)),
            signin: open_signin(config, commands)?,
            telemetry: TelemetryRelay::open(&config.telemetry).map(Arc::new),
            cri: open_cri(config)?,
        })
    }

    /// Starts the side threads: credential refreshers, health probers, sign-in (which audits
    /// sign-ins in `audit`) and the telemetry relay.
    pub fn start(&self, audit: &AuditLog) {
        for upstream in &self.upstreams {
            upstream.provider.start_refreshers();
        }
        health::start(&self.health, &self.upstreams);
        if let Some(signin) = &self.signin {
            signin.start(audit);
        }
        if let Some(relay) = &self.telemetry {
            relay.start();
        }
        if let Some(cri) = &self.cri {
            cri.start();
        }
    }

    /// The state for `next`, the running config being `running`: unchanged parts are shared,
    /// changed ones rebuilt and started. Budgets the change adds start from the ledger's spend.
    pub fn apply(
        &self,
        running: &Config,
        next: &Config,
        audit: &AuditLog,
    ) -> Result<State, StateError> {
        let mut fresh = Vec::new();
        let mut upstreams = Vec::with_capacity(next.upstreams.len());
        for (i, spec) in next.upstreams.iter().enumerate() {
            match running.upstreams.iter().position(|r| r == spec) {
                Some(j) if j < self.upstreams.len() => upstreams.push(self.upstreams[j].clone()),
                _ => {
                    let path = format!("upstreams[{i}]");
                    upstreams.push(upstreams::build(spec, &path, Commands::Run)?);
                    fresh.push(i);
                }
            }
        }
        let same_upstreams = running.upstreams == next.upstreams;
        let state = State {
            health: if same_upstreams {
                Arc::clone(&self.health)
            } else {
                HealthBoard::new(upstreams.len())
            },
            upstreams,
            keys: if running.keys == next.keys {
                Arc::clone(&self.keys)
            } else {
                Arc::new(keys::KeyTable::build(&next.keys)?)
            },
            issued_keys: Arc::clone(&self.issued_keys),
            jwt: build_jwt(next)?,
            edge_tls: load_edge_tls(next)?,
            limiter: self.next_limiter(&running.policies, &next.policies),
            budgets: self.next_budgets(&running.policies, next)?,
            signin: match &self.signin {
                Some(signin) if running.signin == next.signin => Some(Arc::clone(signin)),
                _ => {
                    let fresh = open_signin(next, Commands::Run)?;
                    if let Some(signin) = &fresh {
                        signin.start(audit);
                    }
                    fresh
                }
            },
            telemetry: match &self.telemetry {
                Some(relay) if running.telemetry == next.telemetry => Some(Arc::clone(relay)),
                _ => {
                    let fresh = TelemetryRelay::open(&next.telemetry).map(Arc::new);
                    if let Some(relay) = &fresh {
                        relay.start();
                    }
                    fresh
                }
            },
            cri: match &self.cri {
                Some(cri) if running.cri == next.cri => Some(Arc::clone(cri)),
                _ => {
                    let fresh = open_cri(next)?;
                    if let Some(cri) = &fresh {
                        cri.start();
                    }
                    fresh
                }
            },
        };
        for i in fresh {
            if let Some(upstream) = state.upstreams.get(i) {
                upstream.provider.start_refreshers();
            }
        }
        if !same_upstreams {
            health::start(&state.health, &state.upstreams);
        }
        Ok(state)
    }

    /// True when no credential is configured (no virtual, AWS or issued keys, no JWT, no
    /// sign-in, no client-certificate identities): every client is accepted.
    pub fn open_access(&self, config: &Config) -> bool {
        self.keys.is_empty()
            && self.jwt.is_none()
            && config.signin.is_none()
            && config.cri.is_none()
            && !self.issued_keys.issued_any()
            && config
                .tls
                .as_ref()
                .is_none_or(|t| t.client_identities.is_empty())
    }

    fn next_limiter(&self, running: &Policies, next: &Policies) -> Arc<RateLimiter> {
        if running.limits == next.limits {
            return Arc::clone(&self.limiter);
        }
        let mut fresh = limiter(next, self.limiter.lease_terms().cloned());
        fresh.adopt(&self.limiter);
        Arc::new(fresh)
    }

    fn next_budgets(&self, running: &Policies, next: &Config) -> Result<Arc<Budgets>, StateError> {
        let policies = &next.policies;
        if running.budgets == policies.budgets
            && running.session_budgets == policies.session_budgets
        {
            return Ok(Arc::clone(&self.budgets));
        }
        let mut fresh = budgets(policies, self.budgets.lease_terms().cloned());
        let (entities, sessions) = fresh.adopt(&self.budgets);
        if let Some(path) = &next.store.path {
            budget_spend::load(&fresh, path, &entities, &sessions)?;
        }
        Ok(Arc::new(fresh))
    }
}

/// The rate limiter `policies` describe, with fresh counters; in a cluster admitting from
/// leases on `terms`.
fn limiter(
    policies: &Policies,
    terms: Option<Arc<crate::limits::lease::LeaseTerms>>,
) -> RateLimiter {
    let mut limiter = RateLimiter::default();
    if let Some(terms) = terms {
        limiter.lease_with(terms);
    }
    for limit in &policies.limits {
        limiter.add(limit.scope, &limit.name, limit.spec);
    }
    limiter
}

/// The budgets `policies` describe, with nothing spent; in a cluster spent from leases on
/// `terms`.
fn budgets(policies: &Policies, terms: Option<Arc<crate::limits::lease::LeaseTerms>>) -> Budgets {
    let mut budgets = Budgets::default();
    if let Some(terms) = terms {
        budgets.lease_with(terms);
    }
    for budget in &policies.budgets {
        budgets.add(budget.scope, &budget.name, budget.spec);
    }
    for spec in &policies.session_budgets {
        budgets.add_session(*spec);
    }
    budgets
}

/// The CRI verifier (its CA file read now; no key fetched until it starts).
fn open_cri(config: &Config) -> Result<Option<Arc<CriVerifier>>, StateError> {
    Ok(config
        .cri
        .as_ref()
        .map(CriVerifier::open)
        .transpose()?
        .map(Arc::new))
}

/// Sign-in, opened on the store (not under a check, which reads the store nowhere).
fn open_signin(config: &Config, commands: Commands) -> Result<Option<Arc<Signin>>, StateError> {
    match (&config.signin, &config.store.path, commands) {
        (Some(settings), Some(path), Commands::Run) => {
            Ok(Some(Arc::new(Signin::open(settings.clone(), path)?)))
        }
        _ => Ok(None),
    }
}

fn build_jwt(config: &Config) -> Result<Option<Arc<jwt::JwtVerifier>>, ConfigError> {
    config
        .jwt
        .as_ref()
        .map(|settings| jwt::JwtVerifier::build(settings).map(Arc::new))
        .transpose()
}

fn load_edge_tls(config: &Config) -> Result<Option<Arc<EdgeTls>>, ConfigError> {
    config
        .tls
        .as_ref()
        .map(|settings| edge_tls::load(settings, std::time::SystemTime::now()).map(Arc::new))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build, parse_text, Overrides};

    fn config(text: &str) -> Config {
        build(parse_text(text).unwrap(), &Overrides::default()).unwrap()
    }

    #[test]
    fn a_config_builds_without_its_files_and_the_state_names_the_missing_one() {
        let cases = [
            (
                "[[upstreams]]\nname = \"a\"\nurl = \"https://x.test\"\nca_file = \"/nonexistent/ca.pem\"\n",
                "upstreams[0].ca_file",
            ),
            (
                "[[upstreams]]\nname = \"v\"\nprovider = \"vertex\"\nproject = \"p\"\nregion = \"us\"\ngcp_service_account_file = \"/nonexistent/sa.json\"\n",
                "upstreams[0].gcp_service_account_file",
            ),
            (
                "[server]\nlisten_tls = \"127.0.0.1:0\"\n[server.tls]\ncert_file = \"/nonexistent/c.pem\"\nkey_file = \"/nonexistent/k.pem\"\n",
                "server.tls.cert_file",
            ),
            (
                "[jwt]\n[[jwt.keys]]\nalgorithm = \"RS256\"\npublic_key_file = \"/nonexistent/k.pem\"\n",
                "jwt.keys[0].public_key_file",
            ),
            (
                "[[aws_keys]]\nname = \"a\"\naccess_key_id = \"AK\"\nsecret_access_key_env = \"SLUICE_TEST_SURELY_UNSET\"\n",
                "aws_keys[0].secret_access_key_env",
            ),
            (
                "[[upstreams]]\nname = \"b\"\nprovider = \"bedrock\"\nregion = \"us-east-1\"\napi_key_env = \"SLUICE_TEST_SURELY_UNSET\"\n",
                "upstreams[0].api_key_env",
            ),
        ];
        for (text, path) in cases {
            let built = config(text);
            let err = State::build(&built, Commands::Skip)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(path), "{text:?} gave {err}");
        }
    }

    #[test]
    fn apply_keeps_unchanged_parts_and_rebuilds_changed_ones_with_their_counters() {
        let before = config(
            "[[teams]]\nname = \"t\"\nrpm = 10\n[[users]]\nname = \"u\"\nmax_streams = 2\n[[budgets]]\nscope = \"team\"\nname = \"t\"\nlimit_usd = 1.0\n[store]\npath = \"off\"\n",
        );
        let running = State::build(&before, Commands::Skip).unwrap();
        let same = running.apply(&before, &before, &AuditLog::off()).unwrap();
        assert!(Arc::ptr_eq(&same.limiter, &running.limiter));
        assert!(Arc::ptr_eq(&same.budgets, &running.budgets));
        assert!(Arc::ptr_eq(&same.keys, &running.keys));
        assert!(Arc::ptr_eq(&same.health, &running.health));
        assert!(Arc::ptr_eq(&same.issued_keys, &running.issued_keys));

        // The team's limit changes: a new limiter, which keeps the user's streams in flight.
        let user = [(crate::limits::Scope::User, Some("u"))];
        let streams: Vec<_> = (0..2)
            .map(|_| running.limiter.admit(&user, true).unwrap())
            .collect();
        let mut after = before.clone();
        after.policies.limits[0].spec.rpm = Some(20);
        let next = running.apply(&before, &after, &AuditLog::off()).unwrap();
        assert!(!Arc::ptr_eq(&next.limiter, &running.limiter));
        assert!(Arc::ptr_eq(&next.budgets, &running.budgets));
        assert!(Arc::ptr_eq(&next.health, &running.health));
        assert!(
            next.limiter.admit(&user, true).is_err(),
            "the user's streams were not carried over"
        );
        drop(streams);
        assert!(next.limiter.admit(&user, true).is_ok());
    }
}
