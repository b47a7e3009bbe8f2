//! `[cri]` → [`CriSettings`]: customer-routed inference. Claude Enterprise clients present a
//! short-lived ES256 token (`typ: cri+jwt`) minted by Anthropic's issuer; sluice verifies it
//! offline against the issuer's key set for the audiences registered for this gateway and the
//! organizations allowed to use it ([`crate::cri`]).

use super::file::CriFile;
use super::{invalid, ConfigError};

/// Anthropic's CRI issuer.
pub const ANTHROPIC_ISSUER: &str = "https://api.anthropic.com/api/oauth/cri";

/// CRI settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriSettings {
    /// The exact `iss`.
    pub issuer: String,
    /// Where the issuer's key set is read (`{issuer}/jwks.json` unless set).
    pub jwks_url: String,
    /// `aud` values registered for this gateway (a token must name one).
    pub audiences: Vec<String>,
    /// Lower-case organization ids allowed to route inference through this gateway.
    pub org_allowlist: Vec<String>,
    /// Extra PEM roots to trust for the key set (a private CA, tests).
    pub ca_file: Option<String>,
}

/// Checks `[cri]`.
pub fn build(file: &CriFile) -> Result<CriSettings, ConfigError> {
    let issuer = file
        .issuer
        .clone()
        .unwrap_or_else(|| ANTHROPIC_ISSUER.to_string())
        .trim_end_matches('/')
        .to_string();
    secure_url("cri.issuer", &issuer)?;
    let jwks_url = file
        .jwks_url
        .clone()
        .unwrap_or_else(|| format!("{issuer}/jwks.json"));
    secure_url("cri.jwks_url", &jwks_url)?;
    if file.audience.is_empty() || file.audience.iter().any(String::is_empty) {
        return Err(invalid(
            "cri.audience",
            "name the audience(s) registered for this gateway",
        ));
    }
    if file.org_allowlist.is_empty() {
        return Err(invalid(
            "cri.org_allowlist",
            "name the organizations allowed to route inference here",
        ));
    }
    Ok(CriSettings {
        issuer,
        jwks_url,
        audiences: file.audience.clone(),
        org_allowlist: file
            .org_allowlist
            .iter()
            .map(|o| o.to_ascii_lowercase())
            .collect(),
        ca_file: file.ca_file.clone(),
    })
}

/// `https://`, or `http://` to loopback only: the key set decides who may spend, and keys read
/// in clear text could be substituted.
fn secure_url(path: &str, url: &str) -> Result<(), ConfigError> {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| {
            url.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        });
    if url.starts_with("https://") || loopback {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!("`{url}` must be https:// (http:// only to loopback)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(issuer: Option<&str>) -> CriFile {
        CriFile {
            issuer: issuer.map(str::to_string),
            jwks_url: None,
            audience: vec!["https://gw.corp.example".into()],
            org_allowlist: vec!["ORG-1".into()],
            ca_file: None,
        }
    }

    #[test]
    fn the_key_set_comes_from_the_issuer_over_https() {
        let s = build(&file(None)).unwrap();
        assert_eq!(s.jwks_url, format!("{ANTHROPIC_ISSUER}/jwks.json"));
        assert_eq!(s.org_allowlist, vec!["org-1"]);
        assert!(build(&file(Some("http://issuer.example"))).is_err());
        assert!(build(&file(Some("http://127.0.0.1:9/cri"))).is_ok());
        assert!(build(&file(Some("http://127.0.0.1.evil.example"))).is_err());
        let mut no_orgs = file(None);
        no_orgs.org_allowlist.clear();
        assert!(build(&no_orgs).is_err());
    }
}
