//! Entries by (scope, name), found by a borrowed name: a request's key, user and team names
//! look up their limits and budgets without building an owned key for each lookup.

use std::collections::HashMap;

use super::Scope;

/// A map from (scope, name) to `V`: one map per scope, keyed by name.
#[derive(Debug, Clone)]
pub struct ByScope<V> {
    keys: HashMap<String, V>,
    users: HashMap<String, V>,
    teams: HashMap<String, V>,
}

impl<V> Default for ByScope<V> {
    fn default() -> Self {
        Self {
            keys: HashMap::new(),
            users: HashMap::new(),
            teams: HashMap::new(),
        }
    }
}

impl<V> ByScope<V> {
    fn of(&self, scope: Scope) -> &HashMap<String, V> {
        match scope {
            Scope::Key => &self.keys,
            Scope::User => &self.users,
            Scope::Team => &self.teams,
        }
    }

    fn of_mut(&mut self, scope: Scope) -> &mut HashMap<String, V> {
        match scope {
            Scope::Key => &mut self.keys,
            Scope::User => &mut self.users,
            Scope::Team => &mut self.teams,
        }
    }

    pub fn get(&self, scope: Scope, name: &str) -> Option<&V> {
        self.of(scope).get(name)
    }

    pub fn insert(&mut self, scope: Scope, name: &str, value: V) {
        self.of_mut(scope).insert(name.to_string(), value);
    }

    /// The entry of (scope, name), made with `V::default()` when absent.
    pub fn entry_or_default(&mut self, scope: Scope, name: &str) -> &mut V
    where
        V: Default,
    {
        self.of_mut(scope).entry(name.to_string()).or_default()
    }

    /// Every entry, scope by scope.
    pub fn iter(&self) -> impl Iterator<Item = (Scope, &str, &V)> {
        [Scope::Key, Scope::User, Scope::Team]
            .into_iter()
            .flat_map(move |scope| {
                self.of(scope)
                    .iter()
                    .map(move |(name, v)| (scope, name.as_str(), v))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_found_only_in_its_own_scope() {
        let mut map = ByScope::default();
        map.insert(Scope::Team, "eng", 1);
        *map.entry_or_default(Scope::Key, "eng") += 2;
        assert_eq!(map.get(Scope::Team, "eng"), Some(&1));
        assert_eq!(map.get(Scope::Key, "eng"), Some(&2));
        assert_eq!(map.get(Scope::User, "eng"), None);
        let mut all: Vec<_> = map.iter().map(|(s, n, v)| (s.label(), n, *v)).collect();
        all.sort();
        assert_eq!(all, [("key", "eng", 2), ("team", "eng", 1)]);
    }
}
