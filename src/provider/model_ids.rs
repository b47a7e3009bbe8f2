//! Each provider's id for a first-party model id: what a Bedrock or Vertex upstream must see when
//! a client names a model the Anthropic API's way (`claude-opus-4-8`), or another cloud's way.
//!
//! The built-in table is the one the pinned Claude Code CLI ships (its `provider_ids`): Bedrock
//! ids are stored without their inference-profile prefix (`anthropic.claude-opus-4-8`), which
//! the upstream's region supplies (`us.` for `us-*`, `eu.`, `apac.`, `us-gov.`, else `global.`,
//! as the CLI does) unless the upstream says otherwise. A `claude-*` id the table does not know
//! follows the rules the table does: a dated id (`claude-x-YYYYMMDD`) is
//! `anthropic.claude-x-YYYYMMDD-v1:0` on Bedrock and `claude-x@YYYYMMDD` on Vertex, an undated
//! one is `anthropic.claude-x` and `claude-x`. A model the table marks as not offered by a
//! provider, and any id that is not a `claude-*` id, cannot be mapped. The config's
//! `[model_ids]` overrides the table, model by model.
// Ids come from requests: byte offsets into them must never panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::string_slice))]

use std::collections::BTreeMap;

/// The providers whose model ids (or offer) differ from the Anthropic API's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    Bedrock,
    Vertex,
    Foundry,
    Mantle,
    AnthropicAws,
    AnthropicGoogleCloud,
}

impl Cloud {
    pub fn label(self) -> &'static str {
        match self {
            Cloud::Bedrock => "Bedrock",
            Cloud::Vertex => "Vertex",
            Cloud::Foundry => "Foundry",
            Cloud::Mantle => "Bedrock Mantle",
            Cloud::AnthropicAws => "Claude Platform on AWS",
            Cloud::AnthropicGoogleCloud => "Claude Platform on Google Cloud",
        }
    }
}

/// One model of the built-in table: its first-party id, the shorter name Claude Code also
/// uses for it, and its id at each provider (`None`: not offered there; Bedrock ids without
/// their inference-profile prefix).
struct Known {
    first_party: &'static str,
    short: &'static str,
    bedrock: Option<&'static str>,
    vertex: Option<&'static str>,
    foundry: Option<&'static str>,
    mantle: Option<&'static str>,
    anthropic_aws: Option<&'static str>,
    google_cloud: Option<&'static str>,
}

impl Known {
    fn id(&self, cloud: Cloud) -> Option<&'static str> {
        match cloud {
            Cloud::Bedrock => self.bedrock,
            Cloud::Vertex => self.vertex,
            Cloud::Foundry => self.foundry,
            Cloud::Mantle => self.mantle,
            Cloud::AnthropicAws => self.anthropic_aws,
            Cloud::AnthropicGoogleCloud => self.google_cloud,
        }
    }
}

