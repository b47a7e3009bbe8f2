//! Console sign-in sessions: a random token in an HttpOnly, SameSite=Strict cookie, and a
//! second random token (the CSRF token) that every form of the session carries. Kept in memory
//! on the admin side (a restart signs everyone out), bounded in number and lifetime, and looked
//! up by the token's SHA-256 so the table never holds a usable cookie.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

/// How long a console session lasts from sign-in.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// Sessions kept at once; signing in past this ends the oldest.
pub const MAX_SESSIONS: usize = 64;

/// One signed-in browser.
#[derive(Clone)]
pub struct Session {
    /// The token every form of this session must carry.
    pub csrf: String,
    started: Instant,
}

/// The signed-in sessions, shared by the admin connection threads.
#[derive(Default)]
pub struct Sessions {
    #[expect(
        clippy::disallowed_types,
        reason = "admin connection threads, never a worker; held for a map lookup"
    )]
    by_digest: std::sync::Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// Starts a session: the cookie token to hand the browser, and the session (`None` if the
    /// system's random number generator failed).
    pub fn start(&self) -> Option<(String, Session)> {
        let token = random_token()?;
        let session = Session {
            csrf: random_token()?,
            started: Instant::now(),
        };
        let mut table = self.lock();
        table.retain(|_, s| s.started.elapsed() < LIFETIME);
        if table.len() >= MAX_SESSIONS {
            if let Some(oldest) = table.iter().min_by_key(|(_, s)| s.started).map(|(k, _)| *k) {
                table.remove(&oldest);
            }
        }
        table.insert(digest(&token), session.clone());
        Some((token, session))
    }

    /// The live session a cookie token names.
    pub fn find(&self, token: &str) -> Option<Session> {
        let key = digest(token);
        let mut table = self.lock();
        match table.get(&key) {
            Some(s) if s.started.elapsed() < LIFETIME => Some(s.clone()),
            Some(_) => {
                table.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session a cookie token names.
    pub fn end(&self, token: &str) {
        self.lock().remove(&digest(token));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_digest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Session {
    /// Whether a form's CSRF field is this session's.
    pub fn allows(&self, presented: &str) -> bool {
        !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

fn digest(token: &str) -> [u8; 32] {
    crate::config::keys::digest(token.as_bytes())
}

/// 32 random bytes, hex.
fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes) {
        Ok(()) => Some(hex::encode(bytes)),
        Err(_) => {
            tracing::error!("the system random number generator failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn a_started_session_is_found_by_its_token_and_ended() {
        let sessions = Sessions::default();
        let (token, session) = sessions.start().unwrap();
        assert_eq!(token.len(), 64);
        assert!(sessions.find(&token).unwrap().allows(&session.csrf));
        assert!(!session.allows(""));
        assert!(!session.allows("nope"));
        assert!(sessions.find("other").is_none());
        sessions.end(&token);
        assert!(sessions.find(&token).is_none());
    }

    #[test]
    fn the_table_is_bounded() {
        let sessions = Sessions::default();
        let (first, _) = sessions.start().unwrap();
        for _ in 0..MAX_SESSIONS {
            sessions.start();
        }
        assert!(sessions.find(&first).is_none(), "the oldest session ended");
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
    }
}
