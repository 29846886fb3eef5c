//! Test helpers for voicepay's Asterisk lab: a real Asterisk 22 brought up by
//! `scripts/asterisk up`, driven over ARI (REST + events WebSocket).
//!
//! A test that needs Asterisk starts with [`require_asterisk`]; it skips when
//! Asterisk is not running, and fails under `CI=true`:
//!
//! ```text
//! let Some(lab) = lab::require_asterisk() else { return Ok(()) };
//! let mut app = lab.app("dtmf").await?;               // our own Stasis app
//! lab.script_handset("13700000001", "answer=1;keys=1w805137#;hold=20").await?;
//! let id = lab::unique("dtmf");
//! lab.originate(&Originate::to_app(lab.handset("13700000001"), app.name(), &id)).await?;
//! app.wait_channel_event(&id, "StasisStart", secs(10)).await?;
//! assert_eq!(app.dtmf_digits(&id, 8, secs(10)).await?, "1805137#");
//! lab.hangup(&id).await?;
//! app.close().await;
//! ```
//!
//! Settings: `VOICEPAY__ARI__*` and `VOICEPAY__TELEPHONY__CALLBACK_ENDPOINT`
//! from the environment (`set -a; . scripts/lab.env; set +a`), falling back to
//! the defaults written in `scripts/lab.env` when unset.
//!
//! Why every test gets its own Stasis app ([`Lab::app`]): one WebSocket owns
//! an app name, and a second connection with the same name takes it over, so
//! tests sharing `voicepay` could not run in parallel (nor beside a running
//! daemon). Dialplan that runs `Stasis(${VOICEPAY_APP},…)` is pointed at the
//! test's app with the channel variable `VOICEPAY_APP` (a channel variable
//! hides the global of the same name), see [`Originate::var`].
//!
//! Lab handsets (`dialplan/lab.conf`): `Local/<phone>@voicepay-lab` plays a
//! cardholder whose behaviour is the script in the global `LAB_<phone>`, set
//! with [`Lab::script_handset`]. Script items, `;`-separated:
//! `answer=S|never|busy|congestion|softphone` (`never` rings `hold` seconds
//! then ends with cause 19 / Dial status NOANSWER; an originate timeout that
//! ends the ringing first gives no final Dial status, only ChannelDestroyed
//! cause 19), `delay=S`, `keys=DTMF` (`w` =
//! 0.5 s pause, `W` = 1 s), `tone=MS`, `gap=MS`, `hold=S`, `hangup=S`.

pub mod assisted;
mod events;
pub mod softphone;

pub use events::{event_channel_id, App};

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Asterisk's log is one file for every test of a binary. A test that reads
/// a stretch of it for warnings holds [`log_window_alone`]; every other test
/// that makes Asterisk do something holds [`log_window`] for its run, so none
/// of its (expected) notices lands in that stretch.
static LOG_WINDOW: RwLock<()> = RwLock::const_new(());

/// A share of Asterisk's log: held by a test that makes Asterisk work.
pub async fn log_window() -> RwLockReadGuard<'static, ()> {
    LOG_WINDOW.read().await
}

/// Asterisk's log to oneself: held by a test that reads it for warnings.
pub async fn log_window_alone() -> RwLockWriteGuard<'static, ()> {
    LOG_WINDOW.write().await
}

/// Keys a lab handset script may use (dialplan/lab.conf documents them).
pub const HANDSET_SCRIPT_KEYS: &[&str] =
    &["answer", "delay", "keys", "tone", "gap", "hold", "hangup"];

