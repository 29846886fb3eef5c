//! Headless Chromium from Debian's packages (`scripts/browser` installs
//! it), driven over WebDriver with fantoccini: each [`Browser`] starts its
//! own chromedriver on a free port and a fresh Chromium profile.
//!
//! [`require_browser`] skips a test when Chromium or chromedriver is
//! missing, and fails it under `CI=true`.

use anyhow::{bail, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use voicepay_testkit::poll_until;

/// Chromium and chromedriver, when both are installed.
pub struct Paths {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

fn path_from(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// The browser's paths, or None (printing "skipping: …"); panics under
/// `CI=true` when either is missing.
pub fn require_browser() -> Option<Paths> {
    let paths = Paths {
        chromium: path_from("VOICEPAY_CHROMIUM", "/usr/bin/chromium"),
        chromedriver: path_from("VOICEPAY_CHROMEDRIVER", "/usr/bin/chromedriver"),
    };
    let missing: Vec<String> = [&paths.chromium, &paths.chromedriver]
        .into_iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return Some(paths);
    }
    if matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1")) {
        panic!(
            "CI=true and the browser test needs {} (run scripts/browser)",
            missing.join(" and ")
        );
    }
    eprintln!(
        "skipping: {} not installed (scripts/browser)",
        missing.join(" and ")
    );
    None
}

/// A chromedriver process and one WebDriver session on a fresh profile.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless session with
    /// a phone-sized window.
    pub async fn start(paths: &Paths) -> Result<Browser> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let mut driver = Command::new(&paths.chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", paths.chromedriver.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        if let Err(e) = wait_ready(&url).await {
            let _ = driver.kill();
            let _ = driver.wait();
            return Err(e);
        }
        let profile = tempfile::tempdir()?;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": paths.chromium,
                // As root in a closed network: no sandbox, and nothing
                // that phones home (its connections would be refused).
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=430,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await;
        match client {
            Ok(client) => Ok(Browser {
                client,
                driver,
                _profile: profile,
            }),
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                Err(anyhow::anyhow!("opening a Chromium session: {e}"))
            }
        }
    }

    /// Ends the session (Chromium exits) and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    /// Saves a PNG of what the page shows under
    /// `$CARGO_TARGET_TMPDIR/demo/NAME.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        println!("screenshot: {}", path.display());
        Ok(path)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Waits (with a generous deadline) until chromedriver says it is ready.
async fn wait_ready(url: &str) -> Result<()> {
    let http = reqwest::Client::new();
    let every = Duration::from_millis(100);
    poll_until(Duration::from_secs(30), every, async || {
        if let Ok(r) = http.get(format!("{url}/status")).send().await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if v["value"]["ready"] == true {
                    return Ok(());
                }
            }
        }
        bail!("chromedriver at {url} did not become ready")
    })
    .await
}

/// Clears the field at CSS selector `css` and types `text` into it.
///
/// # Panics
/// When the page has no such field (a test helper).
pub async fn type_into(b: &Browser, css: &str, text: &str) {
    let field = b.client.find(Locator::Css(css)).await.expect(css);
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

/// Clicks the element at CSS selector `css`.
///
/// # Panics
/// When the page has no such element (a test helper).
pub async fn click(b: &Browser, css: &str) {
    b.client
        .find(Locator::Css(css))
        .await
        .expect(css)
        .click()
        .await
        .expect("click");
}
