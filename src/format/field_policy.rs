//! Which top-level request fields and which betas an upstream takes. The Anthropic API takes
//! everything Claude Code sends; Bedrock and Vertex answer 400 to a field or beta they do not
//! know, and Claude Code in first-party mode sends several (`context_management`, the
//! `context-management-…` and `prompt-caching-scope-…` betas, …). When sluice carries a request
//! into a cloud's format it passes what the cloud takes and drops the rest, and the access
//! record names what it dropped.
//!
//! The defaults are what Claude Code itself sends in Bedrock and Vertex mode (the pinned CLI,
//! `../shared/captures`) together with the providers' documented request fields and betas; each
//! upstream can pass or drop more (`pass_fields`, `drop_fields`, `pass_betas`, `drop_betas`).
//! A request already in the upstream's own format is the client's choice and is not touched.

/// Fields every cloud format takes besides the ones it has its own place for.
const CLOUD_FIELDS: &[&str] = &[
    "anthropic_version",
    "max_tokens",
    "messages",
    "system",
    "metadata",
    "thinking",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "output_config",
];

/// Bedrock reads betas from the body; Vertex from the header, and keeps `stream` in the body
/// (Bedrock says it in the path).
const BEDROCK_EXTRA_FIELDS: &[&str] = &["anthropic_beta"];
const VERTEX_EXTRA_FIELDS: &[&str] = &["stream"];

/// Betas both clouds take.
const CLOUD_BETAS: &[&str] = &[
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "context-1m-2025-08-07",
    "tool-search-tool-2025-10-19",
    "thinking-token-count-2026-05-13",
    "effort-2025-11-24",
    "computer-use-2025-01-24",
    "computer-use-2025-11-24",
    "token-efficient-tools-2025-02-19",
    "fine-grained-tool-streaming-2025-05-14",
    "output-128k-2025-02-19",
];

/// Vertex also runs Anthropic's web search.
const VERTEX_EXTRA_BETAS: &[&str] = &["web-search-2025-03-05"];

/// What an upstream takes: `None` takes everything (the Anthropic API) but what `drop_*` names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPolicy {
    pub fields: Option<Vec<String>>,
    pub betas: Option<Vec<String>>,
    pub drop_fields: Vec<String>,
    pub drop_betas: Vec<String>,
}

/// An upstream's format, as far as its policy goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Egress {
    Anthropic,
    Bedrock,
    Vertex,
}

/// An operator's additions and removals for one upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyChanges {
    pub pass_fields: Vec<String>,
    pub drop_fields: Vec<String>,
    pub pass_betas: Vec<String>,
    pub drop_betas: Vec<String>,
}

impl FieldPolicy {
    /// The default for `egress` with the operator's `changes`.
    pub fn new(egress: Egress, changes: &PolicyChanges) -> Self {
        let list = |base: &[&str], extra: &[&str], pass: &[String]| {
            let mut all: Vec<String> = base.iter().chain(extra).map(|s| s.to_string()).collect();
            all.extend(pass.iter().cloned());
            all
        };
        let (fields, betas) = match egress {
            Egress::Anthropic => (None, None),
            Egress::Bedrock => (
                Some(list(
                    CLOUD_FIELDS,
                    BEDROCK_EXTRA_FIELDS,
                    &changes.pass_fields,
                )),
                Some(list(CLOUD_BETAS, &[], &changes.pass_betas)),
            ),
            Egress::Vertex => (
                Some(list(
                    CLOUD_FIELDS,
                    VERTEX_EXTRA_FIELDS,
                    &changes.pass_fields,
                )),
                Some(list(CLOUD_BETAS, VERTEX_EXTRA_BETAS, &changes.pass_betas)),
            ),
        };
        FieldPolicy {
            fields,
            betas,
            drop_fields: changes.drop_fields.clone(),
            drop_betas: changes.drop_betas.clone(),
        }
    }

    fn passes(list: &Option<Vec<String>>, drop: &[String], name: &str) -> bool {
        !drop.iter().any(|d| d == name) && list.as_ref().is_none_or(|l| l.iter().any(|f| f == name))
    }