/// Shorthand for `Duration::from_secs`.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// True when running under CI (`CI=true`): a test that needs Asterisk or a
/// softphone must then fail, never skip.
pub fn under_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// A process-unique id with a readable prefix, for channel, playback and app
/// ids chosen by the client (events may arrive before the HTTP response).
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Returns the lab when ARI answers. Otherwise prints
/// "skipping: Asterisk not running (scripts/asterisk up)" and returns None,
/// or panics under `CI=true`. Wrong ARI credentials always panic: Asterisk is
/// there but configured differently from `scripts/lab.env`.
pub fn require_asterisk() -> Option<Lab> {
    let lab = match Lab::from_env() {
        Ok(lab) => lab,
        Err(e) => panic!("lab settings are unusable: {e:#}"),
    };
    match lab.probe() {
        Ok(()) => Some(lab),
        Err(Probe::Refused(status)) => panic!(
            "ARI at {} answered {status} to user {:?}: Asterisk runs with other credentials than scripts/lab.env",
            lab.ari_url, lab.username
        ),
        Err(Probe::Unreachable(e)) if under_ci() => panic!(
            "CI=true and Asterisk is required, but ARI at {} is not reachable ({e}); run scripts/asterisk up and source scripts/lab.env",
            lab.ari_url
        ),
        Err(Probe::Unreachable(_)) => {
            eprintln!("skipping: Asterisk not running (scripts/asterisk up)");
            None
        }
    }
}

enum Probe {
    Unreachable(String),
    Refused(u16),
}

/// The Asterisk lab: ARI REST calls, handset scripts, and `scripts/asterisk`.
pub struct Lab {
    ari_url: String,
    username: String,
    password: String,
    voicepay_app: String,
    callback_endpoint: String,
    repo: PathBuf,
    http: reqwest::Client,
}

impl Lab {
    /// Reads the settings (environment first, then `scripts/lab.env` defaults).
    pub fn from_env() -> Result<Lab> {
        let repo = repo_root()?;
        let get = |key: &str| -> Result<String> {
            setting(&repo, key)
                .with_context(|| format!("{key} is not set and scripts/lab.env has no default"))
        };
        let ari_url = get("VOICEPAY__ARI__URL")?.trim_end_matches('/').to_string();
        if !ari_url.starts_with("http://") {
            bail!("VOICEPAY__ARI__URL must be http://HOST:PORT (loopback lab), got {ari_url}");
        }
        Ok(Lab {
            ari_url,
            username: get("VOICEPAY__ARI__USERNAME")?,
            password: get("VOICEPAY__ARI__PASSWORD")?,
            voicepay_app: get("VOICEPAY__ARI__APP")?,
            callback_endpoint: get("VOICEPAY__TELEPHONY__CALLBACK_ENDPOINT")?,
            repo,
            http: reqwest::Client::builder()
                .timeout(secs(15))
                // Below http.conf's session_keep_alive (15 s).
                .pool_idle_timeout(secs(10))
                .build()?,
        })
    }

    /// ARI's base URL, e.g. `http://127.0.0.1:8088`.
    pub fn ari_url(&self) -> &str {
        &self.ari_url
    }

    /// The app name the dialplan's `Stasis()` uses (`VOICEPAY__ARI__APP`).
    pub fn voicepay_app(&self) -> &str {
        &self.voicepay_app
    }

    /// The repository root (for `scripts/`, `sounds/prompts.tsv`).
    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// The dial string of lab handset `phone`: the callback endpoint with
    /// `{phone}` filled in, e.g. `Local/13700000001@voicepay-lab`.
    pub fn handset(&self, phone: &str) -> String {
        self.callback_endpoint.replace("{phone}", phone)
    }

    fn probe(&self) -> Result<(), Probe> {
        let hostport = self.ari_url.trim_start_matches("http://");
        let hostport = hostport.split('/').next().unwrap_or(hostport);
        let addr = hostport
            .to_socket_addrs()
            .map_err(|e| Probe::Unreachable(e.to_string()))?
            .next()
            .ok_or_else(|| Probe::Unreachable(format!("{hostport} does not resolve")))?;
        let mut stream = TcpStream::connect_timeout(&addr, secs(2))
            .map_err(|e| Probe::Unreachable(e.to_string()))?;
        let _ = stream.set_read_timeout(Some(secs(5)));
        let request = format!(
            "GET /ari/asterisk/info HTTP/1.0\r\nHost: {hostport}\r\nAuthorization: {}\r\n\r\n",
            self.basic_auth()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| Probe::Unreachable(e.to_string()))?;
        let mut head = [0u8; 64];
        let n = stream
            .read(&mut head)
            .map_err(|e| Probe::Unreachable(e.to_string()))?;
        let line = String::from_utf8_lossy(&head[..n]);
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        match status {
            200 => Ok(()),
            401 | 403 => Err(Probe::Refused(status)),
            _ => Err(Probe::Unreachable(format!("unexpected answer {line:?}"))),
        }
    }

