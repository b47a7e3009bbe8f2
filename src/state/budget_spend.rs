//! Budgets start from the spend the ledger holds for their current window — at start-up, and
//! for budgets a reload adds — so neither a restart nor a reload hands out a fresh budget.

use std::path::Path;

use crate::limits::budget::{day_string, today, Budgets, Period};
use crate::limits::Scope;
use crate::store::ledger::{self, LedgerError};

/// Loads the spend of every budget.
pub fn load_all(budgets: &Budgets, path: &Path) -> Result<(), LedgerError> {
    let entities: Vec<(Scope, String, Period)> = budgets
        .each()
        .map(|(scope, name, period)| (scope, name.to_string(), period))
        .collect();
    let periods: Vec<Period> = budgets.session_periods().collect();
    load(budgets, path, &entities, &periods)
}

/// Loads the spend of the named key, user and team budgets and of the session budgets of the
/// given periods.
pub fn load(
    budgets: &Budgets,
    path: &Path,
    entities: &[(Scope, String, Period)],
    session_periods: &[Period],
) -> Result<(), LedgerError> {
    for (scope, name, period) in entities {
        let key = match scope {
            Scope::Key => format!("key:{name}"),
            _ => name.clone(),
        };
        let spent = ledger::spent_since(path, scope.label(), &key, &first_day_of(*period))?;
        budgets.load_spent(*scope, name, *period, spent);
        if spent > 0 {
            tracing::info!(
                scope = scope.label(),
                name,
                spent_usd = spent as f64 / 1e12,
                "budget spend loaded"
            );
        }
    }
    for &period in session_periods {
        let sessions = ledger::spent_per_key_since(
            path,
            "session",
            &first_day_of(period),
            crate::limits::session_budget::CAPACITY,
        )?;
        for (session, spent) in &sessions {
            budgets.load_session_spent(period, session, *spent);
        }
        if !sessions.is_empty() {
            tracing::info!(
                period = period.label(),
                sessions = sessions.len(),
                "session budget spend loaded"
            );
        }
    }
    Ok(())
}

/// `YYYY-MM-DD` of the first day of the current window ("" for a total budget).
fn first_day_of(period: Period) -> String {
    let first = period.first_day(today());
    if first == i64::MIN {
        String::new()
    } else {
        day_string(first)
    }
}
