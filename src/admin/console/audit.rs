//! The Audit page: whether the hash chain verifies (every file, rotated ones first — what
//! `sluice audit verify` checks) and the most recent events, newest first.

use std::path::{Path, PathBuf};

use maud::{html, Markup};
use serde_json::Value;

use super::super::AdminContext;
use super::page::{count, notice};

/// Events shown.
pub const RECENT: usize = 50;

pub fn page(ctx: &AdminContext) -> Markup {
    let snapshot = ctx.reloader.current();
    let Some(path) = snapshot.config.audit.path.clone() else {
        return notice(false, "The audit log is off (audit.path = \"off\").");
    };
    let files = chain_files(&path);
    let verdict = crate::audit::verify(&files);
    let events = recent_events(&files, RECENT);
    html! {
        @match &verdict {
            Ok(lines) => p.notice.ok #chain-status data-intact="true" {
                "The chain verifies: " (count(i64::try_from(*lines).unwrap_or(i64::MAX))) " events in " (files.len()) " file(s), none altered, removed or inserted."
            },
            Err(at) => p.notice.problem #chain-status data-intact="false" {
                "The chain is broken in " (at.file) " at line " (at.line) ": " (at.problem)
            },
        }
        p.muted { "Files: " (path.display()) " and its rotated predecessors." }
        h2 { "Recent events" }
        table #audit-table {
            thead { tr {
                th { "Time" } th { "Kind" } th { "Identity" } th { "Decision" } th.num { "Status" }
                th { "Reason" } th { "Model" } th { "Detail" }
            } }
            tbody {
                @for e in &events {
                    @let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    tr data-seq=(e.get("seq").and_then(Value::as_u64).unwrap_or(0)) {
                        td { (text("time")) }
                        td { (text("kind")) }
                        td { (text("identity")) }
                        td { (text("decision")) }
                        td.num { (e.get("status").and_then(Value::as_u64).unwrap_or(0)) }
                        td { (text("reason")) }
                        td { (text("model")) }
                        td { (text("detail")) }
                    }
                }
            }
        }
    }
}

/// The chain's files, oldest first: rotated ones (`{path}.{first seq}`), then `path`.
fn chain_files(path: &Path) -> Vec<PathBuf> {
    let prefix = format!(
        "{}.",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    );
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy())
                .and_then(|n| n.strip_prefix(&prefix).map(str::to_string))
                .is_some_and(|seq| !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    rotated.sort();
    if path.exists() {
        rotated.push(path.to_path_buf());
    }
    rotated
}

/// The last `n` events across `files`, newest first.
fn recent_events(files: &[PathBuf], n: usize) -> Vec<Value> {
    let mut events = Vec::with_capacity(n);
    for file in files.iter().rev() {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().rev() {
            if events.len() == n {
                return events;
            }
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                events.push(v);
            }
        }
    }
    events
}
