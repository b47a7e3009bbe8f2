//! Running an operator's credential command (`credential_process`, a token command) on a side
//! thread: `sh -c`, no standard input, its standard output on success.

use super::error::CredentialError;

/// The standard output of `command`; `what` names it in errors.
pub fn run(what: &'static str, command: &str) -> Result<Vec<u8>, CredentialError> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| CredentialError::Spawn { what, source })?;
    if !out.status.success() {
        return Err(CredentialError::CommandFailed {
            what,
            status: out.status,
        });
    }
    Ok(out.stdout)
}
