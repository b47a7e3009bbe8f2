//! AWS credentials for a Bedrock upstream, from (in this order) the config, the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), the shared credentials
//! file (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, profile `aws_profile` or
//! `AWS_PROFILE` or `default`), or a `credential_process` command (the AWS CLI's JSON contract).
//! Workers read the current credentials with one atomic load ([`arc_swap`]); temporary
//! credentials from a process are refreshed on a side thread five minutes before they expire.

use super::error::CredentialError;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Deserialize;

use super::sigv4::AwsCredentials;

/// Where the credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    Static(AwsCredentialsConfig),
    Environment,
    Profile(String),
    Process(String),
}

/// Keys written in the config.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentialsConfig {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentialsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AwsCredentialsConfig({}, <redacted>)",
            self.access_key_id
        )
    }
}

/// How early temporary credentials are refreshed.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// The live credentials of one upstream, shared by all workers.
#[derive(Debug)]
pub struct AwsCredentialCell {
    source: CredentialSource,
    current: ArcSwap<AwsCredentials>,
}

impl AwsCredentialCell {
    /// Loads the credentials once (at start-up or config load).
    pub fn load(source: CredentialSource) -> Result<Arc<Self>, CredentialError> {
        let creds = fetch(&source)?;
        Ok(Arc::new(Self {
            source,
            current: ArcSwap::from_pointee(creds),
        }))
    }

    /// The credentials to sign with now.
    pub fn current(&self) -> Arc<AwsCredentials> {
        self.current.load_full()
    }

    /// For temporary credentials from a process: a thread that refreshes them ahead of expiry.
    pub fn start_refresher(self: &Arc<Self>) {
        if !matches!(self.source, CredentialSource::Process(_)) || self.current().expires.is_none()
        {
            return;
        }
        // Held weakly: once a config reload has dropped the upstream, the thread stops.
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("sluice-aws-credentials".into())
            .spawn(move || loop {
                let Some(cell) = weak.upgrade() else { break };
                let wait = cell
                    .current()
                    .expires
                    .and_then(|e| e.duration_since(SystemTime::now()).ok())
                    .map_or(Duration::from_secs(30), |left| {
                        left.saturating_sub(REFRESH_BEFORE)
                    })
                    .max(Duration::from_secs(5));
                drop(cell);
                #[expect(clippy::disallowed_methods, reason = "the refresher's own thread")]
                std::thread::sleep(wait);
                let Some(cell) = weak.upgrade() else { break };
                match fetch(&cell.source) {
                    Ok(fresh) => cell.current.store(Arc::new(fresh)),
                    Err(e) => tracing::error!(error = %e, "cannot refresh AWS credentials"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the AWS credential refresher");
        }
    }
}

fn fetch(source: &CredentialSource) -> Result<AwsCredentials, CredentialError> {
    match source {
        CredentialSource::Static(c) => Ok(AwsCredentials {
            access_key_id: c.access_key_id.clone(),
            secret_access_key: c.secret_access_key.clone(),
            session_token: c.session_token.clone(),
            expires: None,
        }),
        CredentialSource::Environment => {
            let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
            match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                (Some(access_key_id), Some(secret_access_key)) => Ok(AwsCredentials {
                    access_key_id,
                    secret_access_key,
                    session_token: var("AWS_SESSION_TOKEN"),
                    expires: None,
                }),
                _ => Err(CredentialError::NoAwsCredentials),
            }
        }
        CredentialSource::Profile(profile) => from_profile(profile),
        CredentialSource::Process(command) => from_process(command),
    }
}

fn from_profile(profile: &str) -> Result<AwsCredentials, CredentialError> {
    let path = std::env::var("AWS_SHARED_CREDENTIALS_FILE")
        .ok()
        .unwrap_or_else(|| {
            format!(
                "{}/.aws/credentials",
                std::env::var("HOME").unwrap_or_default()
            )
        });
    from_profile_file(&path, profile)
}

fn from_profile_file(path: &str, profile: &str) -> Result<AwsCredentials, CredentialError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Read {
        path: path.to_string(),
        source,
    })?;
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if !in_profile {
            continue;
        }
        let v = Some(v.trim().to_string());
        match k.trim() {
            "aws_access_key_id" => id = v,
            "aws_secret_access_key" => secret = v,
            "aws_session_token" => token = v,
            _ => {}
        }
    }
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(AwsCredentials {
            access_key_id,
            secret_access_key,
            session_token: token,
            expires: None,
        }),
        _ => Err(CredentialError::ProfileIncomplete {
            profile: profile.to_string(),
            path: path.to_string(),
        }),
    }
}

/// The `credential_process` output (AWS CLI contract, version 1).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProcessOutput {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    expiration: Option<String>,
}

fn from_process(command: &str) -> Result<AwsCredentials, CredentialError> {
    let stdout = super::credential_command::run("credential_process", command)?;
    let parsed: ProcessOutput = serde_json::from_slice(&stdout)
        .map_err(|e| CredentialError::ProcessOutput(e.to_string()))?;
    let expires = match parsed.expiration {
        Some(text) => Some(
            humantime::parse_rfc3339_weak(&text)
                .map_err(|e| CredentialError::Expiration(e.to_string()))?,
        ),
        None => None,
    };
    Ok(AwsCredentials {
        access_key_id: parsed.access_key_id,
        secret_access_key: parsed.secret_access_key,
        session_token: parsed.session_token,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_process_output_is_read() {
        let cmd = r#"printf '{"Version":1,"AccessKeyId":"AKIDP","SecretAccessKey":"s","SessionToken":"t","Expiration":"2099-01-01T00:00:00Z"}'"#;
        let cell = AwsCredentialCell::load(CredentialSource::Process(cmd.into())).unwrap();
        let c = cell.current();
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token.as_deref()),
            ("AKIDP", Some("t"))
        );
        assert!(c.expires.is_some());
        assert!(AwsCredentialCell::load(CredentialSource::Process("exit 3".into())).is_err());
    }

    #[test]
    fn profiles_are_read_from_the_shared_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        #[expect(clippy::disallowed_methods, reason = "test set-up")]
        std::fs::write(&path, "[default]\naws_access_key_id = A\naws_secret_access_key = B\n[other]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=E\n").unwrap();
        let creds = from_profile_file(path.to_str().unwrap(), "other").unwrap();
        assert!(from_profile_file(path.to_str().unwrap(), "missing").is_err());
        assert_eq!(
            (creds.access_key_id.as_str(), creds.session_token.as_deref()),
            ("C", Some("E"))
        );
    }
}
