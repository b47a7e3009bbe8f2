//! What a customer-routed caller is told when the upstream refuses its request. Its error body
//! is replaced by a generic envelope (the upstream's words name the gateway operator's account),
//! but a refusal over a capability the caller can change is named by class, so the caller can
//! adapt: `capability_rejected: <class>`. The classes, in order of precedence: `mid_conv_system`,
//! `cache_control_field`, `thinking_signature`, `thinking_type:<value>`,
//! `structured_outputs_unsupported`, `effort_unsupported`, `media_budget`, `image_block`,
//! `document_block`, `prompt_too_long`, `max_tokens_context_overflow`, `beta_header:<value>`.

/// The class of a refusal `message` (with `status`); `betas` are the request's
/// `anthropic-beta` values.
pub fn class_of(status: u16, message: &str, betas: &[&str]) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    if status == 413 {
        return (prompt_too_long(&lower) || lower.contains("context window"))
            .then(|| "prompt_too_long".to_string());
    }
    if status != 400 {
        return None;
    }
    let simple = [
        ("mid_conv_system", mid_conversation_system(message, &lower)),
        ("cache_control_field", cache_control_field(&lower)),
        ("thinking_signature", thinking_signature(&lower)),
    ];
    if let Some((class, _)) = simple.into_iter().find(|(_, hit)| *hit) {
        return Some(class.to_string());
    }
    if let Some(value) = thinking_type(&lower) {
        return Some(format!("thinking_type:{value}"));
    }
    let later = [
        (
            "structured_outputs_unsupported",
            lower.contains("output_config.format: extra inputs are not permitted"),
        ),
        ("effort_unsupported", effort_unsupported(&lower)),
        ("media_budget", media_budget(&lower)),
    ];
    if let Some((class, _)) = later.into_iter().find(|(_, hit)| *hit) {
        return Some(class.to_string());
    }
    if let Some(block) = media_block(&lower) {
        return Some(block.to_string());
    }
    if prompt_too_long(&lower) {
        return Some("prompt_too_long".into());
    }
    if lower.contains("input length and `max_tokens` exceed context limit") {
        return Some("max_tokens_context_overflow".into());
    }
    let names_betas = lower.contains("anthropic-beta") || lower.contains("anthropic_beta");
    betas
        .iter()
        .map(|b| b.trim())
        .find(|b| !b.is_empty() && names_betas && message.contains(*b))
        .map(|b| format!("beta_header:{b}"))
}

/// A system message in the middle of the conversation.
fn mid_conversation_system(message: &str, lower: &str) -> bool {
    (message.contains("Unexpected role") && message.contains("input message role"))
        || (lower.contains("not supported") && lower.contains("role") && lower.contains("system"))
}

/// A `cache_control` field the upstream does not take.
fn cache_control_field(lower: &str) -> bool {
    lower.contains("cache_control")
        && !lower.contains("empty text block")
        && !lower.contains("ttl")
        && [
            "not permitted",
            "cannot be set",
            "unknown name",
            "unknown field",
            "unrecognized",
            "extra inputs",
        ]
        .iter()
        .any(|w| lower.contains(w))
}

fn thinking_signature(lower: &str) -> bool {
    let l = lower.replace('`', "");
    l.contains("signature in thinking block")
        || l.contains("invalid data in redacted_thinking block")
        || (l.contains("thinking.signature") && l.contains("field required"))
        || ((l.contains("thinking block") || l.contains("redacted_thinking"))
            && (l.contains("cannot be modified") || l.contains("invalid signature")))
}

/// `thinking.type` with a value the model does not take: that value.
fn thinking_type(lower: &str) -> Option<String> {
    let rest = lower.split_once("thinking.type")?.1;
    let value = rest.split(['\'', '"', '`']).nth(1)?.trim().to_string();
    let plain = !value.is_empty()
        && value.len() <= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    plain.then_some(value)
}

fn effort_unsupported(lower: &str) -> bool {
    lower.contains("effort")
        && (lower.contains("not supported")
            || lower.contains("extra inputs are not permitted")
            || lower.contains("does not support"))
}

fn media_budget(lower: &str) -> bool {
    (lower.contains("image") || lower.contains("pdf") || lower.contains("document"))
        && (lower.contains("too many") || lower.contains("exceeds the maximum"))
        && !lower.contains("messages.")
}

/// An image or document block the model refused (`messages.N.content.M.image…`).
fn media_block(lower: &str) -> Option<&'static str> {
    let at = lower.find("messages.")?;
    let path = lower.get(at..)?.split_whitespace().next()?;
    if !path.contains(".content.") {
        return None;
    }
    if path.contains("image") {
        Some("image_block")
    } else if path.contains("document") || path.contains("pdf") {
        Some("document_block")
    } else {
        None
    }
}

fn prompt_too_long(lower: &str) -> bool {
    lower.contains("prompt is too long") || lower.contains("input is too long for requested model")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_refusals_are_named_by_class() {
        let cases: [(u16, &str, Option<&str>); 9] = [
            (400, "messages: Unexpected role \"system\". The input message role must be user or assistant", Some("mid_conv_system")),
            (400, "system.0.cache_control: Extra inputs are not permitted", Some("cache_control_field")),
            (400, "messages.1.content.0: Invalid `signature` in `thinking` block", Some("thinking_signature")),
            (400, "thinking.type: Input should be 'adaptive'", Some("thinking_type:adaptive")),
            (400, "output_config.format: Extra inputs are not permitted", Some("structured_outputs_unsupported")),
            (400, "messages.0.content.1.image.source.base64: image exceeds 5 MB maximum", Some("image_block")),
            (400, "prompt is too long: 210000 tokens > 200000 maximum", Some("prompt_too_long")),
            (400, "input length and `max_tokens` exceed context limit: 199000 + 32000 > 200000", Some("max_tokens_context_overflow")),
            (400, "Your credit balance for org 1234 is too low", None),
        ];
        for (status, message, class) in cases {
            assert_eq!(
                class_of(status, message, &[]).as_deref(),
                class,
                "{message}"
            );
        }
        assert_eq!(
            class_of(
                400,
                "Unexpected value(s) `fast-mode-2026` for the `anthropic-beta` header",
                &["x-1", "fast-mode-2026"]
            )
            .as_deref(),
            Some("beta_header:fast-mode-2026")
        );
        assert_eq!(
            class_of(413, "Prompt exceeds the context window", &[]).as_deref(),
            Some("prompt_too_long")
        );
        assert_eq!(class_of(500, "prompt is too long", &[]), None);
    }
}
