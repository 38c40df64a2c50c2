//! The web console (SPECIFICATION §19): signed in with the API token in a real headless
//! Chromium driven over WebDriver, it lists agents, shows an agent's invocations and log lines
//! as they happen, and an execution with its trace and egress rows; without the token every
//! page and data endpoint is refused. Screenshots of each page are kept under
//! `target/console-screenshots/`.

mod common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};

/// What the agent writes to stderr: a marker, and markup that must show as text.
const SCRIPT: &str = r#"cat >/dev/null
getent hosts denied.test >/dev/null 2>&1 || true
echo "console-log-line" >&2
echo '<script>window.pwned=1</script><b>bold</b>' >&2
echo done"#;

/// A gateway that lets nothing out: the agent's lookup of `denied.test` is a refusal on record.
const GATEWAY: &str = "apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {name: main}
spec: {defaultPolicy: deny-all}
";

const AGENT: &str = "console-echo";

fn agent() -> String {
    sh_agent(AGENT, SCRIPT, "  egressRefs: [{gatewayRef: main}]")
}

/// A `chromedriver` on a free loopback port in its own process group, which is killed with
/// the browsers it started when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver, installed by scripts/setup.sh)");
        ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile: tempfile::tempdir().unwrap(),
        }
    }

    /// A headless Chromium session, once the driver answers.
    async fn browser(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1100",
                         format!("--user-data-dir={}", self.profile.path().display())],
            }),
        );
        let started = Instant::now();
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&self.url)
                .await
            {
                Ok(client) => return client,
                Err(e) => assert!(
                    started.elapsed() < DEADLINE,
                    "no WebDriver session at {}: {e}",
                    self.url
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the screenshots go: `target/console-screenshots/`.
fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// The text of the element `css`, once there is one.
async fn text_of(browser: &Client, css: &str) -> Option<String> {
    browser
        .find(Locator::Css(css))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// Clicks the element `locator` finds.
async fn click(browser: &Client, locator: Locator<'_>) {
    browser.find(locator).await.unwrap().click().await.unwrap();
}

/// Waits until the element `css` holds `wanted`.
async fn wait_for_text(browser: &Client, css: &str, wanted: &str) -> String {
    eventually(&format!("{css} to show {wanted:?}"), || async move {
        text_of(browser, css).await.filter(|t| t.contains(wanted))
    })
    .await
}

/// Waits until the browser is at `path`.
async fn wait_for_path(browser: &Client, path: &str) {
    eventually(&format!("the browser at {path}"), || async move {
        let url = browser.current_url().await.ok()?;
        (url.path() == path).then_some(())
    })
    .await;
}

/// The status a `fetch` from the page gets.
async fn fetch_status(browser: &Client, method: &str, path: &str) -> u64 {
    let script = "const [method, path, done] = arguments;
        fetch(path, {method, credentials: 'same-origin',
                     headers: {'content-type': 'application/json'},
                     body: method === 'GET' ? undefined : '{}'})
          .then(r => done(r.status), e => done(-1));";
    let status = browser
        .execute_async(script, vec![method.into(), path.into()])
        .await
        .expect("fetch from the page");
    status
        .as_u64()
        .unwrap_or_else(|| panic!("fetch failed: {status}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_signs_in_sees_agents_live_logs_and_an_execution() {
    let dev = Dev::start();
    dev.apply(GATEWAY);
    dev.apply(&agent());
    let driver = ChromeDriver::start();
    let browser = driver.browser().await;
    let b = &browser;

    // Without the token the console sends the browser to its login form.
    b.goto(&format!("{}/ui/", dev.api)).await.unwrap();
    wait_for_path(b, "/ui/login").await;
    screenshot(b, "login").await;
    assert_eq!(
        fetch_status(b, "GET", "/ui/data/agents/default/console-echo/logs").await,
        401
    );

    // A wrong token is refused; the right one opens the agent list.
    b.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys("not-the-token")
        .await
        .unwrap();
    click(b, Locator::Id("sign-in")).await;
    wait_for_text(b, "#login-failed", "not the API token").await;
    b.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(&dev.token)
        .await
        .unwrap();
    click(b, Locator::Id("sign-in")).await;
    wait_for_path(b, "/ui/").await;
    wait_for_text(b, "#agents", "default/console-echo").await;
    screenshot(b, "agents").await;

    // The cookie opens the console only: the JSON API still wants the bearer token.
    assert_eq!(fetch_status(b, "GET", "/v1/agents").await, 401);
    assert_eq!(fetch_status(b, "POST", "/v1/apply").await, 401);

    // The agent page; an invocation and its log lines appear without a reload.
    click(b, Locator::LinkText("default/console-echo")).await;
    wait_for_path(b, "/ui/agents/default/console-echo").await;
    wait_for_text(b, "#invocations", "no invocations yet").await;
    wait_for_text(b, "#spec", "gatewayRef: main").await;
    // A few runs, so the latency chart has a line.
    for _ in 0..3 {
        let r = dev
            .invoke(&[("X-Clrk-TaskAgent", "default/console-echo")], "hello")
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let id = dev.invocations(AGENT).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for_text(b, "#invocations", "Succeeded").await;
    let logs = wait_for_text(b, "#logs", "console-log-line").await;
    // What the agent wrote is text, never markup run by the page.
    let logs = if logs.contains("<script>") {
        logs
    } else {
        wait_for_text(b, "#logs", "<script>window.pwned=1</script><b>bold</b>").await
    };
    assert!(logs.contains("<b>bold</b>"), "{logs}");
    assert_eq!(
        b.execute("return window.pwned === undefined && document.querySelectorAll('#logs b, #logs script').length === 0", vec![]).await.unwrap(),
        serde_json::json!(true)
    );
    // Egress records are drawn when the page loads.
    eventually(
        "the refused lookup in the agent's egress table",
        || async move {
            b.refresh().await.ok()?;
            text_of(b, "#egress")
                .await
                .filter(|t| t.contains("denied.test") && t.contains("denied"))
        },
    )
    .await;
    wait_for_text(b, "#logs", "console-log-line").await;
    screenshot(b, "agent").await;

    // The execution: its record, stderr excerpt, trace section and egress rows.
    click(b, Locator::Css(&format!("tr[data-execution='{id}'] a"))).await;
    wait_for_path(b, &format!("/ui/executions/{id}")).await;
    wait_for_text(b, "#execution-status", "Succeeded").await;
    wait_for_text(b, "#stderr", "<script>window.pwned=1</script>").await;
    // The waterfall: the execution's own spans, and its refused lookup under its run. Spans
    // are stored just after the answer, so the page may need a reload to have them.
    let trace = eventually(
        "the execution's trace with its egress call",
        || async move {
            b.refresh().await.ok()?;
            text_of(b, "#trace")
                .await
                .filter(|t| t.contains("run") && t.contains("denied.test"))
        },
    )
    .await;
    for span in ["execution", "admission", "sandbox start", "run"] {
        assert!(trace.contains(span), "{span} missing from {trace}");
    }
    assert_eq!(
        b.execute(
            "const rows = document.querySelectorAll('#trace tbody tr').length; \
             return rows >= 5 && rows === document.querySelectorAll('#trace rect').length",
            vec![]
        )
        .await
        .unwrap(),
        serde_json::json!(true),
        "one bar per span: {trace}"
    );
    let egress = wait_for_text(b, "#egress", "denied.test").await;
    assert!(egress.contains("denied"), "{egress}");
    wait_for_text(b, "#envelope", &id).await;
    screenshot(b, "execution").await;

    click(b, Locator::LinkText("Pools & workers")).await;
    wait_for_text(b, "#pools", "default").await;
    wait_for_text(b, "#workers", "Ready").await;
    screenshot(b, "pools").await;

    // Logging out ends the session.
    click(b, Locator::Id("logout")).await;
    wait_for_path(b, "/ui/login").await;
    b.goto(&format!("{}/ui/pools", dev.api)).await.unwrap();
    wait_for_path(b, "/ui/login").await;
    browser.close().await.unwrap();
}

/// A GET with the given extra headers.
async fn get(url: &str, headers: &[(&str, &str)]) -> HttpResponse {
    request("GET", url, headers, Bytes::new()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_console_page_and_data_endpoint_refuses_without_the_token() {
    let dev = Dev::start();
    dev.apply(GATEWAY);
    dev.apply(&agent());
    let r = dev
        .invoke(&[("X-Clrk-TaskAgent", "default/console-echo")], "hello")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = dev.invocations(AGENT).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pages = [
        "/ui/".to_string(),
        "/ui/pools".to_string(),
        format!("/ui/agents/default/{AGENT}"),
        format!("/ui/executions/{id}"),
    ];
    let data = [
        format!("/ui/data/agents/default/{AGENT}/logs"),
        format!("/ui/data/agents/default/{AGENT}/invocations"),
    ];
    let wrong = format!("clrk_token={}", hex_of("wrong-token"));
    let right = format!("clrk_token={}", hex_of(&dev.token));
    let refusals: [&[(&str, &str)]; 3] = [
        &[],
        &[("cookie", &wrong)],
        // The bearer token is the API's: it does not open the console.
        &[("authorization", &format!("Bearer {}", dev.token))],
    ];
    for path in &pages {
        for headers in refusals {
            let r = get(&format!("{}{path}", dev.api), headers).await;
            assert_eq!(r.status, 303, "{path} {headers:?}: {}", r.text());
            assert!(
                r.header("location").unwrap().starts_with("/ui/login"),
                "{path}"
            );
            assert!(!r.text().contains(AGENT), "{path}");
        }
        let r = get(&format!("{}{path}?token=wrong-token", dev.api), &[]).await;
        assert_eq!(r.status, 303, "{path}");
        assert_eq!(r.header("location"), Some("/ui/login?failed=1"));
        assert!(r.header("set-cookie").is_none());
    }
    for path in &data {
        for headers in refusals {
            let r = get(&format!("{}{path}", dev.api), headers).await;
            assert_eq!(r.status, 401, "{path} {headers:?}: {}", r.text());
            assert!(!r.text().contains("console-log-line"), "{path}");
        }
    }

    // `?token=` sets the cookie and leaves the address; the cookie opens every page.
    let r = get(&format!("{}/ui/pools?token={}", dev.api, dev.token), &[]).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/ui/pools"));
    let cookie = r.header("set-cookie").unwrap();
    assert_eq!(
        cookie,
        format!("{right}; HttpOnly; SameSite=Strict; Path=/"),
        "{cookie}"
    );
    for path in pages.iter().chain(&data) {
        let r = get(&format!("{}{path}", dev.api), &[("cookie", &right)]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
    }
    // What the agent wrote is escaped in the HTML the server renders.
    let execution = get(
        &format!("{}/ui/executions/{id}", dev.api),
        &[("cookie", &right)],
    )
    .await;
    let html = execution.text();
    assert!(
        html.contains("&lt;script&gt;window.pwned=1&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>window.pwned"), "{html}");

    // The cookie does not open the JSON API, reading or writing.
    for (method, path) in [
        ("GET", "/v1/agents"),
        ("POST", "/v1/apply"),
        ("DELETE", "/v1/agents/default/console-echo"),
    ] {
        let r = request(
            method,
            &format!("{}{path}", dev.api),
            &[("cookie", &right), ("content-type", "application/json")],
            Bytes::from_static(b"{}"),
        )
        .await;
        assert_eq!(r.status, 401, "{method} {path}: {}", r.text());
    }

    // Logging out clears the cookie.
    let r = request(
        "POST",
        &format!("{}/ui/logout", dev.api),
        &[("cookie", &right)],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(
        r.header("set-cookie")
            .unwrap()
            .starts_with("clrk_token=; Max-Age=0; HttpOnly")
    );

    // `clrk dev` says where the console is.
    assert!(
        dev.server_log()
            .contains(&format!("console {}/ui/", dev.api)),
        "{}",
        dev.server_log()
    );
}

fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_server_serves_the_console_with_its_token() {
    let cluster = common::cluster::Cluster::start(1, 0).await;
    let client = &cluster.clients[0];
    let r = get(&format!("{}/ui/pools", client.api), &[]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let r = get(
        &format!("{}/ui/pools?token={}", client.api, client.token),
        &[],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let r = get(&format!("{}/ui/pools", client.api), &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("id=\"pools\""), "{}", r.text());
}
