//! A real browser for the tests: headless Chromium driven by chromedriver over the W3C
//! WebDriver protocol (plain HTTP+JSON on loopback), and the test identity provider
//! (`tests/clients/oidc_provider.mjs`, oidc-provider from npm). Either one missing fails the test
//! loudly, naming what to install.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::{request, wait_for};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver and one headless Chromium session.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    /// Starts chromedriver on a port it picks and opens a headless session (the test PKI's
    /// certificates are accepted: `acceptInsecureCerts`).
    pub fn start() -> Browser {
        let mut driver = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("BROWSER UNAVAILABLE: cannot run chromedriver ({e}); install Debian's chromium and chromium-driver (.ci/run does)")
            });
        let stdout = driver.stdout.take().unwrap();
        let mut port = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                port = rest.trim_end_matches('.').parse::<u16>().ok();
                break;
            }
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port.expect("chromedriver's port")));
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
        };
        let answer = browser.call(
            "POST",
            "/session",
            &json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {
                    "binary": chromium(),
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
                },
            }}}),
        );
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("BROWSER UNAVAILABLE: no session: {answer}"))
            .to_string();
        browser
    }

    pub fn open(&self, url: &str) {
        self.session_call("POST", "/url", &json!({ "url": url }));
    }

    /// The first element `css` selects, waiting for it to appear (10 s).
    pub fn find(&self, css: &str) -> String {
        wait_for(Duration::from_secs(10), || {
            let found = self.session_call(
                "POST",
                "/element",
                &json!({"using": "css selector", "value": css}),
            );
            found[ELEMENT].as_str().map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no `{css}` on {}:\n{}", self.url(), self.source()))
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.session_call(
            "POST",
            &format!("/element/{id}/value"),
            &json!({ "text": text }),
        );
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.session_call("POST", &format!("/element/{id}/click"), &json!({}));
    }

    /// An element's current `value` property.
    pub fn value_of(&self, css: &str) -> String {
        let id = self.find(css);
        let v = self.session_call(
            "GET",
            &format!("/element/{id}/property/value"),
            &Value::Null,
        );
        v.as_str().unwrap_or_default().to_string()
    }

    /// Every element `css` selects now (no waiting).
    pub fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.session_call(
            "POST",
            "/elements",
            &json!({"using": "css selector", "value": css}),
        );
        found
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An element's attribute (`None` when it has none).
    pub fn attribute(&self, element: &str, name: &str) -> Option<String> {
        let v = self.session_call(
            "GET",
            &format!("/element/{element}/attribute/{name}"),
            &Value::Null,
        );
        v.as_str().map(str::to_string)
    }

    /// The rendered text of the first element `css` selects.
    pub fn text_of(&self, css: &str) -> String {
        let id = self.find(css);
        let v = self.session_call("GET", &format!("/element/{id}/text"), &Value::Null);
        v.as_str().unwrap_or_default().to_string()
    }

    /// Clicks an element found earlier.
    pub fn click_element(&self, element: &str) {
        self.session_call("POST", &format!("/element/{element}/click"), &json!({}));
    }

    /// Sizes the window (for screenshots).
    pub fn set_window(&self, width: u32, height: u32) {
        self.session_call(
            "POST",
            "/window/rect",
            &json!({"width": width, "height": height}),
        );
    }

    /// The cookies the page's origin has, HttpOnly ones included.
    pub fn cookies(&self) -> Vec<Value> {
        let v = self.session_call("GET", "/cookie", &Value::Null);
        v.as_array().cloned().unwrap_or_default()
    }

    pub fn url(&self) -> String {
        let v = self.session_call("GET", "/url", &Value::Null);
        v.as_str().unwrap_or_default().to_string()
    }

    pub fn source(&self) -> String {
        let v = self.session_call("GET", "/source", &Value::Null);
        v.as_str().unwrap_or_default().to_string()
    }

    /// Saves a PNG of the page (a test artifact).
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let v = self.session_call("GET", "/screenshot", &Value::Null);
        if let Some(png) = v
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        {
            let _ = std::fs::write(path, png);
        }
    }

    fn session_call(&self, method: &str, path: &str, body: &Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let text = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        );
        let resp = request(self.addr, &raw);
        let answer: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        answer["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call(
                "DELETE",
                &format!("/session/{}", self.session),
                &Value::Null,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("BROWSER UNAVAILABLE: no chromium; install Debian's chromium (.ci/run does)")
        })
}

/// The test identity provider: oidc-provider on a loopback port of its own.
pub struct IdentityProvider {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub issuer: String,
}

impl IdentityProvider {
    /// Starts the provider; `groups` gives each login its groups. `oidc_provider_dir` is the
    /// installed `oidc-provider` package.
    pub fn start(oidc_provider_dir: &Path, groups: &Value) -> IdentityProvider {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/oidc_provider.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .env("OIDC_PROVIDER_DIR", oidc_provider_dir)
            .env("ACCOUNT_GROUPS", groups.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("IDENTITY PROVIDER UNAVAILABLE: cannot run node");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let issuer = wait_line(&lines, "issuer ")
            .expect("IDENTITY PROVIDER UNAVAILABLE: oidc-provider did not start");
        IdentityProvider {
            child,
            lines,
            issuer,
        }
    }

    /// Registers sluice's redirect URI (the provider serves from then on).
    pub fn register(&mut self, redirect_uri: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{redirect_uri}").unwrap();
        stdin.flush().unwrap();
        assert!(
            wait_line(&self.lines, "ready").is_some(),
            "the identity provider did not become ready"
        );
    }

    /// Removes a login at the provider (deprovisioning).
    pub fn remove(&self, login: &str) {
        let addr: SocketAddr = self.issuer.trim_start_matches("http://").parse().unwrap();
        let resp = request(
            addr,
            &format!("POST /test/remove/{login} HTTP/1.1\r\nhost: idp\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
        );
        assert_eq!(resp.status, 204);
    }
}

/// The rest of the first line starting with `prefix` (within 20 s).
fn wait_line(lines: &std::sync::mpsc::Receiver<String>, prefix: &str) -> Option<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines.recv_timeout(left).ok()?;
        if let Some(rest) = line.strip_prefix(prefix) {
            return Some(rest.to_string());
        }
    }
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
