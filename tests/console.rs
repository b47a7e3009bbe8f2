//! The web console in a real browser (headless Chromium through chromedriver): real traffic
//! through sluice, then sign in with the admin key, check each page's figures against the
//! ledger and `/metrics`, issue a key in the page and use it, revoke it and see it refused —
//! and the console refuses form posts without the session's CSRF token or from another origin.
//! A screenshot of every page is saved under the test's temp dir (`console-screenshots/`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "integration test: a failure is a failed test"
)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::browser::Browser;
use common::*;
use serde_json::Value;

const ADMIN_KEY: &str = "sk-admin-console";

fn config(dir: &Path) -> String {
    format!(
        "[store]\npath = \"{}\"\ncommit_interval = \"20ms\"\n[audit]\npath = \"{}\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\nkey_sha256 = \"{}\"\n\
         [[budgets]]\nscope = \"team\"\nname = \"design\"\nlimit_usd = 0.01\nperiod = \"monthly\"\n",
        dir.join("sluice.db").display(),
        dir.join("audit.jsonl").display(),
        sluice::config::keys::hash_hex(ADMIN_KEY)
    )
}

fn admin(addr: SocketAddr, method: &str, path: &str, body: &str) -> Value {
    admin_call(addr, ADMIN_KEY, method, path, body).1
}