/// Claude Code 2.1.330's model catalog (`provider_ids`), generated from the pinned CLI.
#[rustfmt::skip]
const BUILT_IN: &[Known] = &[
    Known { first_party: "claude-3-5-haiku-20241022", short: "claude-3-5-haiku", bedrock: Some("anthropic.claude-3-5-haiku-20241022-v1:0"), vertex: Some("claude-3-5-haiku@20241022"), foundry: Some("claude-3-5-haiku"), mantle: None, anthropic_aws: Some("claude-3-5-haiku-20241022"), google_cloud: None },
    Known { first_party: "claude-haiku-4-5-20251001", short: "claude-haiku-4-5", bedrock: Some("anthropic.claude-haiku-4-5-20251001-v1:0"), vertex: Some("claude-haiku-4-5@20251001"), foundry: Some("claude-haiku-4-5"), mantle: Some("anthropic.claude-haiku-4-5"), anthropic_aws: Some("claude-haiku-4-5-20251001"), google_cloud: Some("claude-haiku-4-5-20251001") },
    Known { first_party: "claude-haiku-5-5", short: "claude-haiku-5-5", bedrock: Some("anthropic.claude-haiku-5-5"), vertex: Some("claude-haiku-5-5"), foundry: Some("claude-haiku-5-5"), mantle: Some("anthropic.claude-haiku-5-5"), anthropic_aws: Some("claude-haiku-5-5"), google_cloud: Some("claude-haiku-5-5") },
    Known { first_party: "claude-3-5-sonnet-20241022", short: "claude-3-5-sonnet", bedrock: Some("anthropic.claude-3-5-sonnet-20241022-v2:0"), vertex: Some("claude-3-5-sonnet-v2@20241022"), foundry: Some("claude-3-5-sonnet"), mantle: None, anthropic_aws: Some("claude-3-5-sonnet-20241022"), google_cloud: None },
    Known { first_party: "claude-3-7-sonnet-20250219", short: "claude-3-7-sonnet", bedrock: Some("anthropic.claude-3-7-sonnet-20250219-v1:0"), vertex: Some("claude-3-7-sonnet@20250219"), foundry: Some("claude-3-7-sonnet"), mantle: None, anthropic_aws: Some("claude-3-7-sonnet-20250219"), google_cloud: None },
    Known { first_party: "claude-sonnet-4-20250514", short: "claude-sonnet-4-0", bedrock: Some("anthropic.claude-sonnet-4-20250514-v1:0"), vertex: Some("claude-sonnet-4@20250514"), foundry: Some("claude-sonnet-4"), mantle: None, anthropic_aws: Some("claude-sonnet-4-20250514"), google_cloud: None },
    Known { first_party: "claude-sonnet-4-5-20250929", short: "claude-sonnet-4-5", bedrock: Some("anthropic.claude-sonnet-4-5-20250929-v1:0"), vertex: Some("claude-sonnet-4-5@20250929"), foundry: Some("claude-sonnet-4-5"), mantle: None, anthropic_aws: Some("claude-sonnet-4-5-20250929"), google_cloud: Some("claude-sonnet-4-5-20250929") },
    Known { first_party: "claude-sonnet-4-6", short: "claude-sonnet-4-6", bedrock: Some("anthropic.claude-sonnet-4-6"), vertex: Some("claude-sonnet-4-6"), foundry: Some("claude-sonnet-4-6"), mantle: None, anthropic_aws: Some("claude-sonnet-4-6"), google_cloud: Some("claude-sonnet-4-6") },
    Known { first_party: "claude-sonnet-5", short: "claude-sonnet-5", bedrock: Some("anthropic.claude-sonnet-5"), vertex: Some("claude-sonnet-5"), foundry: Some("claude-sonnet-5"), mantle: Some("anthropic.claude-sonnet-5"), anthropic_aws: Some("claude-sonnet-5"), google_cloud: Some("claude-sonnet-5") },
    Known { first_party: "claude-sonnet-5-5", short: "claude-sonnet-5-5", bedrock: Some("anthropic.claude-sonnet-5-5"), vertex: Some("claude-sonnet-5-5"), foundry: Some("claude-sonnet-5-5"), mantle: Some("anthropic.claude-sonnet-5-5"), anthropic_aws: Some("claude-sonnet-5-5"), google_cloud: Some("claude-sonnet-5-5") },
    Known { first_party: "claude-opus-4-20250514", short: "claude-opus-4-0", bedrock: Some("anthropic.claude-opus-4-20250514-v1:0"), vertex: Some("claude-opus-4@20250514"), foundry: Some("claude-opus-4"), mantle: None, anthropic_aws: Some("claude-opus-4-20250514"), google_cloud: None },
    Known { first_party: "claude-opus-4-1-20250805", short: "claude-opus-4-1", bedrock: Some("anthropic.claude-opus-4-1-20250805-v1:0"), vertex: Some("claude-opus-4-1@20250805"), foundry: Some("claude-opus-4-1"), mantle: None, anthropic_aws: Some("claude-opus-4-1-20250805"), google_cloud: None },
    Known { first_party: "claude-opus-4-5-20251101", short: "claude-opus-4-5", bedrock: Some("anthropic.claude-opus-4-5-20251101-v1:0"), vertex: Some("claude-opus-4-5@20251101"), foundry: Some("claude-opus-4-5"), mantle: None, anthropic_aws: Some("claude-opus-4-5-20251101"), google_cloud: Some("claude-opus-4-5-20251101") },
    Known { first_party: "claude-opus-4-6", short: "claude-opus-4-6", bedrock: Some("anthropic.claude-opus-4-6-v1"), vertex: Some("claude-opus-4-6"), foundry: Some("claude-opus-4-6"), mantle: None, anthropic_aws: Some("claude-opus-4-6"), google_cloud: Some("claude-opus-4-6") },
    Known { first_party: "claude-opus-4-7", short: "claude-opus-4-7", bedrock: Some("anthropic.claude-opus-4-7"), vertex: Some("claude-opus-4-7"), foundry: Some("claude-opus-4-7"), mantle: Some("anthropic.claude-opus-4-7"), anthropic_aws: Some("claude-opus-4-7"), google_cloud: Some("claude-opus-4-7") },
    Known { first_party: "claude-opus-4-8", short: "claude-opus-4-8", bedrock: Some("anthropic.claude-opus-4-8"), vertex: Some("claude-opus-4-8"), foundry: Some("claude-opus-4-8"), mantle: Some("anthropic.claude-opus-4-8"), anthropic_aws: Some("claude-opus-4-8"), google_cloud: Some("claude-opus-4-8") },
    Known { first_party: "claude-opus-5", short: "claude-opus-5", bedrock: Some("anthropic.claude-opus-5"), vertex: Some("claude-opus-5"), foundry: Some("claude-opus-5"), mantle: Some("anthropic.claude-opus-5"), anthropic_aws: Some("claude-opus-5"), google_cloud: Some("claude-opus-5") },
    Known { first_party: "claude-opus-5-5", short: "claude-opus-5-5", bedrock: Some("anthropic.claude-opus-5-5"), vertex: Some("claude-opus-5-5"), foundry: Some("claude-opus-5-5"), mantle: Some("anthropic.claude-opus-5-5"), anthropic_aws: Some("claude-opus-5-5"), google_cloud: Some("claude-opus-5-5") },
    Known { first_party: "claude-fable-5", short: "claude-fable-5", bedrock: Some("anthropic.claude-fable-5"), vertex: Some("claude-fable-5"), foundry: Some("claude-fable-5"), mantle: Some("anthropic.claude-fable-5"), anthropic_aws: Some("claude-fable-5"), google_cloud: Some("claude-fable-5") },
    Known { first_party: "claude-fable-5-1", short: "claude-fable-5-1", bedrock: Some("anthropic.claude-fable-5-1"), vertex: Some("claude-fable-5-1"), foundry: Some("claude-fable-5-1"), mantle: Some("anthropic.claude-fable-5-1"), anthropic_aws: Some("claude-fable-5-1"), google_cloud: Some("claude-fable-5-1") },
    Known { first_party: "claude-fable-5-2", short: "claude-fable-5-2", bedrock: Some("anthropic.claude-fable-5-2"), vertex: Some("claude-fable-5-2"), foundry: Some("claude-fable-5-2"), mantle: Some("anthropic.claude-fable-5-2"), anthropic_aws: Some("claude-fable-5-2"), google_cloud: Some("claude-fable-5-2") },
    Known { first_party: "claude-mythos-5", short: "claude-mythos-5", bedrock: None, vertex: None, foundry: None, mantle: None, anthropic_aws: None, google_cloud: None },
    Known { first_party: "claude-mythos-5-1", short: "claude-mythos-5-1", bedrock: None, vertex: None, foundry: None, mantle: None, anthropic_aws: None, google_cloud: None },
    Known { first_party: "claude-mythos-5-2", short: "claude-mythos-5-2", bedrock: None, vertex: None, foundry: None, mantle: None, anthropic_aws: None, google_cloud: None },
];

