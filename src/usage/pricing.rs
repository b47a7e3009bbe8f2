//! The price table and the cost of one request. Prices are kept as integer picodollars per
//! token (USD/MTok × 10⁶), so costs add up exactly; the defaults are the first-party prices of
//! `shared/protocols.md` §5, the same catalog Claude Code prices its own usage with (a test
//! reads the pinned CLI's catalog and checks every model and tier, the long-prompt tier
//! included), so the two agree; overridable per model prefix in the config.

use super::Usage;

/// Picodollars (10⁻¹² USD) per token, per token category.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub cache_read: u64,
    pub output: u64,
}

impl Price {
    /// From USD per million tokens; cache prices default to 1.25×, 2× and 0.1× input.
    pub fn from_usd_per_mtok(
        input: f64,
        output: f64,
        write_5m: Option<f64>,
        write_1h: Option<f64>,
        read: Option<f64>,
    ) -> Price {
        let pico = |usd: f64| (usd * 1e6).round().max(0.0) as u64;
        Price {
            input: pico(input),
            cache_write_5m: pico(write_5m.unwrap_or(input * 1.25)),
            cache_write_1h: pico(write_1h.unwrap_or(input * 2.0)),
            cache_read: pico(read.unwrap_or(input * 0.1)),
            output: pico(output),
        }
    }
}

/// One model family's prices; a second tier applies when the prompt is longer than `threshold`.
#[derive(Clone, Debug)]
pub struct PriceEntry {
    pub prefix: String,
    pub price: Price,
    pub long_prompt: Option<(u64, Price)>,
}

/// Web search: $10 per 1,000 searches.
const WEB_SEARCH_PICO: u64 = 10_000_000_000;

/// The `[[pricing]]` model name that declares the price of every model the table does not know.
pub const FALLBACK_MODEL: &str = "*";

/// Model prefix → price, longest prefix wins; a model no prefix matches has the declared
/// fallback price, or none (and cannot spend a budget: see `proxy::budget`).
#[derive(Clone, Debug)]
pub struct PriceTable {
    entries: Vec<PriceEntry>,
    fallback: Option<PriceEntry>,
}

impl Default for PriceTable {
    fn default() -> Self {
        let p = |i, w5, w1, r, o| Price::from_usd_per_mtok(i, o, Some(w5), Some(w1), Some(r));
        let opus = p(5.0, 6.25, 10.0, 0.5, 25.0);
        let opus_old = p(15.0, 18.75, 30.0, 1.5, 75.0);
        let sonnet4 = p(3.0, 3.75, 6.0, 0.3, 15.0);
        let fable = p(10.0, 12.5, 20.0, 1.0, 50.0);
        let fable51 = p(10.0, 12.5, 20.0, 0.25, 50.0);
        let fable52 = p(8.0, 10.0, 16.0, 0.2, 40.0);
        let mut entries: Vec<PriceEntry> = [
            ("claude-fable-5-2", fable52),
            ("claude-mythos-5-2", fable52),
            ("claude-fable-5-1", fable51),
            ("claude-mythos-5-1", fable51),
            ("claude-fable-5", fable),
            ("claude-mythos-5", fable),
            ("claude-opus-5-5", p(4.0, 5.0, 8.0, 0.2, 20.0)),
            ("claude-opus-5", opus),
            ("claude-opus-4-8", opus),
            ("claude-opus-4-7", opus),
            ("claude-opus-4-6", opus),
            ("claude-opus-4-5", opus),
            ("claude-opus-4-1", opus_old),
            ("claude-opus-4", opus_old),
            ("claude-sonnet-5-5", p(2.0, 2.5, 4.0, 0.1, 10.0)),
            ("claude-sonnet-5", p(2.0, 2.5, 4.0, 0.2, 10.0)),
            ("claude-sonnet-4", sonnet4),
            ("claude-3-7-sonnet", sonnet4),
            ("claude-3-5-sonnet", sonnet4),
            ("claude-haiku-4-5", p(1.0, 1.25, 2.0, 0.1, 5.0)),
            ("claude-3-5-haiku", p(0.8, 1.0, 1.6, 0.08, 4.0)),
            ("claude-haiku-3-5", p(0.8, 1.0, 1.6, 0.08, 4.0)),
        ]
        .into_iter()
        .map(|(prefix, price)| PriceEntry {
            prefix: prefix.to_string(),
            price,
            long_prompt: None,
        })
        .collect();
        entries.push(PriceEntry {
            prefix: "claude-haiku-5-5".into(),
            price: p(0.10, 0.125, 0.20, 0.01, 0.50),
            long_prompt: Some((100_000, p(0.5, 0.625, 1.0, 0.05, 2.5))),
        });
        entries.sort_by_key(|e| std::cmp::Reverse(e.prefix.len()));
        PriceTable {
            entries,
            fallback: None,
        }
    }
}

