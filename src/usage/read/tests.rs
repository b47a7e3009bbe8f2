use proptest::prelude::*;

use super::*;

/// What serde's derived deserializer reads from the same bytes (the reference).
fn by_serde(raw: &[u8]) -> Option<Option<UsageFields>> {
    serde_json::from_slice::<Option<UsageFields>>(raw).ok()
}

fn same(a: &Option<Option<UsageFields>>, b: &Option<Option<UsageFields>>) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

#[test]
fn reads_a_message_usage() {
    let raw = br#"{"input_tokens":25,"cache_creation_input_tokens":null,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":3,"ephemeral_1h_input_tokens":4},"output_tokens":15,"server_tool_use":{"web_search_requests":2},"service_tier":"standard"}"#;
    let fields = usage_fields(raw).unwrap().unwrap();
    assert_eq!(fields.input_tokens, Some(25));
    assert_eq!(fields.cache_creation_input_tokens, None);
    assert_eq!(fields.cache_read_input_tokens, Some(0));
    assert_eq!(fields.output_tokens, Some(15));
    let cc = fields.cache_creation.as_ref().unwrap();
    assert_eq!(
        (cc.ephemeral_5m_input_tokens, cc.ephemeral_1h_input_tokens),
        (Some(3), Some(4))
    );
    assert_eq!(fields.server_tool_use.unwrap().web_search_requests, Some(2));
    assert!(same(&usage_fields(raw), &by_serde(raw)));
}

#[test]
fn refuses_what_serde_refuses() {
    for raw in [
        &br#"{"input_tokens":-1}"#[..],
        br#"{"input_tokens":1.0}"#,
        br#"{"input_tokens":1e3}"#,
        br#"{"input_tokens":"25"}"#,
        br#"{"input_tokens":+5}"#,
        br#"{"input_tokens":007}"#,
        br#"{"input_tokens":18446744073709551616}"#,
        br#"{"cache_creation":{"ephemeral_5m_input_tokens":true}}"#,
        br#"{"cache_creation":[1]}"#,
        br#"{"input_tokens":5"#,
        br#"[1,2]"#,
        b"",
    ] {
        assert_eq!(
            by_serde(raw).map(|_| ()),
            None,
            "{}",
            String::from_utf8_lossy(raw)
        );
        assert!(
            usage_fields(raw).is_none(),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(
        usage_fields(br#"{"input_tokens":18446744073709551615}"#)
            .unwrap()
            .unwrap()
            .input_tokens,
        Some(u64::MAX)
    );
}

#[test]
fn an_escaped_key_reads_as_its_name_and_a_repeated_one_as_its_last() {
    let escaped = usage_fields(br#"{"output_\u0074okens":7}"#)
        .unwrap()
        .unwrap();
    assert_eq!(escaped.output_tokens, Some(7));
    let repeated = usage_fields(br#"{"output_tokens":1,"output_tokens":9}"#)
        .unwrap()
        .unwrap();
    assert_eq!(repeated.output_tokens, Some(9));
}

/// A count as a usage object may carry it.
fn count_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        Just("null".to_string()),
        (0u32..1000).prop_map(|n| format!("{n}.5")),
        (1i64..1000).prop_map(|n| format!("-{n}")),
        "[a-z ]{0,6}".prop_map(|s| format!("\"{s}\"")),
    ]
}

/// Any other member's value: nested, with strings that look like usage.
fn other_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#""standard""#.to_string()),
        Just(r#"{"input_tokens":99,"x":[1,{"y":"}"}]}"#.to_string()),
        Just(r#""\"output_tokens\":5""#.to_string()),
        Just("[]".to_string()),
        Just("true".to_string()),
    ]
}

const NAMES: [&str; 4] = [
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
];

proptest! {
    /// Any usage object without a repeated member reads as serde reads it.
    #[test]
    fn reads_as_serde_does(
        counts in proptest::collection::vec(proptest::option::of(count_value()), 4),
        cache in proptest::option::of((count_value(), count_value())),
        searches in proptest::option::of(count_value()),
        others in proptest::collection::vec(other_value(), 0..3),
        spaced in any::<bool>(),
    ) {
        let sep = if spaced { " , " } else { "," };
        let colon = if spaced { " : " } else { ":" };
        let mut members: Vec<String> = NAMES
            .iter()
            .zip(&counts)
            .filter_map(|(name, v)| v.as_ref().map(|v| format!("\"{name}\"{colon}{v}")))
            .collect();
        if let Some((m5, h1)) = &cache {
            members.push(format!(
                "\"cache_creation\"{colon}{{\"ephemeral_5m_input_tokens\":{m5},\"ephemeral_1h_input_tokens\":{h1}}}"
            ));
        }
        if let Some(n) = &searches {
            members.push(format!("\"server_tool_use\"{colon}{{\"web_search_requests\":{n}}}"));
        }
        for (i, other) in others.iter().enumerate() {
            members.insert(i % (members.len() + 1), format!("\"other_{i}\"{colon}{other}"));
        }
        let raw = format!("{{{}}}", members.join(sep));
        let ours = usage_fields(raw.as_bytes());
        let theirs = by_serde(raw.as_bytes());
        prop_assert!(same(&ours, &theirs), "{raw}: {ours:?} vs {theirs:?}");
    }
}
