//! The ARI events side of the lab: a test's own Stasis app and its
//! WebSocket, with waits that keep unmatched events for later.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue, Message};

use super::{secs, unique, Lab};
use crate::wait::{poll_until, EVERY};

/// The id of the channel an ARI event is about (`channel`, or `peer` for Dial,
/// or a playback's `channel:` target), if any.
pub fn event_channel_id(ev: &Value) -> Option<&str> {
    if let Some(id) = ev["channel"]["id"].as_str() {
        return Some(id);
    }
    if let Some(id) = ev["peer"]["id"].as_str() {
        return Some(id);
    }
    ev["playback"]["target_uri"]
        .as_str()
        .and_then(|t| t.strip_prefix("channel:"))
}

/// A Stasis app registered by a test, with its events WebSocket. Events are
/// read by a background task into a queue; the `wait_*` calls take the first
/// matching event and keep the others for later calls, so nothing is lost.
/// Call [`App::close`] at the end of a test: it closes the WebSocket
/// properly (a dropped one makes Asterisk log "Web socket closed abruptly").
pub struct App {
    name: String,
    rx: mpsc::UnboundedReceiver<Value>,
    backlog: VecDeque<Value>,
    reader: Option<JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl App {
    pub(super) async fn connect(lab: &Lab, name: &str, subscribe_all: bool) -> Result<App> {
        let ws_url = format!(
            "{}/ari/events?app={name}&subscribeAll={subscribe_all}",
            lab.ari_url.replacen("http://", "ws://", 1)
        );
        let mut req = ws_url.as_str().into_client_request()?;
        req.headers_mut()
            .insert("Authorization", HeaderValue::from_str(&lab.basic_auth())?);
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .with_context(|| format!("connecting the ARI events WebSocket for app {name}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let reader = tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    msg = ws.next() => match msg {
                        Some(msg) => msg,
                        None => break,
                    },
                    _ = &mut stopped => {
                        let _ = ws.close(None).await;
                        // Read until Asterisk's close frame ends the stream.
                        let _ = tokio::time::timeout(secs(2), async { while ws.next().await.is_some() {} }).await;
                        break;
                    }
                };
                match msg {
                    Ok(Message::Text(text)) => match serde_json::from_str::<Value>(&text) {
                        Ok(ev) => {
                            if tx.send(ev).is_err() {
                                break;
                            }
                        }
                        Err(e) => eprintln!("lab: undecodable ARI event ({e}): {text}"),
                    },
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        });
        // The app exists once Asterisk lists it; only then can channels enter it.
        let path = format!("/applications/{name}");
        poll_until(secs(5), EVERY, || lab.get(&path, &[]))
            .await
            .with_context(|| format!("app {name} did not register"))?;
        Ok(App {
            name: name.to_string(),
            rx,
            backlog: VecDeque::new(),
            reader: Some(reader),
            stop: Some(stop),
        })
    }

    /// Closes the events WebSocket cleanly (the app unregisters).
    pub async fn close(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout(secs(3), reader).await;
        }
    }

    /// The app name, for `Originate::to_app` or the `VOICEPAY_APP` variable.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for the first event matching `pred` (earlier ones kept for
    /// later calls). `what` names it in the timeout error.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Result<Value> {
        if let Some(pos) = self.backlog.iter().position(&mut pred) {
            return Ok(self.backlog.remove(pos).expect("position is in range"));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(ev)) if pred(&ev) => return Ok(ev),
                Ok(Some(ev)) => self.backlog.push_back(ev),
                Ok(None) => bail!(
                    "app {}: events WebSocket closed while waiting for {what}",
                    self.name
                ),
                Err(_) => bail!(
                    "app {}: no {what} within {timeout:?}; other events: {}",
                    self.name,
                    summarize(&self.backlog)
                ),
            }
        }
    }

    /// Waits for an event of `event_type` about channel `channel_id`.
    pub async fn wait_channel_event(
        &mut self,
        channel_id: &str,
        event_type: &str,
        timeout: Duration,
    ) -> Result<Value> {
        let what = format!("{event_type} for {channel_id}");
        self.wait_for(&what, timeout, |ev| {
            ev["type"] == event_type && event_channel_id(ev) == Some(channel_id)
        })
        .await
    }

    /// Collects every event about `channel_id`, in order, up to and including
    /// the first of type `until` (e.g. `ChannelDestroyed`).
    pub async fn channel_events_until(
        &mut self,
        channel_id: &str,
        until: &str,
        timeout: Duration,
    ) -> Result<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = self
                .wait_for(&format!("{until} for {channel_id}"), left, |ev| {
                    event_channel_id(ev) == Some(channel_id)
                })
                .await
                .with_context(|| format!("events so far: {}", summarize(&seen)))?;
            let done = ev["type"] == until;
            seen.push(ev);
            if done {
                return Ok(seen);
            }
        }
    }

    /// Waits for `count` ChannelDtmfReceived events on `channel_id` and
    /// returns their digits in arrival order.
    pub async fn dtmf_digits(
        &mut self,
        channel_id: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut digits = String::new();
        while digits.len() < count {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = self
                .wait_channel_event(channel_id, "ChannelDtmfReceived", left)
                .await
                .with_context(|| format!("digits so far: {digits:?}"))?;
            digits.push_str(ev["digit"].as_str().unwrap_or("?"));
        }
        Ok(digits)
    }

    /// Plays `media` on a channel of this app and waits for PlaybackFinished;
    /// returns the final state (`done`, or `failed` when a file is missing).
    pub async fn play_and_wait(
        &mut self,
        lab: &Lab,
        channel_id: &str,
        media: &[&str],
        lang: Option<&str>,
        timeout: Duration,
    ) -> Result<String> {
        let playback_id = unique("pb");
        lab.play(channel_id, &playback_id, media, lang).await?;
        let what = format!("PlaybackFinished of {media:?} on {channel_id}");
        let ev = self
            .wait_for(&what, timeout, |ev| {
                ev["type"] == "PlaybackFinished" && ev["playback"]["id"] == playback_id.as_str()
            })
            .await?;
        Ok(ev["playback"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }
}

fn summarize(events: impl IntoIterator<Item = impl std::borrow::Borrow<Value>>) -> String {
    let names: Vec<String> = events
        .into_iter()
        .map(|ev| {
            let ev = ev.borrow();
            format!(
                "{}({})",
                ev["type"].as_str().unwrap_or("?"),
                event_channel_id(ev).unwrap_or("-")
            )
        })
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