/// The inference-profile prefixes Bedrock knows (the CLI's list).
pub const PROFILE_PREFIXES: &[&str] = &["us", "eu", "apac", "jp", "au", "us-gov", "global"];

/// Whether `model` is a cloud's id rather than the Anthropic API's: `anthropic.claude-…`, with
/// or without an inference-profile prefix, or an ARN.
pub fn is_cloud_id(model: &str) -> bool {
    let bare = match model.split_once('.') {
        Some((prefix, rest)) if PROFILE_PREFIXES.contains(&prefix) => rest,
        _ => model,
    };
    bare.starts_with("anthropic.") || model.starts_with("arn:")
}

/// The profile prefix for a Bedrock region, as Claude Code picks it.
pub fn profile_prefix_for_region(region: &str) -> &'static str {
    if region.starts_with("us-gov-") {
        "us-gov"
    } else if region.starts_with("us-") {
        "us"
    } else if region.starts_with("eu-") {
        "eu"
    } else if region.starts_with("ap-") {
        "apac"
    } else {
        "global"
    }
}

/// The operator's ids for one model (`[model_ids."claude-…"]`), replacing the table's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdOverride {
    pub bedrock: Option<String>,
    pub vertex: Option<String>,
    pub foundry: Option<String>,
    pub mantle: Option<String>,
    pub anthropic_aws: Option<String>,
    pub anthropic_google_cloud: Option<String>,
}

