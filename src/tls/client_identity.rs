//! A verified client certificate as an identity: `[[server.tls.client_identities]]` maps a name
//! the certificate presents (an email, DNS or URI SAN, or the subject's CN) to a user and team.
//! `*@example.com` matches every name ending in `@example.com`; without `user`, the matched
//! name is the user.

/// One mapping rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentityRule {
    pub pattern: NamePattern,
    pub user: Option<String>,
    pub team: Option<String>,
}

/// What a rule matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamePattern {
    Exact(String),
    /// `*suffix`: any name ending with `suffix` (non-empty before it).
    Suffix(String),
}

impl NamePattern {
    pub fn parse(text: &str) -> Self {
        match text.strip_prefix('*') {
            Some(suffix) => NamePattern::Suffix(suffix.to_string()),
            None => NamePattern::Exact(text.to_string()),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Exact(exact) => name.eq_ignore_ascii_case(exact),
            NamePattern::Suffix(suffix) => {
                name.len() > suffix.len()
                    && name
                        .get(name.len() - suffix.len()..)
                        .is_some_and(|end| end.eq_ignore_ascii_case(suffix))
            }
        }
    }
}

/// Who a client certificate is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateIdentity {
    /// The certificate name that matched.
    pub name: String,
    pub user: Option<String>,
    pub team: Option<String>,
}

/// The rules, in order: the first rule matching any of the certificate's names wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientIdentities {
    pub rules: Vec<ClientIdentityRule>,
}

impl ClientIdentities {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The identity of a certificate presenting `names`, if a rule maps one of them.
    pub fn identify(&self, names: &[String]) -> Option<CertificateIdentity> {
        self.rules.iter().find_map(|rule| {
            let name = names.iter().find(|n| rule.pattern.matches(n))?;
            Some(CertificateIdentity {
                name: name.clone(),
                user: rule.user.clone().or_else(|| Some(name.clone())),
                team: rule.team.clone(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_names_user_and_team() {
        let ids = ClientIdentities {
            rules: vec![
                ClientIdentityRule {
                    pattern: NamePattern::parse("build-bot"),
                    user: Some("ci".into()),
                    team: Some("infra".into()),
                },
                ClientIdentityRule {
                    pattern: NamePattern::parse("*@example.com"),
                    user: None,
                    team: Some("eng".into()),
                },
            ],
        };
        let alice = ids
            .identify(&["alice@example.com".into(), "Alice".into()])
            .unwrap();
        assert_eq!(alice.user.as_deref(), Some("alice@example.com"));
        assert_eq!(alice.team.as_deref(), Some("eng"));
        assert_eq!(
            ids.identify(&["BUILD-BOT".into()]).unwrap().user.as_deref(),
            Some("ci")
        );
        assert!(ids.identify(&["@example.com".into()]).is_none());
        assert!(ids.identify(&["mallory@example.com.evil".into()]).is_none());
        assert!(ids.identify(&[]).is_none());
    }
}
