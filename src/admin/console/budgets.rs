//! The Budgets page: every key, user and team budget with what its current window has used,
//! how fast it burns and when, at that rate, it runs out — the figures `GET /admin/budgets`
//! gives, plus the projection.
//!
//! The burn rate of a daily, weekly or monthly budget is its window's spend over the time the
//! window has run (at least an hour, so a window's first minutes do not project wildly); of a
//! total budget, the entity's last seven days of spend from the ledger. The projected date is
//! when the rest of the limit is gone at that rate, unless the window resets first.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use maud::{html, Markup};

use super::super::{AdminContext, AdminError};
use super::chart;
use super::page::{percent, usd};
use crate::limits::budget::{day_string, today, BudgetSpec, Period};
use crate::limits::Scope;

/// Days a total budget's burn rate is averaged over.
const TOTAL_BURN_DAYS: i64 = 7;

/// One budget as the page shows it.
struct Standing {
    scope: Scope,
    name: String,
    spec: BudgetSpec,
    used: f64,
    /// USD per day.
    burn: f64,
    projection: Projection,
}

enum Projection {
    Exhausted,
    /// Nothing spent yet at this rate.
    Idle,
    On(String),
    /// The window resets (on this day) before the limit is reached.
    AfterReset(String),
}

pub fn page(ctx: &AdminContext) -> Result<Markup, AdminError> {
    let snapshot = ctx.reloader.current();
    let now = SystemTime::now();
    let mut recent = RecentSpend { ctx, cluster: None };
    let standings: Vec<Standing> = snapshot
        .state
        .budgets
        .usage()
        .map(|(scope, name, spec, used)| {
            let burn = burn_rate(&mut recent, scope, name, spec, used, now);
            Standing {
                scope,
                name: name.to_string(),
                spec,
                used,
                burn,
                projection: project(spec, used, burn, now),
            }
        })
        .collect();
    let sessions = &snapshot.config.policies.session_budgets;
    Ok(html! {
        @if standings.is_empty() && sessions.is_empty() {
            p.muted { "No budgets. Set them in the config ([[budgets]]) or with PUT /admin/budgets." }
        }
        @if !standings.is_empty() {
            table #budgets-table {
                thead { tr {
                    th { "Scope" } th { "Name" } th { "Period" } th { "Used" } th.num { "Used $" }
                    th.num { "Limit $" } th.num { "Burn / day" } th { "Runs out" }
                } }
                tbody {
                    @for s in &standings {
                        tr data-scope=(s.scope.label()) data-name=(s.name) data-used-usd=(format!("{:.6}", s.used)) data-limit-usd=(s.spec.limit_usd) {
                            td { (s.scope.label()) }
                            td { (s.name) }
                            td { (s.spec.period.label()) }
                            td { (chart::meter(s.used, s.spec.limit_usd, s.spec.soft_usd)) " " (percent(share(s.used, s.spec.limit_usd))) }
                            td.num { (usd(s.used)) }
                            td.num { (usd(s.spec.limit_usd)) @if let Some(soft) = s.spec.soft_usd { span.muted { " (warn at " (usd(soft)) ")" } } }
                            td.num { (usd(s.burn)) }
                            td { (projection_text(&s.projection)) }
                        }
                    }
                }
            }
        }
        @if !sessions.is_empty() {
            h2 { "Per Claude Code session" }
            table {
                thead { tr { th { "Period" } th.num { "Limit $ per session" } } }
                tbody {
                    @for spec in sessions {
                        tr { td { (spec.period.label()) } td.num { (usd(spec.limit_usd)) } }
                    }
                }
            }
        }
    })
}

fn share(used: f64, limit: f64) -> f64 {
    if limit > 0.0 {
        used / limit
    } else {
        1.0
    }
}

/// USD per day.
fn burn_rate(
    recent: &mut RecentSpend<'_>,
    scope: Scope,
    name: &str,
    spec: BudgetSpec,
    used: f64,
    now: SystemTime,
) -> f64 {
    let day = today();
    if spec.period == Period::Total {
        return recent.usd(scope, name, day).unwrap_or(0.0) / TOTAL_BURN_DAYS as f64;
    }
    let start = UNIX_EPOCH + Duration::from_secs(spec.period.first_day(day).max(0) as u64 * 86_400);
    let elapsed = now
        .duration_since(start)
        .unwrap_or_default()
        .max(Duration::from_secs(3600));
    used / (elapsed.as_secs_f64() / 86_400.0)
}

/// Where recent spend is read: this node's ledger, or every node's in a cluster through one
/// PostgreSQL connection for the whole page, opened when first needed.
struct RecentSpend<'a> {
    ctx: &'a AdminContext,
    cluster: Option<postgres::Client>,
}

impl RecentSpend<'_> {
    /// What the entity spent over the last [`TOTAL_BURN_DAYS`] days, USD.
    fn usd(&mut self, scope: Scope, name: &str, day: i64) -> Option<f64> {
        let key = match scope {
            Scope::Key => format!("key:{name}"),
            _ => name.to_string(),
        };
        let first = day_string(day - (TOTAL_BURN_DAYS - 1));
        let pico = match (&self.ctx.cluster_postgres, &self.ctx.store) {
            (Some(conninfo), _) => {
                if self.cluster.is_none() {
                    self.cluster = super::super::cluster_client(conninfo).ok();
                }
                let client = self.cluster.as_mut()?;
                crate::store::postgres::spent_since(client, scope.label(), &key, &first).ok()?
            }
            (None, Some(path)) => {
                crate::store::ledger::spent_since(path, scope.label(), &key, &first).ok()?
            }
            (None, None) => return None,
        };
        Some(pico as f64 / 1e12)
    }
}

fn project(spec: BudgetSpec, used: f64, burn: f64, now: SystemTime) -> Projection {
    if used >= spec.limit_usd {
        return Projection::Exhausted;
    }
    if burn <= 0.0 {
        return Projection::Idle;
    }
    let days_left = (spec.limit_usd - used) / burn;
    let at = now + Duration::from_secs_f64((days_left * 86_400.0).min(1e11));
    let at_day = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| (d.as_secs() / 86_400) as i64);
    match spec.period.next_reset_day(today()) {
        Some(reset) if at_day >= reset => Projection::AfterReset(day_string(reset)),
        _ => Projection::On(humantime::format_rfc3339_seconds(at).to_string()),
    }
}

fn projection_text(p: &Projection) -> Markup {
    html! {
        @match p {
            Projection::Exhausted => span.down { "exhausted" },
            Projection::Idle => span.muted { "—" },
            Projection::On(at) => span.down { (at) },
            Projection::AfterReset(day) => span.up { "not before it resets on " (day) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(period: Period) -> BudgetSpec {
        BudgetSpec {
            limit_usd: 10.0,
            soft_usd: None,
            period,
        }
    }

    #[test]
    fn projections() {
        let now = SystemTime::now();
        assert!(matches!(
            project(spec(Period::Total), 10.0, 1.0, now),
            Projection::Exhausted
        ));
        assert!(matches!(
            project(spec(Period::Total), 1.0, 0.0, now),
            Projection::Idle
        ));
        // $9 left at $3 a day: three days from now.
        let Projection::On(at) = project(spec(Period::Total), 1.0, 3.0, now) else {
            panic!("a total budget is projected");
        };
        let want = humantime::format_rfc3339_seconds(now + Duration::from_secs(3 * 86_400));
        assert_eq!(at, want.to_string());
        // A daily budget burning slowly resets first.
        assert!(matches!(
            project(spec(Period::Daily), 1.0, 0.5, now),
            Projection::AfterReset(_)
        ));
    }
}
