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

/// The clouds whose ids differ from the Anthropic API's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    Bedrock,
    Vertex,
}

impl Cloud {
    pub fn label(self) -> &'static str {
        match self {
            Cloud::Bedrock => "Bedrock",
            Cloud::Vertex => "Vertex",
        }
    }
}

/// One model of the built-in table: its first-party id, the shorter name Claude Code also
/// uses for it, and its Bedrock (without profile prefix) and Vertex ids (`None`: not offered).
struct Known {
    first_party: &'static str,
    short: &'static str,
    bedrock: Option<&'static str>,
    vertex: Option<&'static str>,
}

const fn known(
    first_party: &'static str,
    short: &'static str,
    bedrock: Option<&'static str>,
    vertex: Option<&'static str>,
) -> Known {
    Known {
        first_party,
        short,
        bedrock,
        vertex,
    }
}

/// From Claude Code 2.1.330's model table (`provider_ids`), prefixes taken off the Bedrock ids.
const BUILT_IN: &[Known] = &[
    known(
        "claude-opus-5-5",
        "claude-opus-5-5",
        Some("anthropic.claude-opus-5-5"),
        Some("claude-opus-5-5"),
    ),
    known(
        "claude-sonnet-5-5",
        "claude-sonnet-5-5",
        Some("anthropic.claude-sonnet-5-5"),
        Some("claude-sonnet-5-5"),
    ),
    known(
        "claude-haiku-5-5",
        "claude-haiku-5-5",
        Some("anthropic.claude-haiku-5-5"),
        Some("claude-haiku-5-5"),
    ),
    known(
        "claude-opus-5",
        "claude-opus-5",
        Some("anthropic.claude-opus-5"),
        Some("claude-opus-5"),
    ),
    known(
        "claude-sonnet-5",
        "claude-sonnet-5",
        Some("anthropic.claude-sonnet-5"),
        Some("claude-sonnet-5"),
    ),
    known(
        "claude-fable-5",
        "claude-fable-5",
        Some("anthropic.claude-fable-5"),
        Some("claude-fable-5"),
    ),
    known(
        "claude-fable-5-1",
        "claude-fable-5-1",
        Some("anthropic.claude-fable-5-1"),
        Some("claude-fable-5-1"),
    ),
    known(
        "claude-fable-5-2",
        "claude-fable-5-2",
        Some("anthropic.claude-fable-5-2"),
        Some("claude-fable-5-2"),
    ),
    known("claude-mythos-5", "claude-mythos-5", None, None),
    known("claude-mythos-5-1", "claude-mythos-5-1", None, None),
    known("claude-mythos-5-2", "claude-mythos-5-2", None, None),
    known(
        "claude-opus-4-8",
        "claude-opus-4-8",
        Some("anthropic.claude-opus-4-8"),
        Some("claude-opus-4-8"),
    ),
    known(
        "claude-opus-4-7",
        "claude-opus-4-7",
        Some("anthropic.claude-opus-4-7"),
        Some("claude-opus-4-7"),
    ),
    known(
        "claude-opus-4-6",
        "claude-opus-4-6",
        Some("anthropic.claude-opus-4-6-v1"),
        Some("claude-opus-4-6"),
    ),
    known(
        "claude-sonnet-4-6",
        "claude-sonnet-4-6",
        Some("anthropic.claude-sonnet-4-6"),
        Some("claude-sonnet-4-6"),
    ),
    known(
        "claude-opus-4-5-20251101",
        "claude-opus-4-5",
        Some("anthropic.claude-opus-4-5-20251101-v1:0"),
        Some("claude-opus-4-5@20251101"),
    ),
    known(
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5",
        Some("anthropic.claude-sonnet-4-5-20250929-v1:0"),
        Some("claude-sonnet-4-5@20250929"),
    ),
    known(
        "claude-haiku-4-5-20251001",
        "claude-haiku-4-5",
        Some("anthropic.claude-haiku-4-5-20251001-v1:0"),
        Some("claude-haiku-4-5@20251001"),
    ),
    known(
        "claude-opus-4-1-20250805",
        "claude-opus-4-1",
        Some("anthropic.claude-opus-4-1-20250805-v1:0"),
        Some("claude-opus-4-1@20250805"),
    ),
    known(
        "claude-opus-4-20250514",
        "claude-opus-4-0",
        Some("anthropic.claude-opus-4-20250514-v1:0"),
        Some("claude-opus-4@20250514"),
    ),
    known(
        "claude-sonnet-4-20250514",
        "claude-sonnet-4-0",
        Some("anthropic.claude-sonnet-4-20250514-v1:0"),
        Some("claude-sonnet-4@20250514"),
    ),
    known(
        "claude-3-7-sonnet-20250219",
        "claude-3-7-sonnet",
        Some("anthropic.claude-3-7-sonnet-20250219-v1:0"),
        Some("claude-3-7-sonnet@20250219"),
    ),
    known(
        "claude-3-5-sonnet-20241022",
        "claude-3-5-sonnet",
        Some("anthropic.claude-3-5-sonnet-20241022-v2:0"),
        Some("claude-3-5-sonnet-v2@20241022"),
    ),
    known(
        "claude-3-5-haiku-20241022",
        "claude-3-5-haiku",
        Some("anthropic.claude-3-5-haiku-20241022-v1:0"),
        Some("claude-3-5-haiku@20241022"),
    ),
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
        .find_map(|o| match cloud {
            Cloud::Bedrock => o.bedrock.as_deref(),
            Cloud::Vertex => o.vertex.as_deref(),
        });
    let id = match over {
        Some(id) => id.to_string(),
        None => table_or_rule(model, cloud)?,
    };
    Ok(match cloud {
        Cloud::Bedrock => with_profile(&id, profile),
        Cloud::Vertex => id,
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
        let id = match cloud {
            Cloud::Bedrock => k.bedrock,
            Cloud::Vertex => k.vertex,
        };
        return id.map(str::to_string).ok_or(Unmappable::NotOffered {
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
    Ok(match (cloud, split_date(model)) {
        (Cloud::Bedrock, Some(_)) => format!("anthropic.{model}-v1:0"),
        (Cloud::Bedrock, None) => format!("anthropic.{model}"),
        (Cloud::Vertex, Some((name, date))) => format!("{name}@{date}"),
        (Cloud::Vertex, None) => model.to_string(),
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
            },
        );
        o.insert(
            "claude-sonnet-4-6".into(),
            IdOverride {
                bedrock: Some("anthropic.claude-sonnet-4-6-v2:0".into()),
                vertex: None,
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