impl PriceTable {
    /// Adds or replaces the entry for `prefix` ([`FALLBACK_MODEL`]: the fallback price).
    pub fn set(&mut self, prefix: &str, price: Price) {
        let entry = PriceEntry {
            prefix: prefix.to_string(),
            price,
            long_prompt: None,
        };
        if prefix == FALLBACK_MODEL {
            self.fallback = Some(entry);
            return;
        }
        self.entries.retain(|e| e.prefix != prefix);
        self.entries.push(entry);
        self.entries
            .sort_by_key(|e| std::cmp::Reverse(e.prefix.len()));
    }

    /// The entry for `model`, matched on its Anthropic id (see
    /// [`crate::format::anthropic_model_id`]), else the fallback price if one was declared.
    pub fn lookup(&self, model: &str) -> Option<&PriceEntry> {
        let name = crate::format::anthropic_model_id(model);
        // Longest prefixes first: the first that matches is the most specific.
        self.entries
            .iter()
            .find(|e| name.starts_with(e.prefix.as_str()))
            .or(self.fallback.as_ref())
    }

    /// Cost of `usage` for a request served by `served` (the model id the upstream was sent)
    /// whose response names `answered`: the higher of the two where both have a price, so
    /// neither an alias nor an upstream that answers with another model is charged less than
    /// it served. `None` when neither has a price.
    pub fn served_cost_pico(
        &self,
        served: Option<&str>,
        answered: Option<&str>,
        usage: &Usage,
    ) -> Option<u64> {
        let served_cost = served.and_then(|m| self.cost_pico(m, usage));
        // The common case: the response names the model served (one lookup, not two).
        let answered = answered.filter(|a| Some(*a) != served);
        let answered = answered.and_then(|m| self.cost_pico(m, usage));
        match (served_cost, answered) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// What the prompt cache saved on `usage` served by `model`, in picodollars: the cost of the
    /// same tokens with every cache read and write billed as plain input, less the real cost
    /// (negative when writes cost more than the reads saved). `None` without a price.
    pub fn cache_savings_pico(&self, model: &str, usage: &Usage) -> Option<i64> {
        let entry = self.lookup(model)?;
        let actual = entry.cost_pico(usage);
        let uncached = Usage {
            input_tokens: usage.prompt_tokens(),
            cache_creation_input_tokens: 0,
            cache_5m: None,
            cache_1h: None,
            cache_read_input_tokens: 0,
            ..*usage
        };
        let uncached = entry.cost_pico(&uncached);
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Some(signed(uncached).saturating_sub(signed(actual)))
    }

    /// Cost of `usage` on `model` in picodollars; `None` when the model has no price.
    pub fn cost_pico(&self, model: &str, usage: &Usage) -> Option<u64> {
        self.lookup(model).map(|entry| entry.cost_pico(usage))
    }
}

impl PriceEntry {
    /// Cost of `usage` at this entry's price, in picodollars.
    pub fn cost_pico(&self, usage: &Usage) -> u64 {
        let price = match self.long_prompt {
            Some((threshold, long)) if usage.prompt_tokens() > threshold => long,
            _ => self.price,
        };
        let (w5, w1) = usage.cache_writes();
        // Token counts come from the upstream: saturate rather than overflow.
        [
            (usage.input_tokens, price.input),
            (w5, price.cache_write_5m),
            (w1, price.cache_write_1h),
            (usage.cache_read_input_tokens, price.cache_read),
            (usage.output_tokens, price.output),
            (usage.web_search_requests, WEB_SEARCH_PICO),
        ]
        .iter()
        .fold(0u64, |sum, (n, p)| sum.saturating_add(n.saturating_mul(*p)))
    }
}

/// Picodollars to USD.
pub fn pico_to_usd(pico: u64) -> f64 {
    pico as f64 / 1e12
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling of a model prices as its Anthropic id (the rule routing uses too).
    #[test]
    fn provider_spellings_price_as_their_anthropic_model() {
        let t = PriceTable::default();
        let sonnet = t.lookup("claude-sonnet-4-5-20250929").map(|e| e.price);
        assert!(sonnet.is_some());
        for id in [
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "claude-sonnet-4-5@20250929",
            "claude-sonnet-4-5[1m]",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ] {
            assert_eq!(t.lookup(id).map(|e| e.price), sonnet, "{id}");
        }
    }

    #[test]
    fn worked_example_of_protocols_7_3() {
        let usage = Usage {
            input_tokens: 2000,
            cache_creation_input_tokens: 10_000,
            cache_5m: Some(8000),
            cache_1h: Some(2000),
            cache_read_input_tokens: 50_000,
            output_tokens: 1500,
            web_search_requests: 0,
        };
        let cost = PriceTable::default()
            .cost_pico("claude-opus-4-8", &usage)
            .unwrap();
        assert_eq!(cost, 142_500_000_000);
        assert!((pico_to_usd(cost) - 0.1425).abs() < 1e-12);
        // Uncached, the same 62,000 prompt tokens are plain input.
        let uncached = Usage {
            input_tokens: 62_000,
            output_tokens: 1500,
            ..Usage::default()
        };
        let t = PriceTable::default();
        let full = t.cost_pico("claude-opus-4-8", &uncached).unwrap();
        let saved = t.cache_savings_pico("claude-opus-4-8", &usage).unwrap();
        assert_eq!(saved, full as i64 - 142_500_000_000);
        assert!(saved > 0);
        // Writes alone cost more than plain input: the saving is negative.
        let writes = Usage {
            input_tokens: 10,
            cache_creation_input_tokens: 10_000,
            cache_1h: Some(10_000),
            ..Usage::default()
        };
        assert!(t.cache_savings_pico("claude-opus-4-8", &writes).unwrap() < 0);
    }

    #[test]
    fn provider_ids_price_as_their_family() {
        let t = PriceTable::default();
        for id in [
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "claude-sonnet-4-5@20250929",
            "claude-sonnet-4-5",
        ] {
            assert_eq!(t.lookup(id).unwrap().prefix, "claude-sonnet-4", "{id}");
        }
        assert_eq!(
            t.lookup("claude-opus-5-5").unwrap().prefix,
            "claude-opus-5-5"
        );
        assert_eq!(
            t.lookup("claude-opus-4-8[1m]").unwrap().prefix,
            "claude-opus-4-8"
        );
        assert!(t.lookup("gpt-4o").is_none());
    }

    #[test]
    fn a_declared_fallback_prices_unknown_models_and_costs_saturate() {
        let mut t = PriceTable::default();
        t.set(
            FALLBACK_MODEL,
            Price::from_usd_per_mtok(1.0, 2.0, None, None, None),
        );
        assert_eq!(t.lookup("gpt-4o").unwrap().prefix, "*");
        assert_eq!(
            t.lookup("claude-opus-4-8").unwrap().prefix,
            "claude-opus-4-8"
        );
        let huge = Usage {
            input_tokens: u64::MAX,
            output_tokens: u64::MAX,
            ..Usage::default()
        };
        assert_eq!(t.cost_pico("claude-opus-4-8", &huge), Some(u64::MAX));
        let usage = Usage {
            output_tokens: 1000,
            ..Usage::default()
        };
        let opus = t.cost_pico("claude-opus-4-8", &usage);
        assert_eq!(
            t.served_cost_pico(Some("claude-haiku-4-5"), Some("claude-opus-4-8"), &usage),
            opus
        );
        assert_eq!(
            t.served_cost_pico(Some("claude-opus-4-8"), Some("claude-mock-1"), &usage),
            opus
        );
        assert_eq!(
            t.served_cost_pico(Some("claude-opus-4-8"), Some("claude-opus-4-8"), &usage),
            opus
        );
        assert_eq!(
            t.served_cost_pico(None, Some("claude-opus-4-8"), &usage),
            opus
        );
    }

    #[test]
    fn the_longest_matching_prefix_wins_whatever_order_prices_were_set_in() {
        let (broad, narrow) = (
            Price::from_usd_per_mtok(1.0, 2.0, None, None, None),
            Price::from_usd_per_mtok(3.0, 4.0, None, None, None),
        );
        for order in [
            ["claude-zeta", "claude-zeta-9"],
            ["claude-zeta-9", "claude-zeta"],
        ] {
            let mut t = PriceTable::default();
            for prefix in order {
                t.set(
                    prefix,
                    if prefix == "claude-zeta" {
                        broad
                    } else {
                        narrow
                    },
                );
            }
            let price = |m: &str| t.lookup(m).map(|e| e.price);
            assert_eq!(price("claude-zeta-9-20270101"), Some(narrow), "{order:?}");
            assert_eq!(price("claude-zeta-8"), Some(broad), "{order:?}");
        }
    }

    #[test]
    fn cache_writes_without_breakdown_are_5m() {
        let usage = Usage {
            cache_creation_input_tokens: 1000,
            ..Usage::default()
        };
        let cost = PriceTable::default()
            .cost_pico("claude-haiku-4-5", &usage)
            .unwrap();
        assert_eq!(cost, 1000 * 1_250_000);
    }

    #[test]
    fn haiku_5_5_switches_tier_on_prompt_length() {
        let t = PriceTable::default();
        let small = Usage {
            input_tokens: 100_000,
            ..Usage::default()
        };
        let large = Usage {
            input_tokens: 100_001,
            ..Usage::default()
        };
        assert_eq!(
            t.cost_pico("claude-haiku-5-5", &small),
            Some(100_000 * 100_000)
        );
        assert_eq!(
            t.cost_pico("claude-haiku-5-5", &large),
            Some(100_001 * 500_000)
        );
    }
}
