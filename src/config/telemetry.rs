//! `[telemetry]` → [`TelemetrySettings`]: the OpenTelemetry collectors that the OTLP/HTTP
//! exports Claude Code sends to sluice are relayed to (none: they are accepted and dropped).

use super::file::{Signal, TelemetryFile};
use super::{invalid, ConfigError};

/// Where telemetry goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TelemetrySettings {
    pub collectors: Vec<Collector>,
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
    let collectors = file
        .forward_to
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let path = format!("telemetry.forward_to[{i}]");
            let url = c.url.trim_end_matches('/');
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.contains(['?', '#'])
            {
                return Err(invalid(
                    format!("{path}.url"),
                    format!("`{url}` is not an http(s) URL"),
                ));
            }
            let mut headers = Vec::with_capacity(c.headers.len());
            for (name, value) in &c.headers {
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
    Ok(TelemetrySettings { collectors })
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