impl IdOverride {
    fn id(&self, cloud: Cloud) -> Option<&str> {
        match cloud {
            Cloud::Bedrock => self.bedrock.as_deref(),
            Cloud::Vertex => self.vertex.as_deref(),
            Cloud::Foundry => self.foundry.as_deref(),
            Cloud::Mantle => self.mantle.as_deref(),
            Cloud::AnthropicAws => self.anthropic_aws.as_deref(),
            Cloud::AnthropicGoogleCloud => self.anthropic_google_cloud.as_deref(),
        }
    }
}

/// The config's overrides, by first-party id.
pub type Overrides = BTreeMap<String, IdOverride>;

/// Why a model has no id at a provider.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unmappable {
    #[error("`{model}` is not offered on {}", cloud.label())]
    NotOffered { model: String, cloud: Cloud },
    #[error("`{model}` is not a Claude model id, so sluice cannot derive its {} id", cloud.label())]
    NotClaude { model: String, cloud: Cloud },
    #[error("upstream `{upstream}` does not list `{model}` among its models")]
    NotListed { model: String, upstream: String },
}

/// The id of first-party model `model` (an Anthropic id, as [`crate::format::anthropic_model_id`]
/// gives it) at `cloud`; for Bedrock, `profile` is the inference-profile prefix to put in front
/// (`None`: the bare `anthropic.` id).
pub fn provider_id(
    model: &str,
    cloud: Cloud,
    profile: Option<&str>,
    overrides: &Overrides,
) -> Result<String, Unmappable> {
    let over = names_of(model)
        .filter_map(|name| overrides.get(name))
        .find_map(|o| o.id(cloud));
    let id = match over {
        Some(id) => id.to_string(),
        None => table_or_rule(model, cloud)?,
    };
    Ok(match cloud {
        Cloud::Bedrock => with_profile(&id, profile),
        _ => id,
    })
}

/// `model` and, for a model of the table, its other name (dated and short ids are one model).
fn names_of(model: &str) -> impl Iterator<Item = &str> {
    let other = BUILT_IN
        .iter()
        .find(|k| k.first_party == model || k.short == model)
        .map(|k| {
            if k.first_party == model {
                k.short
            } else {
                k.first_party
            }
        });
    std::iter::once(model).chain(other)
}

fn table_or_rule(model: &str, cloud: Cloud) -> Result<String, Unmappable> {
    if let Some(k) = BUILT_IN
        .iter()
        .find(|k| k.first_party == model || k.short == model)
    {
        return k
            .id(cloud)
            .map(str::to_string)
            .ok_or(Unmappable::NotOffered {
                model: model.to_string(),
                cloud,
            });
    }
    let plain = model.starts_with("claude-")
        && model
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !plain {
        return Err(Unmappable::NotClaude {
            model: model.to_string(),
            cloud,
        });
    }
    let undated = split_date(model).map_or(model, |(name, _)| name);
    Ok(match (cloud, split_date(model)) {
        (Cloud::Bedrock, Some(_)) => format!("anthropic.{model}-v1:0"),
        (Cloud::Bedrock, None) => format!("anthropic.{model}"),
        (Cloud::Vertex, Some((name, date))) => format!("{name}@{date}"),
        (Cloud::Foundry, _) => undated.to_string(),
        (Cloud::Mantle, _) => format!("anthropic.{undated}"),
        (Cloud::Vertex | Cloud::AnthropicAws | Cloud::AnthropicGoogleCloud, _) => model.to_string(),
    })
}

/// `claude-x-YYYYMMDD` → (`claude-x`, `YYYYMMDD`).
fn split_date(model: &str) -> Option<(&str, &str)> {
    let (name, date) = model.rsplit_once('-')?;
    (date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit())).then_some((name, date))
}

/// An `anthropic.` id with `profile.` in front; an id that already names a profile, or an ARN,
/// is the operator's exact choice and stays as it is.
fn with_profile(id: &str, profile: Option<&str>) -> String {
    match profile {
        Some(p) if id.starts_with("anthropic.") => format!("{p}.{id}"),
        _ => id.to_string(),
    }
}

