//! What a caller under a budget is told about it, in the words Claude Code reads: the
//! `anthropic-ratelimit-unified-*` headers on every Messages answer (the CLI shows "You've used
//! NN% …" past 75 % and 95 %), the same headers on the 429 `billing_error` at the cap, and the
//! `GET /api/oauth/usage` document behind `/usage`. Everything comes from the budgets' own
//! counters ([`Standing`]); the binding budget is the one the caller runs into first.

use compact_str::{CompactString, ToCompactString};
use serde_json::{json, Value};

use crate::limits::budget::{Period, Standing};

/// The prefix of the fields that describe limits; sluice's own replace the upstream's.
pub const RATE_LIMIT_PREFIX: &str = "anthropic-ratelimit-";

const NANO_PER_CENT: f64 = 1e7;

/// Response header fields, kept inline: at most nine, added to every governed Messages answer
/// (no allocation of their own).
pub type Fields = smallvec::SmallVec<[(&'static str, CompactString); 9]>;

/// Utilization thresholds past which the client warns, highest first.
const THRESHOLDS: [f64; 2] = [0.95, 0.75];

/// The unified rate-limit fields for `standing`: allowed (with a warning past a threshold) or
/// rejected with its period, scope, reason and `retry-after`.
pub fn headers(standing: &Standing, now_secs: u64) -> Fields {
    let utilization = standing.utilization();
    let threshold = if standing.exceeded {
        Some(1.0)
    } else {
        THRESHOLDS.into_iter().find(|t| utilization > *t)
    };
    let status = match (standing.exceeded, threshold) {
        (true, _) => "rejected",
        (false, Some(_)) => "allowed_warning",
        (false, None) => "allowed",
    };
    let mut fields = Fields::new();
    fields.push(("anthropic-ratelimit-unified-status", status.into()));
    if let Some(reset) = standing.resets_at {
        fields.push((
            "anthropic-ratelimit-unified-reset",
            reset.to_compact_string(),
        ));
        fields.push((
            "anthropic-ratelimit-unified-overage-reset",
            reset.to_compact_string(),
        ));
    }
    fields.push((
        "anthropic-ratelimit-unified-overage-utilization",
        number(shown_utilization(standing)),
    ));
    if let Some(threshold) = threshold {
        fields.push((
            "anthropic-ratelimit-unified-overage-surpassed-threshold",
            number(threshold),
        ));
    }
    if standing.exceeded {
        if let Some(period) = resetting_period(standing.period) {
            fields.push(("anthropic-ratelimit-unified-overage-period", period.into()));
        }
        if standing.shared {
            fields.push((
                "anthropic-ratelimit-unified-overage-scope",
                "group_pool".into(),
            ));
        }
        fields.push((
            "anthropic-ratelimit-unified-overage-disabled-reason",
            "org_spend_cap_reached".into(),
        ));
        if let Some(reset) = standing.resets_at {
            fields.push((
                "retry-after",
                reset.saturating_sub(now_secs).max(1).to_compact_string(),
            ));
        }
    } else {
        fields.push((
            "anthropic-ratelimit-unified-representative-claim",
            "overage".into(),
        ));
        fields.push(("anthropic-ratelimit-unified-overage-status", status.into()));
    }
    fields
}

/// `GET /api/oauth/usage` for a caller under budgets: the binding one as `extra_usage`, each as
/// a limit.
pub fn capped_usage(standings: &[Standing]) -> Value {
    let binding = standings.iter().copied().reduce(Standing::binding);
    let limits: Vec<Value> = standings
        .iter()
        .map(|s| {
            let utilization = s.utilization();
            let severity = if s.exceeded || utilization > 0.95 {
                "critical"
            } else if utilization > 0.75 {
                "warning"
            } else {
                "normal"
            };
            json!({
                "kind": "spend",
                "group": s.period.label(),
                "percent": percent(s),
                "resets_at": s.resets_at.map(iso_time),
                "severity": severity,
                "is_active": Some(*s) == binding,
            })
        })
        .collect();
    match binding {
        Some(b) => json!({
            "extra_usage": {
                "is_enabled": true,
                "monthly_limit": b.limit_nano as f64 / NANO_PER_CENT,
                "used_credits": (b.used_nano as f64 / NANO_PER_CENT).floor(),
                "utilization": percent(&b),
                "currency": "USD",
            },
            "limits": limits,
        }),
        None => json!({ "limits": limits }),
    }
}

/// Spend in cents per calendar window, for a caller under no budget.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spent {
    pub daily: f64,
    pub weekly: f64,
    pub monthly: f64,
}

/// `GET /api/oauth/usage` for a caller under no budget: what they spent, no limits.
pub fn uncapped_usage(spent: Spent) -> Value {
    json!({
        "extra_usage": {
            "is_enabled": true,
            "monthly_limit": null,
            "used_credits": spent.monthly,
            "utilization": null,
            "currency": "USD",
            "daily": {"limit": null, "used_credits": spent.daily, "utilization": null},
            "weekly": {"limit": null, "used_credits": spent.weekly, "utilization": null},
        },
        "limits": [],
    })
}

/// Utilization as shown: two decimals, below 1 until the budget is exhausted.
fn shown_utilization(standing: &Standing) -> f64 {
    let rounded = (standing.utilization() * 100.0).round() / 100.0;
    if standing.exceeded {
        rounded
    } else {
        rounded.min(0.99)
    }
}

fn percent(standing: &Standing) -> u64 {
    (shown_utilization(standing) * 100.0).round() as u64
}

/// A number as JavaScript prints it (`0.75`, `1`), which is how the client compares it.
fn number(value: f64) -> CompactString {
    compact_str::format_compact!("{value}")
}

fn resetting_period(period: Period) -> Option<&'static str> {
    match period {
        Period::Total => None,
        other => Some(other.label()),
    }
}

