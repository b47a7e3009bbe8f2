//! A posted HTML form (`application/x-www-form-urlencoded`), read with the `form_urlencoded`
//! crate.

/// The fields of one form post.
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form {
            fields: form_urlencoded::parse(body).into_owned().collect(),
        }
    }

    /// A field's value, trimmed; `None` when absent or empty.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_decoded_and_empty_ones_are_absent() {
        let form = Form::parse(b"name=a+b%2Fc&user=&csrf=x");
        assert_eq!(form.text("name"), Some("a b/c"));
        assert_eq!(form.text("user"), None);
        assert_eq!(form.text("team"), None);
        assert_eq!(form.text("csrf"), Some("x"));
    }
}
