//! How `sluice spend` prints its rows: a table for a person at a terminal (the default there),
//! JSON lines for a program (the default into a pipe), or CSV for a spreadsheet. A Claude Code
//! session's per-agent rows follow their session's row.

use std::io::Write;

use sluice::store::ledger::SpendRow;

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SpendFormat {
    Table,
    Json,
    Csv,
}

const COLUMNS: [&str; 11] = [
    "group",
    "agent",
    "requests",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "cache_hit_rate",
    "cache_savings_usd",
];

/// One row's cells, in [`COLUMNS`] order.
fn cells(row: &SpendRow, group: &str, agent: &str) -> [String; 11] {
    [
        group.to_string(),
        agent.to_string(),
        row.requests.to_string(),
        row.input_tokens.to_string(),
        row.output_tokens.to_string(),
        format!("{:.6}", row.cost_usd),
        row.cache_read_input_tokens.to_string(),
        row.cache_creation_input_tokens.to_string(),
        row.cache_creation_1h_input_tokens.to_string(),
        format!("{:.4}", row.cache_hit_rate),
        format!("{:.6}", row.cache_savings_usd),
    ]
}

/// Every row (and its agents) as cells.
fn all_cells(rows: &[SpendRow]) -> Vec<[String; 11]> {
    let name = |g: &Option<String>| g.clone().unwrap_or_else(|| "(none)".into());
    rows.iter()
        .flat_map(|row| {
            let group = name(&row.group);
            std::iter::once(cells(row, &group, "")).chain(
                row.agents
                    .iter()
                    .map(move |a| cells(a, "", &name(&a.group))),
            )
        })
        .collect()
}

/// Writes `rows` in `format`.
pub fn write(rows: &[SpendRow], format: SpendFormat, out: &mut impl Write) -> std::io::Result<()> {
    match format {
        SpendFormat::Json => {
            for row in rows {
                serde_json::to_writer(&mut *out, row)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        }
        SpendFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(COLUMNS)?;
            for row in all_cells(rows) {
                w.write_record(&row)?;
            }
            w.flush()
        }
        SpendFormat::Table => table(rows, out),
    }
}

/// Columns padded to their widest cell; numbers right-aligned.
fn table(rows: &[SpendRow], out: &mut impl Write) -> std::io::Result<()> {
    let body = all_cells(rows);
    let agents = body.iter().any(|r| !r[1].is_empty());
    let shown: Vec<usize> = (0..COLUMNS.len()).filter(|&i| i != 1 || agents).collect();
    let width = |i: usize| {
        body.iter()
            .map(|r| r[i].chars().count())
            .chain([COLUMNS[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..COLUMNS.len()).map(width).collect();
    let line = |cells: &[&str]| {
        shown
            .iter()
            .map(|&i| match i {
                0 | 1 => format!("{:<w$}", cells[i], w = widths[i]),
                _ => format!("{:>w$}", cells[i], w = widths[i]),
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(&COLUMNS))?;
    for row in &body {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&cells).trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(group: &str, cost: f64) -> SpendRow {
        SpendRow {
            group: Some(group.into()),
            requests: 2,
            input_tokens: 10,
            output_tokens: 5,
            cost_usd: cost,
            cache_read_input_tokens: 90,
            cache_creation_input_tokens: 0,
            cache_creation_1h_input_tokens: 0,
            cache_hit_rate: 0.9,
            cache_savings_usd: 0.5,
            agents: Vec::new(),
        }
    }

    fn text(rows: &[SpendRow], format: SpendFormat) -> String {
        let mut out = Vec::new();
        write(rows, format, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rows_print_as_a_table_json_lines_or_csv() {
        let mut session = row("s-1", 1.25);
        session.agents = vec![row("agent-a", 0.25)];
        let rows = [row("platform, infra \"core\"", 0.5), session];
        let csv = text(&rows, SpendFormat::Csv);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], COLUMNS.join(","));
        assert!(
            lines[1].starts_with(r#""platform, infra ""core""",,2,"#),
            "{csv}"
        );
        assert!(lines[3].starts_with(",agent-a,2,"), "{csv}");
        let table = text(&rows, SpendFormat::Table);
        assert!(table.lines().next().unwrap().starts_with("group"));
        assert_eq!(table.lines().count(), 4);
        assert!(table.contains("1.250000") && table.contains("agent-a"));
        let json = text(&rows, SpendFormat::Json);
        assert_eq!(json.lines().count(), 2);
        let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
        assert_eq!(first["requests"], 2);
    }
}
