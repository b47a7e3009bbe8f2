//! `[telemetry]` → [`TelemetrySettings`]: the OpenTelemetry collectors that the OTLP/HTTP
//! exports Claude Code sends to sluice are relayed to (none: they are accepted and dropped),
//! and the collector sluice exports its own spans and metrics to (`[telemetry.export]`).

use std::time::Duration;

use super::file::{ExportFile, Signal, TelemetryFile};
use super::{invalid, ConfigError};

/// Where telemetry goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TelemetrySettings {
    pub collectors: Vec<Collector>,
    /// sluice's own spans and metrics (read at start; a reload does not change it).
    pub export: Option<ExportSettings>,
}

/// Where and how sluice exports its own spans and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSettings {
    /// The collector's base URL, without a trailing slash.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub service_name: String,
    pub span_interval: Duration,
    pub metrics_interval: Duration,
}

/// One OTLP/HTTP collector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collector {
    /// Its base URL, without a trailing slash: a signal goes to `{url}/v1/{signal}`.
    pub url: String,
    /// The signals it takes.
    pub signals: Vec<Signal>,
    /// Header fields sent with every export (the collector's own credential); the client's
    /// credential is never sent.
    pub headers: Vec<(String, String)>,
}

impl TelemetrySettings {
    /// The collectors that take `signal`.
    pub fn collectors_of(&self, signal: Signal) -> impl Iterator<Item = &Collector> {
        self.collectors
            .iter()
            .filter(move |c| c.signals.contains(&signal))
    }
}

/// Checks `[telemetry]`.
pub fn build(file: &TelemetryFile) -> Result<TelemetrySettings, ConfigError> {
    let export = file.export.as_ref().map(build_export).transpose()?;
    let collectors = file
        .forward_to
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let path = format!("telemetry.forward_to[{i}]");
            let url = base_url(&path, &c.url)?;
            let headers = header_fields(&path, &c.headers)?;
            Ok(Collector {
                url: url.to_string(),
                signals: c
                    .signals
                    .clone()
                    .unwrap_or_else(|| vec![Signal::Metrics, Signal::Logs, Signal::Traces]),
                headers,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(TelemetrySettings { collectors, export })
}

fn build_export(file: &ExportFile) -> Result<ExportSettings, ConfigError> {
    let path = "telemetry.export";
    let interval = |name: &str, value: &Option<String>, default: Duration| match value {
        Some(text) => super::server::duration(&format!("{path}.{name}"), text),
        None => Ok(default),
    };
    Ok(ExportSettings {
        url: base_url(path, &file.url)?.to_string(),
        headers: header_fields(path, &file.headers)?,
        service_name: file.service_name.clone().unwrap_or_else(|| "sluice".into()),
        span_interval: interval("span_interval", &file.span_interval, Duration::from_secs(1))?,
        metrics_interval: interval(
            "metrics_interval",
            &file.metrics_interval,
            Duration::from_secs(10),
        )?,
    })
}

/// An http(s) base URL without a trailing slash, query or fragment.
fn base_url<'a>(path: &str, url: &'a str) -> Result<&'a str, ConfigError> {
    let url = url.trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains(['?', '#']) {
        return Err(invalid(
            format!("{path}.url"),
            format!("`{url}` is not an http(s) URL"),
        ));
    }
    Ok(url)
}

/// Header fields a collector is sent, each a valid name and a one-line value.
fn header_fields(
    path: &str,
    fields: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut headers = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token || value.contains(['\r', '\n']) {
            return Err(invalid(
                format!("{path}.headers"),
                format!("`{name}` is not a valid header field"),
            ));
        }
        headers.push((name.clone(), value.clone()));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TelemetrySettings, ConfigError> {
        let file: TelemetryFile =
            toml::from_str(text).map_err(|e| invalid("telemetry", e.to_string()))?;
        build(&file)
    }

    #[test]
    fn collectors_take_every_signal_unless_told() {
        let settings = parse(
            "[[forward_to]]\nurl = \"http://otel:4318/\"\n[[forward_to]]\nurl = \"https://vendor.example/otlp\"\nsignals = [\"logs\"]\nheaders = { authorization = \"Bearer v\" }\n",
        )
        .unwrap();
        assert_eq!(settings.collectors[0].url, "http://otel:4318");
        assert_eq!(settings.collectors_of(Signal::Metrics).count(), 1);
        assert_eq!(settings.collectors_of(Signal::Logs).count(), 2);
    }

    #[test]
    fn a_bad_url_or_header_names_its_field() {
        let url = parse("[[forward_to]]\nurl = \"otel:4318\"\n").unwrap_err();
        assert!(
            url.to_string().contains("telemetry.forward_to[0].url"),
            "{url}"
        );
        let header =
            parse("[[forward_to]]\nurl = \"http://otel\"\nheaders = { \"a b\" = \"x\" }\n")
                .unwrap_err();
        assert!(
            header
                .to_string()
                .contains("telemetry.forward_to[0].headers"),
            "{header}"
        );
        assert!(
            parse("[[forward_to]]\nurl = \"http://otel\"\nsignals = [\"profiles\"]\n").is_err()
        );
    }
}
