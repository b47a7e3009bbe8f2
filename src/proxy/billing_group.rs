//! Claude Code's billing groups. With `[signin] billing_group_tag` set, sluice's access tokens
//! carry that tag and Claude Code adds `"tags": {"<tag>": "<group>"}` (and the beta
//! [`TAGS_BETA`]) to its requests. For a signed-in caller sluice records the group when the
//! caller belongs to it, and removes `tags` and the beta before any upstream: no provider is
//! asked to execute a field it may not know, and the request sluice governs (its length, its
//! cost estimate) is the one the upstream receives.

use bytes::Bytes;

use super::authenticate::Identity;
use super::classify::Operation;
use super::client::ClientConn;
use super::request_body::{self, RequestBody};
use super::GatewayError;
use crate::http1::rewrite::with_field;
use crate::http1::RequestHead;

/// The beta Claude Code sends with `tags`.
pub const TAGS_BETA: &str = "request-tags-2026-08-21";

/// A request with its billing-group tags removed.
pub struct Untagged {
    /// The head without the beta, when it named it.
    pub head: Option<RequestHead>,
    /// The body, without `tags`.
    pub body: RequestBody,
    /// The group the request bills to: named in `tags` and one of the caller's groups.
    pub group: Option<String>,
}

/// Removes the billing-group beta and `tags` from a signed-in caller's request when billing
/// groups are on (`tag`). A body that carries the beta is read whole first (`tags` may be
/// anywhere in it); one that does not is searched only when it is held whole already.
pub async fn untag(
    client: &mut ClientConn,
    (head, body, op): (&RequestHead, RequestBody, &Operation),
    identity: &Identity,
    tag: Option<&str>,
) -> Result<Untagged, GatewayError> {
    let (Some(tag), Identity::SignedIn { groups, .. }) = (tag, identity) else {
        return Ok(Untagged {
            head: None,
            body,
            group: None,
        });
    };
    let betas = head.header_str("anthropic-beta");
    let had_beta = betas.is_some_and(|v| v.split(',').any(|b| b.trim() == TAGS_BETA));
    let mut untagged = Untagged {
        head: None,
        body,
        group: None,
    };
    if had_beta {
        let rest = betas.map(without_tags_beta).unwrap_or_default();
        let value = (!rest.is_empty()).then_some(rest.as_bytes());
        untagged.head = Some(with_field(head, "anthropic-beta", value)?);
        untagged.body = request_body::complete(client, untagged.body).await?;
    }
    let RequestBody::Whole { bytes, .. } = &untagged.body else {
        return Ok(untagged);
    };
    let Some(tags) = crate::json::edit::field(bytes, "tags") else {
        return Ok(untagged);
    };
    if *op == Operation::Messages {
        untagged.group = group_of(tags, tag, groups);
    }
    let without = crate::json::edit::edit(bytes, &[], &["tags"]).ok_or_else(|| {
        GatewayError::InvalidRequest("the request body is not a JSON object".into())
    })?;
    untagged.body = RequestBody::Whole {
        bytes: Bytes::from(without),
        reframed: true,
    };
    Ok(untagged)
}

/// The group `tags` names under `tag`, when the caller is a member of it.
fn group_of(tags: &[u8], tag: &str, groups: &[String]) -> Option<String> {
    let tags: serde_json::Value = serde_json::from_slice(tags).ok()?;
    let named = tags.get(tag)?.as_str()?;
    groups.iter().find(|g| *g == named).cloned()
}

/// An `anthropic-beta` value without [`TAGS_BETA`].
fn without_tags_beta(value: &str) -> String {
    value
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty() && *b != TAGS_BETA)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_group_of_the_caller_is_recorded() {
        let groups = vec!["eng".to_string(), "ml".to_string()];
        assert_eq!(
            group_of(br#"{"billing":"ml"}"#, "billing", &groups),
            Some("ml".into())
        );
        assert_eq!(
            group_of(br#"{"billing":"finance"}"#, "billing", &groups),
            None
        );
        assert_eq!(group_of(br#"{"other":"ml"}"#, "billing", &groups), None);
        assert_eq!(group_of(br#"{"billing":["ml"]}"#, "billing", &groups), None);
        assert_eq!(group_of(b"not json", "billing", &groups), None);
    }

    #[test]
    fn the_beta_is_taken_out_of_the_list() {
        assert_eq!(
            without_tags_beta("a-1, request-tags-2026-08-21,b-2"),
            "a-1,b-2"
        );
        assert_eq!(without_tags_beta("request-tags-2026-08-21"), "");
    }
}
