//! The verification pages a developer's browser sees: the code form (pre-filled from the link,
//! never submitted by itself), and the outcome of a sign-in. Plain HTML, no script, every
//! interpolated value escaped.

/// The form that takes the code Claude Code shows.
pub fn code_form(prefill: Option<&str>, notice: Option<&str>, error: Option<&str>) -> String {
    let value = prefill.map(escape).unwrap_or_default();
    let notice = notice
        .map(|n| format!("<p class=\"notice\">{}</p>", escape(n)))
        .unwrap_or_default();
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        "Sign in to Claude Code",
        &format!(
            "<h1>Sign in to Claude Code</h1>{notice}{error}\
             <p>Enter the code shown in your terminal, then sign in with your company account.</p>\
             <form method=\"post\" action=\"/device\">\
             <label for=\"user_code\">Code</label> \
             <input id=\"user_code\" name=\"user_code\" value=\"{value}\" autocomplete=\"off\" \
             autocapitalize=\"characters\" spellcheck=\"false\" required> \
             <button id=\"continue\" type=\"submit\">Continue</button> \
             <button id=\"deny\" type=\"submit\" name=\"action\" value=\"deny\">I did not ask for this code</button></form>"
        ),
    )
}

/// The end of a sign-in: done, or why not.
pub fn outcome(signed_in_as: Option<&str>, error: Option<&str>) -> String {
    match (signed_in_as, error) {
        (Some(email), _) => page(
            "Signed in",
            &format!(
                "<h1 id=\"done\">You are signed in</h1><p>Signed in as <b>{}</b>. \
                 Return to your terminal: Claude Code continues by itself.</p>",
                escape(email)
            ),
        ),
        (None, error) => page(
            "Sign-in not completed",
            &format!(
                "<h1 id=\"failed\">Sign-in not completed</h1><p class=\"error\" role=\"alert\">{}</p>",
                escape(error.unwrap_or("The sign-in could not be completed."))
            ),
        ),
    }
}

/// The code was refused by the person it was shown to.
pub fn denied() -> String {
    page(
        "Sign-in refused",
        "<h1 id=\"denied\">Sign-in refused</h1><p>Nobody can sign in with that code now. \
         If you did not start this sign-in, tell your platform team.</p>",
    )
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}\
         .error{{color:#b00020}}.notice{{background:#f4f4f4;padding:.5rem}}\
         input{{font-size:1.2rem;letter-spacing:.1rem}}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

/// HTML-escapes text for an element or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let html = code_form(Some("\"><script>x</script>"), Some("<b>"), None);
        assert!(!html.contains("<script>x"));
        assert!(html.contains("&quot;&gt;&lt;script&gt;"));
        assert!(html.contains("&lt;b&gt;"));
    }
}
