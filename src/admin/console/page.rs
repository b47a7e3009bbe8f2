//! The console's page frame (navigation, sign-out form, the style sheet), the sign-in page,
//! and the small formatters every page shares. Markup is built with maud, which escapes every
//! value it inserts: a key name, a team or a user agent cannot inject markup.

use maud::{html, Markup, DOCTYPE};

use super::super::http::Reply;

/// The style sheet, compiled into the binary (`GET /console.css`).
pub const STYLE: &str = include_str!("console.css");

/// The pages in the navigation bar: path and title.
pub const PAGES: [(&str, &str); 5] = [
    ("/spend", "Spend"),
    ("/budgets", "Budgets"),
    ("/live", "Live"),
    ("/keys", "Keys"),
    ("/audit", "Audit"),
];

/// A page inside the frame. `refresh`: seconds between automatic reloads (the Live page).
pub fn framed(path: &str, csrf: &str, refresh: Option<u32>, body: Markup) -> Markup {
    let title = PAGES
        .iter()
        .find(|(p, _)| *p == path)
        .map_or("sluice", |(_, t)| t);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if let Some(seconds) = refresh {
                    meta http-equiv="refresh" content=(seconds);
                }
                title { "sluice · " (title) }
                link rel="stylesheet" href="/console.css";
            }
            body {
                header {
                    span.brand { "sluice" }
                    nav {
                        @for (p, t) in PAGES {
                            a href=(p) class=[(p == path).then_some("active")] { (t) }
                        }
                    }
                    form.signout method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Sign out" }
                    }
                }
                main id=(format!("page-{}", title.to_lowercase())) {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The sign-in page, with `problem` said above the form.
pub fn signin(problem: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "sluice · sign in" }
                link rel="stylesheet" href="/console.css";
            }
            body.signin {
                main {
                    h1 { "sluice console" }
                    @if let Some(problem) = problem {
                        p.problem role="alert" { (problem) }
                    }
                    form method="post" action="/login" {
                        label for="admin-key" { "Admin key" }
                        input id="admin-key" type="password" name="key" autocomplete="current-password" required;
                        button id="signin" type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

/// An HTML answer with the console's security headers: nothing from elsewhere, no framing,
/// no caching (pages show keys and spend), no referrer.
pub fn html_reply(status: u16, page: Markup) -> Reply {
    Reply {
        status,
        content_type: "text/html; charset=utf-8",
        headers: security_headers(),
        body: page.into_string().into_bytes(),
    }
}

pub fn security_headers() -> Vec<(&'static str, String)> {
    vec![
        (
            "content-security-policy",
            "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
                .into(),
        ),
        ("x-frame-options", "DENY".into()),
        ("x-content-type-options", "nosniff".into()),
        ("referrer-policy", "same-origin".into()),
        ("cache-control", "no-store".into()),
    ]
}

/// A redirect (303: the browser follows with a GET).
pub fn see_other(location: &str) -> Reply {
    Reply {
        status: 303,
        content_type: "text/plain",
        headers: security_headers()
            .into_iter()
            .chain([("location", location.to_string())])
            .collect(),
        body: Vec::new(),
    }
}

/// A notice above a page's content (a done action, or why it was not done).
pub fn notice(ok: bool, text: &str) -> Markup {
    html! { p class=(if ok { "notice ok" } else { "notice problem" }) role="status" { (text) } }
}

pub fn usd(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("${v:.0}")
    } else {
        format!("${v:.4}")
    }
}

pub fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// A count with thousands separators.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Seconds shown in the unit that reads best (µs, ms, s).
pub fn duration(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.0} µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(count(-1000), "-1,000");
        assert_eq!(duration(0.000_150), "150 µs");
        assert_eq!(duration(0.0123), "12.3 ms");
        assert_eq!(usd(0.5), "$0.5000");
        assert_eq!(percent(0.953), "95.3%");
    }

    #[test]
    fn the_frame_escapes_and_marks_the_active_page() {
        let page = framed("/keys", "t\"ok", None, html! { p { "<b>" } }).into_string();
        assert!(page.contains(r#"<a href="/keys" class="active">Keys</a>"#));
        assert!(page.contains("&lt;b&gt;") && page.contains("t&quot;ok"));
    }
}