    fn basic_auth(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    // --- ARI REST --------------------------------------------------------

    fn url(&self, path: &str) -> String {
        format!("{}/ari{path}", self.ari_url)
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Value> {
        let resp = req
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await
            .with_context(|| what.to_string())?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(AriError {
                status: status.as_u16(),
                body: text,
            })
            .with_context(|| what.to_string());
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{what}: ARI returned non-JSON {text:?}"))
    }

    /// `GET /ari{path}` with query parameters.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        self.send(
            self.http.get(self.url(path)).query(query),
            &format!("GET {path}"),
        )
        .await
    }

    /// `POST /ari{path}` with query parameters and an optional JSON body.
    pub async fn post(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self.http.post(self.url(path)).query(query);
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.send(req, &format!("POST {path}")).await
    }

    /// `DELETE /ari{path}` with query parameters.
    pub async fn delete(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        self.send(
            self.http.delete(self.url(path)).query(query),
            &format!("DELETE {path}"),
        )
        .await
    }

    /// `GET /asterisk/info`.
    pub async fn info(&self) -> Result<Value> {
        self.get("/asterisk/info", &[]).await
    }

    /// Sets a dialplan global variable.
    pub async fn set_global(&self, name: &str, value: &str) -> Result<()> {
        self.post(
            "/asterisk/variable",
            &[("variable", name), ("value", value)],
            None,
        )
        .await
        .map(|_| ())
    }

    /// Reads a dialplan global variable ("" when unset).
    pub async fn global(&self, name: &str) -> Result<String> {
        let v = self
            .get("/asterisk/variable", &[("variable", name)])
            .await?;
        Ok(v["value"].as_str().unwrap_or_default().to_string())
    }

    /// Scripts lab handset `phone` (global `LAB_<phone>`), e.g.
    /// `"answer=1;keys=1w805137#;hold=20"`, `"answer=never"`, `"answer=busy"`.
    /// Unknown keys are refused here rather than ignored by the dialplan.
    pub async fn script_handset(&self, phone: &str, script: &str) -> Result<()> {
        check_handset_script(phone, script)?;
        self.set_global(&format!("LAB_{phone}"), script).await
    }

    /// Forgets the script of `phone` (it then answers and holds).
    pub async fn clear_handset(&self, phone: &str) -> Result<()> {
        self.set_global(&format!("LAB_{phone}"), "").await
    }

    /// Registers a fresh Stasis app named `vp-<label>-…` and returns its
    /// event stream. The app lives as long as the returned [`App`].
    pub async fn app(&self, label: &str) -> Result<App> {
        App::connect(self, &unique(&format!("vp-{label}")), false).await
    }

    /// [`Lab::app`] connected with `subscribeAll=true`: it receives the
    /// events of every channel, bridge and endpoint (e.g. the playbacks
    /// another app starts), not only those of its own channels.
    pub async fn app_all(&self, label: &str) -> Result<App> {
        App::connect(self, &unique(&format!("vp-{label}")), true).await
    }