fn iso_time(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(used: u64, limit: u64, exceeded: bool, shared: bool) -> Standing {
        Standing {
            period: Period::Monthly,
            shared,
            limit_nano: limit,
            used_nano: used,
            exceeded,
            resets_at: Some(1_800_000_000),
        }
    }

    fn field<'a>(fields: &'a [(&'static str, CompactString)], name: &str) -> Option<&'a str> {
        fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn below_the_thresholds_is_allowed_with_the_overage_claim() {
        let fields = headers(&standing(50, 100, false, false), 1_799_999_000);
        assert_eq!(
            field(&fields, "anthropic-ratelimit-unified-status"),
            Some("allowed")
        );
        assert_eq!(
            field(&fields, "anthropic-ratelimit-unified-overage-utilization"),
            Some("0.5")
        );
        assert_eq!(
            field(&fields, "anthropic-ratelimit-unified-representative-claim"),
            Some("overage")
        );
        assert_eq!(
            field(
                &fields,
                "anthropic-ratelimit-unified-overage-surpassed-threshold"
            ),
            None
        );
        assert_eq!(
            field(&fields, "anthropic-ratelimit-unified-reset"),
            Some("1800000000")
        );
        assert_eq!(field(&fields, "retry-after"), None);
    }

    #[test]
    fn past_a_threshold_warns_and_stays_below_one() {
        let fields = headers(&standing(80, 100, false, false), 0);
        assert_eq!(
            field(&fields, "anthropic-ratelimit-unified-status"),
            Some("allowed_warning")
        );
        assert_eq!(
            field(
                &fields,
                "anthropic-ratelimit-unified-overage-surpassed-threshold"
            ),
            Some("0.75")
        );
        let nearly = headers(&standing(9_999, 10_000, false, false), 0);
        assert_eq!(
            field(&nearly, "anthropic-ratelimit-unified-overage-utilization"),
            Some("0.99")
        );
        assert_eq!(
            field(
                &nearly,
                "anthropic-ratelimit-unified-overage-surpassed-threshold"
            ),
            Some("0.95")
        );
    }

    #[test]
    fn at_the_cap_is_rejected_with_period_scope_and_reason() {
        let fields = headers(&standing(100, 100, true, true), 1_799_999_000);
        assert_eq!(
            field(&fields, "anthropic-ratelimit-unified-status"),
            Some("rejected")
        );
        assert_eq!(
            field(&fields, "anthropic-ratelimit-unified-overage-utilization"),
            Some("1")
        );
        assert_eq!(
            field(
                &fields,
                "anthropic-ratelimit-unified-overage-surpassed-threshold"
            ),
            Some("1")
        );
        assert_eq!(
            field(&fields, "anthropic-ratelimit-unified-overage-period"),
            Some("monthly")
        );
        assert_eq!(
            field(&fields, "anthropic-ratelimit-unified-overage-scope"),
            Some("group_pool")
        );
        assert_eq!(
            field(
                &fields,
                "anthropic-ratelimit-unified-overage-disabled-reason"
            ),
            Some("org_spend_cap_reached")
        );
        assert_eq!(field(&fields, "retry-after"), Some("1000"));
        assert_eq!(
            field(&fields, "anthropic-ratelimit-unified-representative-claim"),
            None
        );
        assert_eq!(
            field(&fields, "anthropic-ratelimit-unified-overage-status"),
            None
        );
    }

    #[test]
    fn usage_names_the_binding_budget_in_cents() {
        let dollars = 1_000_000_000;
        let personal = standing(3 * dollars, 10 * dollars, false, false);
        let pool = standing(90 * dollars, 100 * dollars, false, true);
        let usage = capped_usage(&[personal, pool]);
        assert_eq!(usage["extra_usage"]["monthly_limit"], 10_000.0);
        assert_eq!(usage["extra_usage"]["used_credits"], 9_000.0);
        assert_eq!(usage["extra_usage"]["utilization"], 90);
        assert_eq!(usage["limits"][0]["is_active"], false);
        assert_eq!(usage["limits"][1]["is_active"], true);
        assert_eq!(usage["limits"][1]["severity"], "warning");
        assert_eq!(usage["limits"][1]["resets_at"], "2027-01-15T08:00:00Z");
    }
}
