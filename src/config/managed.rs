//! `[[managed_settings]]` → [`ManagedSettings`]: the policy documents Claude Code polls from
//! `/managed/settings`, each for a sign-in group, a team or everyone else, with the checksum the
//! client compares: `sha256:` + hex SHA-256 of the settings JSON with keys sorted at every level
//! and no whitespace (computed once, here).

use super::file::ManagedSettingsFile;
use super::{invalid, ConfigError};

/// Every managed-settings document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedSettings {
    pub policies: Vec<ManagedPolicy>,
}

/// Who a document is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    Group(String),
    Team(String),
    Everyone,
}

/// One document, ready to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedPolicy {
    pub audience: Audience,
    pub uuid: String,
    /// `sha256:<hex>`.
    pub checksum: String,
    /// The settings as canonical JSON (sorted keys, no whitespace).
    pub settings_json: String,
}

impl ManagedSettings {
    /// The document for a caller: their group's first, then their team's, then everyone's.
    pub fn for_caller(&self, groups: &[String], team: Option<&str>) -> Option<&ManagedPolicy> {
        let group = self
            .policies
            .iter()
            .find(|p| matches!(&p.audience, Audience::Group(g) if groups.contains(g)));
        let team_doc = || {
            self.policies
                .iter()
                .find(|p| matches!(&p.audience, Audience::Team(t) if Some(t.as_str()) == team))
        };
        let everyone = || {
            self.policies
                .iter()
                .find(|p| p.audience == Audience::Everyone)
        };
        group.or_else(team_doc).or_else(everyone)
    }
}

/// Checks `[[managed_settings]]`: one audience each, at most one document per audience.
pub fn build(files: &[ManagedSettingsFile]) -> Result<ManagedSettings, ConfigError> {
    let mut policies: Vec<ManagedPolicy> = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let path = format!("managed_settings[{i}]");
        let audience = match (&file.group, &file.team) {
            (Some(_), Some(_)) => {
                return Err(invalid(path, "name a group or a team, not both"));
            }
            (Some(g), None) => Audience::Group(g.clone()),
            (None, Some(t)) => Audience::Team(t.clone()),
            (None, None) => Audience::Everyone,
        };
        if policies.iter().any(|p| p.audience == audience) {
            return Err(invalid(path, "a second document for the same audience"));
        }
        let mut settings_json = String::new();
        canonical(
            &serde_json::Value::Object(file.settings.clone()),
            &mut settings_json,
        );
        let digest = crate::digest::sha256_hex(settings_json.as_bytes());
        policies.push(ManagedPolicy {
            audience,
            uuid: file.uuid.clone().unwrap_or_else(|| uuid_from(&digest)),
            checksum: format!("sha256:{digest}"),
            settings_json,
        });
    }
    Ok(ManagedSettings { policies })
}

/// `value` as the client hashes it: keys sorted at every level, no whitespace. Written here
/// rather than left to serde_json's map order, which a crate feature can change.
fn canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        Value::Number(n) => out.push_str(&js_number(n)),
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A number as JavaScript's `JSON.stringify` writes it (the client hashes that): a whole
/// float without its `.0` (`1.0` → `1`).
fn js_number(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
        _ => n.to_string(),
    }
}

/// A UUID-shaped id from a digest (version 8: custom).
fn uuid_from(hex: &str) -> String {
    let h: Vec<char> = hex.chars().chain(std::iter::repeat('0')).take(32).collect();
    let part = |a: usize, b: usize| h.get(a..b).map(|c| c.iter().collect::<String>());
    format!(
        "{}-{}-8{}-{}-{}",
        part(0, 8).unwrap_or_default(),
        part(8, 12).unwrap_or_default(),
        part(13, 16).unwrap_or_default(),
        part(16, 20).unwrap_or_default(),
        part(20, 32).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_text(text: &str) -> ManagedSettings {
        let file = crate::config::parse_text(text).unwrap();
        build(&file.managed_settings).unwrap()
    }

    #[test]
    fn whole_floats_are_written_as_javascript_writes_them() {
        let m = build_text(
            "[[managed_settings]]\n[managed_settings.settings]\nratio = 1.0\nhalf = 0.5\ncount = 3\n",
        );
        assert_eq!(
            m.policies[0].settings_json,
            r#"{"count":3,"half":0.5,"ratio":1}"#
        );
    }

    #[test]
    fn keys_are_sorted_at_every_level_and_the_checksum_is_over_that() {
        let m = build_text(
            "[[managed_settings]]\n[managed_settings.settings]\nzeta = 1\nalpha = { y = true, b = [\"x\", { d = 1, c = 2 }] }\n",
        );
        let p = &m.policies[0];
        assert_eq!(
            p.settings_json,
            r#"{"alpha":{"b":["x",{"c":2,"d":1}],"y":true},"zeta":1}"#
        );
        assert_eq!(
            p.checksum,
            format!(
                "sha256:{}",
                crate::digest::sha256_hex(p.settings_json.as_bytes())
            )
        );
        assert_eq!(p.uuid.len(), 36);
    }

    #[test]
    fn a_group_wins_over_a_team_which_wins_over_everyone() {
        let m = build_text(
            "[[managed_settings]]\nsettings = { a = 1 }\n[[managed_settings]]\nteam = \"t\"\nsettings = { a = 2 }\n[[managed_settings]]\ngroup = \"g\"\nsettings = { a = 3 }\n",
        );
        let a = |groups: &[&str], team: Option<&str>| {
            let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            m.for_caller(&groups, team).map(|p| p.settings_json.clone())
        };
        assert_eq!(a(&["g"], Some("t")).as_deref(), Some(r#"{"a":3}"#));
        assert_eq!(a(&[], Some("t")).as_deref(), Some(r#"{"a":2}"#));
        assert_eq!(a(&[], None).as_deref(), Some(r#"{"a":1}"#));
    }
}