    /// Originates a channel (`POST /channels/{channelId}`); see [`Originate`].
    pub async fn originate(&self, o: &Originate) -> Result<Value> {
        let timeout = o.timeout_secs.to_string();
        let priority = o.priority.map(|p| p.to_string());
        let mut q: Vec<(&str, &str)> = vec![("endpoint", &o.endpoint), ("timeout", &timeout)];
        if let Some(app) = &o.app {
            q.push(("app", app));
        }
        if let Some(args) = &o.app_args {
            q.push(("appArgs", args));
        }
        if let Some(c) = &o.context {
            q.push(("context", c));
        }
        if let Some(e) = &o.extension {
            q.push(("extension", e));
        }
        if let Some(p) = &priority {
            q.push(("priority", p));
        }
        if let Some(cid) = &o.caller_id {
            q.push(("callerId", cid));
        }
        let body = json!({ "variables": o.variables });
        self.post(&format!("/channels/{}", o.channel_id), &q, Some(body))
            .await
    }

    /// Subscribes `app` to an event source such as `channel:<id>`, to watch
    /// a channel that is not in the app (e.g. one running dialplan).
    pub async fn subscribe(&self, app: &str, event_source: &str) -> Result<()> {
        self.post(
            &format!("/applications/{app}/subscription"),
            &[("eventSource", event_source)],
            None,
        )
        .await
        .map(|_| ())
    }

    /// Reads a channel variable.
    pub async fn channel_var(&self, channel_id: &str, name: &str) -> Result<String> {
        let v = self
            .get(
                &format!("/channels/{channel_id}/variable"),
                &[("variable", name)],
            )
            .await?;
        Ok(v["value"].as_str().unwrap_or_default().to_string())
    }

    /// Answers a channel that is in our app.
    pub async fn answer(&self, channel_id: &str) -> Result<()> {
        self.post(&format!("/channels/{channel_id}/answer"), &[], None)
            .await
            .map(|_| ())
    }