/// Every first-party id of the built-in table (for `sluice models`).
pub fn known_models() -> impl Iterator<Item = &'static str> {
    BUILT_IN.iter().map(|k| k.first_party)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bedrock(model: &str, profile: Option<&str>) -> Result<String, Unmappable> {
        provider_id(model, Cloud::Bedrock, profile, &Overrides::new())
    }

    fn vertex(model: &str) -> Result<String, Unmappable> {
        provider_id(model, Cloud::Vertex, None, &Overrides::new())
    }

    #[test]
    fn the_table_gives_the_ids_claude_code_uses() {
        assert_eq!(
            bedrock("claude-opus-4-8", Some("us")).unwrap(),
            "us.anthropic.claude-opus-4-8"
        );
        assert_eq!(
            bedrock("claude-sonnet-4-5-20250929", Some("eu")).unwrap(),
            "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
        );
        assert_eq!(
            bedrock("claude-haiku-4-5", Some("us")).unwrap(),
            "us.anthropic.claude-haiku-4-5-20251001-v1:0"
        );
        assert_eq!(
            bedrock("claude-opus-4-6", None).unwrap(),
            "anthropic.claude-opus-4-6-v1"
        );
        assert_eq!(
            vertex("claude-sonnet-4-5-20250929").unwrap(),
            "claude-sonnet-4-5@20250929"
        );
        assert_eq!(
            vertex("claude-opus-4-20250514").unwrap(),
            "claude-opus-4@20250514"
        );
        assert_eq!(vertex("claude-opus-5-5").unwrap(), "claude-opus-5-5");
    }

    #[test]
    fn unknown_claude_ids_follow_the_rules_and_others_are_refused() {
        assert_eq!(
            bedrock("claude-opus-6-20270101", Some("apac")).unwrap(),
            "apac.anthropic.claude-opus-6-20270101-v1:0"
        );
        assert_eq!(
            bedrock("claude-opus-6", Some("global")).unwrap(),
            "global.anthropic.claude-opus-6"
        );
        assert_eq!(
            vertex("claude-opus-6-20270101").unwrap(),
            "claude-opus-6@20270101"
        );
        assert!(matches!(
            bedrock("claude-mythos-5", Some("us")),
            Err(Unmappable::NotOffered { .. })
        ));
        assert!(matches!(vertex("gpt-9"), Err(Unmappable::NotClaude { .. })));
        assert!(matches!(
            vertex("claude-x/../y"),
            Err(Unmappable::NotClaude { .. })
        ));
    }

    #[test]
    fn overrides_win_and_exact_profiles_stay() {
        let mut o = Overrides::new();
        o.insert(
            "claude-opus-4-8".into(),
            IdOverride {
                bedrock: Some("arn:aws:bedrock:us-east-1:1:application-inference-profile/x".into()),
                vertex: Some("claude-opus-4-8@20260601".into()),
                ..Default::default()
            },
        );
        o.insert(
            "claude-sonnet-4-6".into(),
            IdOverride {
                bedrock: Some("anthropic.claude-sonnet-4-6-v2:0".into()),
                vertex: None,
                ..Default::default()
            },
        );
        let b = |m| provider_id(m, Cloud::Bedrock, Some("eu"), &o).unwrap();
        assert_eq!(
            b("claude-opus-4-8"),
            "arn:aws:bedrock:us-east-1:1:application-inference-profile/x"
        );
        assert_eq!(
            b("claude-sonnet-4-6"),
            "eu.anthropic.claude-sonnet-4-6-v2:0"
        );
        assert_eq!(
            provider_id("claude-opus-4-8", Cloud::Vertex, None, &o).unwrap(),
            "claude-opus-4-8@20260601"
        );
        assert_eq!(
            provider_id("claude-sonnet-4-6", Cloud::Vertex, None, &o).unwrap(),
            "claude-sonnet-4-6"
        );
        let mut o = o.clone();
        o.insert(
            "claude-haiku-4-5".into(),
            IdOverride {
                bedrock: Some("anthropic.claude-haiku-4-5-v9".into()),
                vertex: None,
                ..Default::default()
            },
        );
        assert_eq!(
            provider_id("claude-haiku-4-5-20251001", Cloud::Bedrock, Some("eu"), &o).unwrap(),
            "eu.anthropic.claude-haiku-4-5-v9"
        );
    }

    #[test]
    fn cloud_ids_are_told_from_anthropic_ids() {
        for id in [
            "anthropic.claude-opus-5-5",
            "us.anthropic.claude-opus-4-8",
            "arn:aws:bedrock:r:1:x/y",
        ] {
            assert!(is_cloud_id(id), "{id}");
        }
        for id in ["claude-opus-5-5", "claude-sonnet-4-5@20250929", "us.claude"] {
            assert!(!is_cloud_id(id), "{id}");
        }
    }

    #[test]
    fn regions_pick_the_profile_claude_code_picks() {
        let cases = [
            ("us-east-1", "us"),
            ("us-gov-west-1", "us-gov"),
            ("eu-central-1", "eu"),
            ("ap-northeast-1", "apac"),
            ("ca-central-1", "global"),
        ];
        for (region, prefix) in cases {
            assert_eq!(profile_prefix_for_region(region), prefix, "{region}");
        }
    }
}