fn send(gw: &Gateway, key: &str, agent: &str, session: &str) -> u16 {
    let headers = format!(
        "x-api-key: {key}\r\nuser-agent: {agent}\r\nx-claude-code-session-id: {session}\r\n"
    );
    request(gw.addr, &messages_request(SMALL_BODY, &headers)).status
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `(data-group, data-cost-usd, data-requests)` of the spend table's rows.
fn spend_table(browser: &Browser) -> Vec<(String, f64, i64)> {
    browser
        .find_all("#spend-table tbody tr")
        .iter()
        .map(|row| {
            let a = |name: &str| browser.attribute(row, name).unwrap_or_default();
            (
                a("data-group"),
                a("data-cost-usd").parse().unwrap(),
                a("data-requests").parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_console_shows_the_ledger_and_administers_keys_in_a_real_browser() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&mock.url(), &config(dir.path()));
    let api = gw.admin_addr.expect("the admin listener is announced");
    assert_eq!(
        gw.console_url.as_deref(),
        Some(format!("http://127.0.0.1:{}/", api.port()).as_str()),
        "serve prints the console's address"
    );

    // Traffic from two teams, three user agents, three sessions.
    let design = admin(
        api,
        "POST",
        "/admin/keys",
        r#"{"name":"ana","team":"design","user":"ana@x"}"#,
    );
    let infra = admin(
        api,
        "POST",
        "/admin/keys",
        r#"{"name":"bo","team":"infra","user":"bo@x"}"#,
    );
    let (design, infra) = (
        design["key"].as_str().unwrap(),
        infra["key"].as_str().unwrap(),
    );
    // Open until the first issued key reaches the workers; then keys are required.
    wait_for(Duration::from_secs(2), || {
        (send(&gw, "sk-not-issued", "probe", "s0") == 401).then_some(())
    })
    .expect("the issued keys reach the workers");
    for i in 0..4 {
        assert_eq!(
            send(&gw, design, "claude-cli/2.1.330 (external, cli)", "s-ana"),
            200,
            "{i}"
        );
    }
    for i in 0..7 {
        assert_eq!(
            send(&gw, infra, "Anthropic/Python 0.75.0", "s-bo"),
            200,
            "{i}"
        );
    }
    let ledger = dir.path().join("sluice.db");
    let by_team = wait_for(Duration::from_secs(3), || {
        let rows = sluice::store::ledger::spend(&ledger, "team").ok()?;
        let of = |team: &str| {
            rows.iter()
                .find(|r| r.group.as_deref() == Some(team))
                .map_or(0, |r| r.requests)
        };
        (of("design") == 4 && of("infra") == 7).then_some(rows)
    })
    .expect("the teams' requests are in the ledger");
    let requests: i64 = by_team.iter().map(|r| r.requests).sum();

    let browser = Browser::start();
    browser.set_window(1280, 1000);
    let console = format!("http://127.0.0.1:{}", api.port());
    let shots = screenshots();

    // Signed out, every page leads to the sign-in form; a wrong key is refused there.
    browser.open(&format!("{console}/spend"));
    browser.find("#admin-key");
    assert!(browser.url().ends_with("/login"), "{}", browser.url());
    browser.type_into("#admin-key", "sk-wrong");
    browser.click("#signin");
    let problem = browser.text_of(".problem");
    assert!(
        problem.contains("not the admin key"),
        "{problem:?}\n{}",
        browser.source()
    );
    browser.screenshot(&shots.join("signin.png"));
    browser.type_into("#admin-key", ADMIN_KEY);
    browser.click("#signin");
    browser.find("#page-spend");
    let cookie = browser
        .cookies()
        .into_iter()
        .find(|c| c["name"] == "sluice_console")
        .expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Strict");

    // Spend by team equals the ledger's report, group by group.
    browser.open(&format!("{console}/spend?by=team"));
    browser.find("#spend-table");
    let shown = spend_table(&browser);
    assert_eq!(shown.len(), by_team.len(), "{shown:?}");
    for row in &by_team {
        let group = row.group.clone().unwrap_or_default();
        let (_, cost, requests) = shown
            .iter()
            .find(|(g, ..)| *g == group)
            .unwrap_or_else(|| panic!("no row for {group}: {shown:?}"));
        assert!(
            (cost - row.cost_usd).abs() < 1e-9,
            "{group}: {cost} vs {}",
            row.cost_usd
        );
        assert_eq!(*requests, row.requests, "{group}");
    }
    assert_eq!(browser.text_of("#total-requests"), requests.to_string());
    let bars = browser.find_all("svg.chart rect[data-series]");
    assert!(!bars.is_empty(), "the per-day chart has bars");
    browser.screenshot(&shots.join("spend.png"));

    // By user agent: the agents the clients sent.
    browser.open(&format!("{console}/spend?by=user_agent"));
    browser.find("#spend-table");
    let agents: Vec<String> = spend_table(&browser).into_iter().map(|r| r.0).collect();
    assert!(
        agents.contains(&"claude-cli/2.1.330 (external, cli)".to_string()),
        "{agents:?}"
    );
    assert!(
        agents.contains(&"Anthropic/Python 0.75.0".to_string()),
        "{agents:?}"
    );

    // Budgets: the team budget with what the ledger says the team spent.
    browser.open(&format!("{console}/budgets"));
    let row = browser.find("#budgets-table tr[data-name='design']");
    let used: f64 = browser
        .attribute(&row, "data-used-usd")
        .unwrap()
        .parse()
        .unwrap();
    let spent = by_team
        .iter()
        .find(|r| r.group.as_deref() == Some("design"))
        .unwrap()
        .cost_usd;
    assert!(
        (used - spent).abs() < 1e-6,
        "budget used {used}, ledger {spent}"
    );
    browser.screenshot(&shots.join("budgets.png"));

    // Live: the request count is the one /metrics serves. A scrape is a request too, counted
    // once answered and published: read the page, then scrape, until both read the same
    // published counters.
    let scrape_total = || {
        let metrics = request(
            gw.addr,
            "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        );
        String::from_utf8_lossy(&metrics.body)
            .lines()
            .filter(|l| l.starts_with("sluice_requests_total{"))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum::<f64>()
    };
    let agreed = wait_for(Duration::from_secs(5), || {
        browser.open(&format!("{console}/live"));
        let shown: f64 = browser
            .text_of("#requests-total")
            .replace(',', "")
            .parse()
            .unwrap();
        let scraped = scrape_total();
        (shown == scraped && shown >= requests as f64).then_some(shown)
    });
    assert!(agreed.is_some(), "the Live page and /metrics agree");
    assert!(browser.find_all("#upstreams-table tr[data-upstream]").len() == 1);
    browser.screenshot(&shots.join("live.png"));

    // Keys: issue one in the page, use it, revoke it, see it refused.
    browser.open(&format!("{console}/keys"));
    browser.type_into("#key-name", "from-the-browser");
    browser.type_into("#issue-key input[name='team']", "infra");
    browser.click("#issue");
    let key = wait_for(Duration::from_secs(5), || {
        browser
            .find_all("#new-key")
            .first()
            .map(|_| browser.text_of("#new-key"))
            .filter(|k| k.starts_with("sk-sluice-"))
    })
    .expect("the issued key is shown once");
    browser.screenshot(&shots.join("keys.png"));
    wait_for(Duration::from_secs(2), || {
        (send(&gw, &key, "curl/8", "s-new") == 200).then_some(())
    })
    .expect("the key issued in the page works on the gateway");
    let revoke = browser
        .find_all("#keys-table tr[data-key='from-the-browser'] button.revoke")
        .pop()
        .expect("a revoke button for the new key");
    browser.click_element(&revoke);
    // The click submits a form: the answer page may not have replaced this one yet.
    let revoked = wait_for(Duration::from_secs(5), || {
        browser
            .text_of(".notice")
            .contains("Revoked from-the-browser")
            .then_some(())
    });
    assert!(revoked.is_some(), "{}", browser.text_of(".notice"));
    wait_for(Duration::from_secs(2), || {
        (send(&gw, &key, "curl/8", "s-new") == 401).then_some(())
    })
    .expect("the revoked key is refused");

    // Audit: the chain verifies and shows the console's changes.
    browser.open(&format!("{console}/audit"));
    let status = browser.find("#chain-status");
    assert_eq!(
        browser.attribute(&status, "data-intact").as_deref(),
        Some("true")
    );
    wait_for(Duration::from_secs(3), || {
        browser.open(&format!("{console}/audit"));
        browser.find("#chain-status");
        browser
            .source()
            .contains("POST /keys/from-the-browser/revoke")
            .then_some(())
    })
    .expect("the revocation in the console is audited");
    browser.screenshot(&shots.join("audit.png"));

    // Form posts need the session's CSRF token and the console's own origin.
    let session = cookie["value"].as_str().unwrap();
    let post = |extra: &str, body: &str| {
        request(
            api,
            &format!(
                "POST /keys/ana/revoke HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncookie: sluice_console={session}\r\n{extra}content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
                api.port(),
                body.len()
            ),
        )
        .status
    };
    assert_eq!(post("", ""), 403, "no CSRF token");
    assert_eq!(post("", "csrf=guess"), 403, "a wrong CSRF token");
    let keys_page = browser.source();
    let csrf = keys_page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    assert_eq!(
        post("origin: http://evil.example\r\n", &format!("csrf={csrf}")),
        403,
        "another origin"
    );
    assert_eq!(
        send(&gw, design, "curl/8", "s"),
        200,
        "nothing was revoked by the refused posts"
    );

    // Signing out ends the session: the cookie no longer opens a page.
    browser.click("form.signout button");
    browser.find("#admin-key");
    let page = request(
        api,
        &format!("GET /spend HTTP/1.1\r\nhost: a\r\ncookie: sluice_console={session}\r\n\r\n"),
    );
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/login"));
}

/// The admin API is unchanged beside the console: a bearer key, JSON answers.
#[test]
fn the_admin_api_still_answers_json_with_the_console_beside_it() {
    let mock = mock(&["--no-request-log"]);
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&mock.url(), &config(dir.path()));
    let api = gw.admin_addr.unwrap();
    let resp = request(api, "GET /admin/keys HTTP/1.1\r\nhost: a\r\n\r\n");
    assert_error(&resp, 401, "authentication_error");
    assert_eq!(
        admin(api, "GET", "/admin/keys", "")["data"],
        serde_json::json!([])
    );
    let page = request(api, "GET / HTTP/1.1\r\nhost: a\r\n\r\n");
    assert_eq!(page.status, 303, "the console asks to sign in");
    let css = request(api, "GET /console.css HTTP/1.1\r\nhost: a\r\n\r\n");
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
}
