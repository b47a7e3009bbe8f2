//! Rate limits (`[[keys]]`, `[[teams]]`, `[[users]]`, and issued keys' limits from the store),
//! budgets (`[[budgets]]`) and the prices spend is measured in (`[[pricing]]`): what each
//! entity may do, as data. The counters that enforce them live in [`crate::state`].

use super::file::{self, BudgetScope, FileConfig};
use super::{invalid, ConfigError};
use crate::limits::budget::BudgetSpec;
use crate::limits::{LimitSpec, Scope};
use crate::usage::pricing::{Price, PriceTable};

/// Every limit and budget.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policies {
    /// Rate limits, in the order written (a later entry for the same entity wins).
    pub limits: Vec<Limit>,
    pub budgets: Vec<Budget>,
    /// Budgets that apply to every Claude Code session separately.
    pub session_budgets: Vec<BudgetSpec>,
}

/// The rate limits of one key, user or team.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub scope: Scope,
    pub name: String,
    pub spec: LimitSpec,
}

/// The budget of one key, user or team.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub scope: Scope,
    pub name: String,
    pub spec: BudgetSpec,
}

impl Policies {
    /// The limits of every entity of `scope` (the last one written for each), sorted by name.
    pub fn limits_of(&self, scope: Scope) -> Vec<(&str, LimitSpec)> {
        let mut list: Vec<(&str, LimitSpec)> = Vec::new();
        for limit in self.limits.iter().filter(|l| l.scope == scope) {
            list.retain(|(name, _)| *name != limit.name);
            if !limit.spec.is_empty() {
                list.push((limit.name.as_str(), limit.spec));
            }
        }
        list.sort_by(|a, b| a.0.cmp(b.0));
        list
    }
}

/// The limits and budgets of `file` (with the store's entries merged in).
pub fn build(file: &FileConfig) -> Result<Policies, ConfigError> {
    let (budgets, session_budgets) = build_budgets(file)?;
    Ok(Policies {
        limits: build_limits(file),
        budgets,
        session_budgets,
    })
}

fn build_limits(file: &FileConfig) -> Vec<Limit> {
    let spec = |rpm, tpm, max_streams| LimitSpec {
        rpm,
        tpm,
        max_streams,
    };
    let mut limits: Vec<Limit> = file
        .keys
        .iter()
        .map(|k| Limit {
            scope: Scope::Key,
            name: k.name.clone(),
            spec: spec(k.rpm, k.tpm, k.max_streams),
        })
        .collect();
    for (scope, list) in [
        (Scope::Key, &file.key_limits),
        (Scope::Team, &file.teams),
        (Scope::User, &file.users),
    ] {
        limits.extend(list.iter().map(|e| Limit {
            scope,
            name: e.name.clone(),
            spec: spec(e.rpm, e.tpm, e.max_streams),
        }));
    }
    limits
}

/// Every budget, checked: a period, a limit within bounds, a name that exists.
fn build_budgets(file: &FileConfig) -> Result<(Vec<Budget>, Vec<BudgetSpec>), ConfigError> {
    use crate::limits::budget::MAX_BUDGET_USD;
    let mut budgets = Vec::new();
    let mut sessions = Vec::new();
    for (i, b) in file.budgets.iter().enumerate() {
        let at = |field: &str| format!("budgets[{i}].{field}");
        let scope = match b.scope {
            BudgetScope::Key => Scope::Key,
            BudgetScope::User => Scope::User,
            BudgetScope::Team => Scope::Team,
            BudgetScope::Session => {
                sessions.push(session_budget_spec(b, i)?);
                continue;
            }
        };
        // A key budget names a key from the file or, with the store on, an issued one.
        let store_on = file.store.path != "off";
        if scope == Scope::Key && !store_on && !file.keys.iter().any(|k| k.name == b.name) {
            return Err(invalid(at("name"), format!("no key named `{}`", b.name)));
        }
        if b.name.is_empty() {
            return Err(invalid(at("name"), "a key, user or team budget names one"));
        }
        budgets.push(Budget {
            scope,
            name: b.name.clone(),
            spec: budget_spec(b, i, MAX_BUDGET_USD)?,
        });
    }
    Ok((budgets, sessions))
}

/// A budget per Claude Code session applies to every session: its name is `*` or left out.
fn session_budget_spec(b: &file::BudgetFile, i: usize) -> Result<BudgetSpec, ConfigError> {
    use crate::limits::session_budget::MAX_SESSION_BUDGET_USD;
    if !(b.name.is_empty() || b.name == "*") {
        return Err(invalid(
            format!("budgets[{i}].name"),
            "a session budget applies to every session: use `*` or leave it out",
        ));
    }
    budget_spec(b, i, MAX_SESSION_BUDGET_USD)
}

fn budget_spec(b: &file::BudgetFile, i: usize, max_usd: f64) -> Result<BudgetSpec, ConfigError> {
    let at = |field: &str| format!("budgets[{i}].{field}");
    let period = b.period;
    if !(b.limit_usd > 0.0 && b.limit_usd <= max_usd) {
        return Err(invalid(
            at("limit_usd"),
            format!("expected more than 0 and at most {max_usd}"),
        ));
    }
    if b.soft_usd.is_some_and(|s| !(s > 0.0 && s <= b.limit_usd)) {
        return Err(invalid(
            at("soft_usd"),
            "expected more than 0 and at most limit_usd",
        ));
    }
    Ok(BudgetSpec {
        limit_usd: b.limit_usd,
        soft_usd: b.soft_usd,
        period,
    })
}

/// The price table (`[[pricing]]` over the built-in prices).
pub fn build_pricing(file: &FileConfig) -> Result<PriceTable, ConfigError> {
    let mut table = PriceTable::default();
    for (i, p) in file.pricing.iter().enumerate() {
        let all = [
            Some(p.input),
            Some(p.output),
            p.cache_write_5m,
            p.cache_write_1h,
            p.cache_read,
        ];
        if all.iter().flatten().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(invalid(
                format!("pricing[{i}]"),
                "prices must be finite and not negative",
            ));
        }
        if p.model.is_empty() {
            return Err(invalid(format!("pricing[{i}].model"), "must not be empty"));
        }
        let price = Price::from_usd_per_mtok(
            p.input,
            p.output,
            p.cache_write_5m,
            p.cache_write_1h,
            p.cache_read,
        );
        table.set(&p.model, price);
    }
    Ok(table)
}