    /// Hangs a channel up; a channel that is already gone (404) is fine.
    pub async fn hangup(&self, channel_id: &str) -> Result<()> {
        match self
            .delete(&format!("/channels/{channel_id}"), &[("reason", "normal")])
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if ari_status(&e) == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets a channel variable.
    pub async fn set_channel_var(&self, channel_id: &str, name: &str, value: &str) -> Result<()> {
        self.post(
            &format!("/channels/{channel_id}/variable"),
            &[("variable", name), ("value", value)],
            None,
        )
        .await
        .map(|_| ())
    }

    /// Sends a channel in our app back to the dialplan.
    pub async fn continue_in_dialplan(
        &self,
        channel_id: &str,
        context: &str,
        extension: &str,
        priority: u32,
    ) -> Result<()> {
        let priority = priority.to_string();
        let q = [
            ("context", context),
            ("extension", extension),
            ("priority", priority.as_str()),
        ];
        self.post(&format!("/channels/{channel_id}/continue"), &q, None)
            .await
            .map(|_| ())
    }

    /// Starts playing `media` (e.g. `sound:voicepay/welcome`, several in a
    /// row) on a channel, with a client-chosen playback id and language.
    pub async fn play(
        &self,
        channel_id: &str,
        playback_id: &str,
        media: &[&str],
        lang: Option<&str>,
    ) -> Result<Value> {
        // One comma-separated `media`: Asterisk keeps only the last of
        // repeated query parameters.
        let media = media.join(",");
        let mut q: Vec<(&str, &str)> = vec![("media", media.as_str())];
        if let Some(lang) = lang {
            q.push(("lang", lang));
        }
        self.post(
            &format!("/channels/{channel_id}/play/{playback_id}"),
            &q,
            None,
        )
        .await
    }

    /// Sounds Asterisk knows in `lang` (`GET /sounds?lang=`): id + formats.
    pub async fn sounds(&self, lang: &str) -> Result<Vec<Value>> {
        let v = self.get("/sounds", &[("lang", lang)]).await?;
        v.as_array()
            .cloned()
            .ok_or_else(|| anyhow!("GET /sounds: not a list"))
    }

    /// The state of an endpoint (`online`, `offline`, …), None if unknown.
    pub async fn endpoint_state(&self, tech: &str, resource: &str) -> Result<Option<String>> {
        match self
            .get(&format!("/endpoints/{tech}/{resource}"), &[])
            .await
        {
            Ok(v) => Ok(v["state"].as_str().map(str::to_string)),
            Err(e) if ari_status(&e) == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    // --- scripts/asterisk ------------------------------------------------

    /// Runs `scripts/asterisk ARGS…` and returns its stdout.
    pub async fn script(&self, args: &[&str]) -> Result<String> {
        let out = tokio::process::Command::new(self.repo.join("scripts/asterisk"))
            .args(args)
            .output()
            .await
            .context("running scripts/asterisk")?;
        if !out.status.success() {
            bail!(
                "scripts/asterisk {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// One Asterisk CLI command (`scripts/asterisk cli …`), its output.
    pub async fn cli(&self, command: &str) -> Result<String> {
        self.script(&["cli", command]).await
    }

    /// The folder holding Asterisk's logs (messages.log).
    pub async fn log_dir(&self) -> Result<PathBuf> {
        Ok(PathBuf::from(self.script(&["logdir"]).await?.trim()))
    }
}

/// `VOICEPAY__ARI__REST_TRANSPORT` (the environment, else scripts/lab.env:
/// `http`): the `ari.rest_transport` of the lab tests' daemons, so the
/// whole real-Asterisk suite runs on either transport.
pub fn rest_transport() -> voicepay::config::RestTransport {
    match lab_setting("VOICEPAY__ARI__REST_TRANSPORT").as_str() {
        "websocket" => voicepay::config::RestTransport::Websocket,
        "http" | "" => voicepay::config::RestTransport::Http,
        other => panic!("VOICEPAY__ARI__REST_TRANSPORT={other:?}: http or websocket"),
    }
}

/// A lab setting such as `VOICEPAY__ARI__URL`: the environment first, then
/// the default written in `scripts/lab.env`. Panics when neither has it.
pub fn lab_setting(key: &str) -> String {
    let repo = repo_root().expect("repository root");
    setting(&repo, key).unwrap_or_else(|| panic!("{key} has no default in scripts/lab.env"))
}

/// Checks a lab handset script against dialplan/lab.conf's format.
pub fn check_handset_script(phone: &str, script: &str) -> Result<()> {
    if phone.is_empty() || !phone.chars().all(|c| c.is_ascii_digit() || c == '+') {
        bail!("lab handset number must be digits, got {phone:?}");
    }
    for item in script.split(';').filter(|i| !i.trim().is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("script item {item:?} is not key=value"))?;
        if !HANDSET_SCRIPT_KEYS.contains(&key) {
            bail!("unknown lab handset script key {key:?} (known: {HANDSET_SCRIPT_KEYS:?})");
        }
        if value.contains(',') {
            bail!("script item {item:?}: commas would break the dialplan");
        }
    }
    Ok(())
}

/// An ARI error status with the body Asterisk sent.
#[derive(Debug)]
pub struct AriError {
    pub status: u16,
    pub body: String,
}

impl std::fmt::Display for AriError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ARI answered {}: {}", self.status, self.body)
    }
}

impl std::error::Error for AriError {}

/// The ARI status of an error from a [`Lab`] call, if it was one.
pub fn ari_status(e: &anyhow::Error) -> Option<u16> {
    e.downcast_ref::<AriError>().map(|a| a.status)
}

/// An originate request (`POST /channels/{channelId}`). Into our app:
/// [`Originate::to_app`]; into the dialplan (the originated channel runs
/// context/extension when the endpoint answers): [`Originate::to_dialplan`].
#[derive(Clone, Debug)]
pub struct Originate {
    pub endpoint: String,
    pub channel_id: String,
    pub app: Option<String>,
    pub app_args: Option<String>,
    pub context: Option<String>,
    pub extension: Option<String>,
    pub priority: Option<u32>,
    pub caller_id: Option<String>,
    /// Seconds to wait for an answer (ARI's default is 30; always set it).
    pub timeout_secs: u32,
    /// Channel variables of the originated channel.
    pub variables: BTreeMap<String, String>,
}

impl Originate {
    fn new(endpoint: impl Into<String>, channel_id: &str) -> Self {
        Originate {
            endpoint: endpoint.into(),
            channel_id: channel_id.to_string(),
            app: None,
            app_args: None,
            context: None,
            extension: None,
            priority: None,
            caller_id: None,
            timeout_secs: 30,
            variables: BTreeMap::new(),
        }
    }

    /// Calls `endpoint`; when answered, the channel enters Stasis `app`.
    pub fn to_app(endpoint: impl Into<String>, app: &str, channel_id: &str) -> Self {
        Originate {
            app: Some(app.to_string()),
            ..Self::new(endpoint, channel_id)
        }
    }

    /// Calls `endpoint`; when answered, the channel runs `context,extension,1`.
    pub fn to_dialplan(
        endpoint: impl Into<String>,
        context: &str,
        extension: &str,
        channel_id: &str,
    ) -> Self {
        Originate {
            context: Some(context.to_string()),
            extension: Some(extension.to_string()),
            priority: Some(1),
            ..Self::new(endpoint, channel_id)
        }
    }

    /// Stasis arguments (comma-separated), for [`Originate::to_app`].
    pub fn args(mut self, app_args: &str) -> Self {
        self.app_args = Some(app_args.to_string());
        self
    }

    /// Ring timeout in seconds.
    pub fn timeout(mut self, secs: u32) -> Self {
        self.timeout_secs = secs;
        self
    }

    /// Caller ID, e.g. `"13700000001"` or `"Name <13700000001>"`.
    pub fn caller_id(mut self, cid: &str) -> Self {
        self.caller_id = Some(cid.to_string());
        self
    }

    /// A channel variable on the originated channel.
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.variables.insert(name.to_string(), value.to_string());
        self
    }
}

/// The repository root, found from this file's real location, so the helper
/// also works from a scratch crate whose tests/ are symlinks into the repo.
fn repo_root() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("VOICEPAY_REPO") {
        return Ok(PathBuf::from(dir));
    }
    // This crate is tests/support of the repository.
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lab");
    let real =
        std::fs::canonicalize(&here).with_context(|| format!("resolving {}", here.display()))?;
    real.ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("no repository above {}", real.display()))
}