    /// Whether the upstream takes top-level field `name` (its raw key bytes).
    pub fn passes_field(&self, name: &[u8]) -> bool {
        std::str::from_utf8(name).is_ok_and(|n| Self::passes(&self.fields, &self.drop_fields, n))
    }

    /// Whether the upstream takes beta `name`.
    pub fn passes_beta(&self, name: &str) -> bool {
        Self::passes(&self.betas, &self.drop_betas, name)
    }

    /// Whether the policy can drop anything at all.
    pub fn is_pass_all(&self) -> bool {
        self.fields.is_none()
            && self.betas.is_none()
            && self.drop_fields.is_empty()
            && self.drop_betas.is_empty()
    }
}

/// The top-level fields of `body` the upstream does not take (their keys as written), besides
/// `handled` (fields the translation moves or removes itself).
pub fn fields_to_drop(body: &[u8], policy: &FieldPolicy, handled: &[&str]) -> Vec<String> {
    let Some(members) = crate::json::members::top_level_members(body) else {
        return Vec::new();
    };
    members
        .iter()
        .filter_map(|m| body.get(m.key.clone()))
        .filter(|key| !handled.iter().any(|h| h.as_bytes() == *key))
        .filter(|key| !policy.passes_field(key))
        .map(|key| String::from_utf8_lossy(key).into_owned())
        .collect()
}

/// `betas` split into those the upstream takes and those it does not, each in order, without
/// duplicates.
pub fn split_betas<'a>(
    betas: impl IntoIterator<Item = &'a str>,
    policy: &FieldPolicy,
) -> (Vec<String>, Vec<String>) {
    let (mut kept, mut dropped): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for beta in betas {
        let list = if policy.passes_beta(beta) {
            &mut kept
        } else {
            &mut dropped
        };
        if !list.iter().any(|b| b == beta) {
            list.push(beta.to_string());
        }
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bedrock_drops_first_party_only_fields_and_betas() {
        let p = FieldPolicy::new(Egress::Bedrock, &PolicyChanges::default());
        let body = br#"{"model":"m","max_tokens":1,"messages":[],"context_management":{"edits":[]},"output_config":{"effort":"high"},"stream":true,"speed":"fast"}"#;
        assert_eq!(
            fields_to_drop(body, &p, &["model", "stream"]),
            vec!["context_management", "speed"]
        );
        let (kept, dropped) = split_betas(
            [
                "claude-code-20250219",
                "context-management-2025-06-27",
                "effort-2025-11-24",
                "effort-2025-11-24",
            ],
            &p,
        );
        assert_eq!(kept, vec!["claude-code-20250219", "effort-2025-11-24"]);
        assert_eq!(dropped, vec!["context-management-2025-06-27"]);
    }

    #[test]
    fn the_operator_passes_and_drops_more() {
        let changes = PolicyChanges {
            pass_fields: vec!["context_management".into()],
            drop_fields: vec!["metadata".into()],
            pass_betas: vec!["context-management-2025-06-27".into()],
            drop_betas: vec!["claude-code-20250219".into()],
        };
        let p = FieldPolicy::new(Egress::Vertex, &changes);
        assert!(p.passes_field(b"context_management") && p.passes_field(b"stream"));
        assert!(!p.passes_field(b"metadata"));
        assert!(p.passes_beta("context-management-2025-06-27"));
        assert!(p.passes_beta("web-search-2025-03-05"));
        assert!(!p.passes_beta("claude-code-20250219"));
        let anthropic = FieldPolicy::new(Egress::Anthropic, &PolicyChanges::default());
        assert!(anthropic.is_pass_all() && anthropic.passes_field(b"anything"));
    }

    #[test]
    fn an_escaped_key_is_not_a_field_the_policy_passes() {
        let p = FieldPolicy::new(Egress::Bedrock, &PolicyChanges::default());
        let body = br#"{"max_tokens":1,"m\u0065ssages":[]}"#;
        assert_eq!(fields_to_drop(body, &p, &[]), vec![r"m\u0065ssages"]);
    }
}
