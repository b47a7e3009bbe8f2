//! `[signin]` → [`SigninSettings`]: the company's OpenID Connect provider, who may sign in and
//! which team a group maps to, and the lifetimes of what sluice issues. The provider is reached
//! (discovery, code exchange) only by [`crate::signin`]'s own threads.

use std::sync::Arc;
use std::time::Duration;

use super::file::SigninFile;
use super::routes::ModelPattern;
use super::server::duration;
use super::upstreams::SecretSource;
use super::{invalid, ConfigError};

/// Sign-in settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigninSettings {
    /// The issuer URL, without a trailing slash.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<SecretSource>,
    pub scopes: Vec<String>,
    /// Lower-case domains; empty: any.
    pub allowed_email_domains: Vec<String>,
    pub groups_claim: String,
    /// Group → team, first match wins.
    pub teams: Vec<SigninTeam>,
    /// Without a trailing slash.
    pub public_url: Option<String>,
    pub login_notice: Option<String>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub device_code_ttl: Duration,
    pub poll_interval: Duration,
    pub ca_file: Option<String>,
    /// The `tags` key naming a request's billing group (in every access token).
    pub billing_group_tag: Option<String>,
}

/// Members of `group` count under `team` and may use `models`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigninTeam {
    pub group: String,
    pub team: String,
    /// `None`: every model.
    pub models: Option<Arc<Vec<ModelPattern>>>,
}

impl SigninSettings {
    /// The team a member of `groups` counts under.
    pub fn team_of(&self, groups: &[String]) -> Option<String> {
        self.teams
            .iter()
            .find(|t| groups.contains(&t.group))
            .map(|t| t.team.clone())
    }

    /// The models a member of `team` may use (`None`: every model).
    pub fn models_of(&self, team: Option<&str>) -> Option<Arc<Vec<ModelPattern>>> {
        let team = team?;
        self.teams
            .iter()
            .find(|t| t.team == team)
            .and_then(|t| t.models.clone())
    }

    /// Whether `email` may sign in.
    pub fn allows_email(&self, email: &str) -> bool {
        let domain = email.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
        self.allowed_email_domains.is_empty()
            || domain.is_some_and(|d| self.allowed_email_domains.contains(&d))
    }
}

/// Checks `[signin]`.
pub fn build(file: &SigninFile, store_on: bool) -> Result<SigninSettings, ConfigError> {
    let url = |path: &str, text: &str| -> Result<String, ConfigError> {
        if !(text.starts_with("https://") || text.starts_with("http://"))
            || text.contains(['?', '#'])
        {
            return Err(invalid(path, format!("`{text}` is not an http(s) URL")));
        }
        Ok(text.trim_end_matches('/').to_string())
    };
    if !store_on {
        return Err(invalid(
            "signin",
            "sign-in keeps its sessions in the store: set [store] path",
        ));
    }
    if file.client_id.is_empty() {
        return Err(invalid("signin.client_id", "must not be empty"));
    }
    let client_secret = match (&file.client_secret, &file.client_secret_env) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "signin.client_secret",
                "set client_secret or client_secret_env, not both",
            ))
        }
        (Some(s), None) => Some(SecretSource::Inline(s.clone())),
        (None, Some(v)) => Some(SecretSource::Environment(v.clone())),
        (None, None) => None,
    };
    if file
        .login_notice
        .as_ref()
        .is_some_and(|n| n.chars().count() > 500)
    {
        return Err(invalid("signin.login_notice", "at most 500 characters"));
    }
    let ttl = |name: &str, text: &Option<String>, default: &str| {
        duration(
            &format!("signin.{name}"),
            text.as_deref().unwrap_or(default),
        )
    };
    Ok(SigninSettings {
        issuer: url("signin.issuer", &file.issuer)?,
        client_id: file.client_id.clone(),
        client_secret,
        scopes: file
            .scopes
            .clone()
            .unwrap_or_else(|| ["openid", "email", "profile"].map(String::from).to_vec()),
        allowed_email_domains: file
            .allowed_email_domains
            .iter()
            .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
            .collect(),
        groups_claim: file.groups_claim.clone().unwrap_or_else(|| "groups".into()),
        teams: file
            .teams
            .iter()
            .map(|t| SigninTeam {
                group: t.group.clone(),
                team: t.team.clone(),
                models: t
                    .models
                    .as_ref()
                    .map(|m| Arc::new(m.iter().map(|p| ModelPattern::parse(p)).collect())),
            })
            .collect(),
        public_url: file
            .public_url
            .as_deref()
            .map(|u| url("signin.public_url", u))
            .transpose()?,
        login_notice: file.login_notice.clone(),
        access_token_ttl: ttl("access_token_ttl", &file.access_token_ttl, "1h")?,
        refresh_token_ttl: ttl("refresh_token_ttl", &file.refresh_token_ttl, "30d")?,
        device_code_ttl: ttl("device_code_ttl", &file.device_code_ttl, "10m")?,
        poll_interval: ttl("poll_interval", &file.poll_interval, "5s")?,
        ca_file: file.ca_file.clone(),
        billing_group_tag: file
            .billing_group_tag
            .as_deref()
            .map(billing_group_tag)
            .transpose()?,
    })
}

/// A billing-group tag as Claude Code's contract allows it: 1 to 64 ASCII letters, digits or
/// `_ . : / = + - @`, not starting with `anthropic` in any case.
fn billing_group_tag(tag: &str) -> Result<String, ConfigError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.:/=+-@".contains(c);
    let reserved = tag
        .get(..9)
        .is_some_and(|start| start.eq_ignore_ascii_case("anthropic"));
    if tag.is_empty() || tag.len() > 64 || !tag.chars().all(allowed) || reserved {
        return Err(invalid(
            "signin.billing_group_tag",
            "1 to 64 ASCII letters, digits or `_ . : / = + - @`, not starting with `anthropic`",
        ));
    }
    Ok(tag.to_string())
}