/// A setting from the environment, else the default in scripts/lab.env
/// (lines are `KEY=${KEY:-default}`).
fn setting(repo: &Path, key: &str) -> Option<String> {
    if let Ok(v) = std::env::var(key) {
        if !v.is_empty() {
            return Some(v);
        }
    }
    let text = std::fs::read_to_string(repo.join("scripts/lab.env")).ok()?;
    let prefix = format!("{key}=");
    let default_prefix = format!("${{{key}:-");
    text.lines().map(str::trim).find_map(|line| {
        let rest = line.strip_prefix(&prefix)?;
        let value = rest
            .strip_prefix(&default_prefix)
            .and_then(|r| r.strip_suffix('}'))
            .unwrap_or(rest);
        Some(value.trim_matches(|c| c == '\'' || c == '"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handset_scripts_are_checked() {
        assert!(check_handset_script("13700000001", "answer=1;keys=1w805137#;hold=20").is_ok());
        assert!(check_handset_script("13700000001", "answer=busy").is_ok());
        assert!(check_handset_script("13700000001", "ring=1").is_err());
        assert!(check_handset_script("13700000001", "keys=1,2").is_err());
        assert!(check_handset_script("1370x", "answer=1").is_err());
    }

    #[test]
    fn lab_env_defaults_are_read() {
        let repo = repo_root().unwrap();
        assert!(setting(&repo, "VOICEPAY_SIP_PORT").is_some());
        let endpoint = setting(&repo, "VOICEPAY__TELEPHONY__CALLBACK_ENDPOINT").unwrap();
        assert!(endpoint.contains("{phone}"), "{endpoint}");
    }
}
