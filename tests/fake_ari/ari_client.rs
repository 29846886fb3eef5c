//! The ARI client against a scripted fake ARI server (WebSocket + REST on
//! port 0): reconnects, restarts, unknown input, 404s after a hang-up,
//! concurrent calls, and wrong credentials.

use rand::seq::SliceRandom;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use voicepay::ari::{
    AriClient, AriCommands, AriError, AriOptions, Call, ChannelState, ConnectionOptions, Event,
    HangupReason, Notice, Originate, PlaybackState,
};
use voicepay::config::AriSettings;
use voicepay_testkit::fake_ari::{channel, event, request, FakeAri};
use voicepay_testkit::wait::wait_for;

const WAIT: Duration = Duration::from_secs(3);

fn fast_options() -> AriOptions {
    AriOptions {
        connection: ConnectionOptions {
            ping_interval: Duration::from_secs(5),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
            connect_timeout: Duration::from_secs(1),
        },
        ..AriOptions::default()
    }
}

struct Client {
    ari: AriClient,
    shutdown: CancellationToken,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Client {
    fn start(settings: &AriSettings, options: AriOptions) -> Client {
        let shutdown = CancellationToken::new();
        let ari = AriClient::start_with(settings, options, shutdown.clone()).unwrap();
        Client { ari, shutdown }
    }

    async fn notice(&mut self) -> Notice {
        tokio::time::timeout(WAIT, self.ari.notices.recv())
            .await
            .expect("no notice in time")
            .expect("notices closed")
    }

    /// The next `Connected`, as (entity id, restarted, channel ids).
    async fn connected(&mut self) -> (String, bool, Vec<String>) {
        match self.notice().await {
            Notice::Connected {
                entity_id,
                asterisk_restarted,
                channels,
            } => (
                entity_id,
                asterisk_restarted,
                channels.into_iter().map(|c| c.id).collect(),
            ),
            other => panic!("expected Connected, got {other:?}"),
        }
    }

    async fn call(&mut self) -> Call {
        match self.notice().await {
            Notice::Call(call) => call,
            other => panic!("expected a call, got {other:?}"),
        }
    }
}

async fn next_event(call: &mut Call) -> Option<Event> {
    tokio::time::timeout(WAIT, call.events.recv())
        .await
        .expect("no event for the call in time")
}

fn stasis_start(id: &str) -> serde_json::Value {
    event(
        "StasisStart",
        json!({"args": ["callback", "o1"], "channel": channel(id, "Up")}),
    )
}

fn playback(kind: &str, id: &str, target: &str, state: &str) -> serde_json::Value {
    event(
        kind,
        json!({"playback": {"id": id, "media_uri": "sound:vp-welcome",
                            "target_uri": target, "language": "zh", "state": state}}),
    )
}

#[tokio::test]
async fn socket_dropped_mid_call_reconnects_and_the_call_keeps_its_events() {
    let fake = FakeAri::start().await;
    let mut client = Client::start(&fake.settings(), fast_options());
    let (entity, restarted, _) = client.connected().await;
    assert_eq!(entity, "52:54:00:00:00:01");
    assert!(!restarted);

    fake.set_channels(vec![channel("c1", "Up")]);
    fake.push(stasis_start("c1"));
    let mut call = client.call().await;
    assert_eq!(call.channel_id, "c1");
    assert!(matches!(&call.first, Event::StasisStart { args, .. } if args == &["callback", "o1"]));
    fake.push(event(
        "ChannelDtmfReceived",
        json!({"digit": "5", "duration_ms": 100, "channel": channel("c1", "Up")}),
    ));
    match next_event(&mut call).await {
        Some(Event::ChannelDtmfReceived { digit, .. }) => assert_eq!(digit.expose(), Some('5')),
        other => panic!("{other:?}"),
    }

    fake.drop_socket();
    assert!(matches!(client.notice().await, Notice::Disconnected { .. }));
    let (entity, restarted, channels) = client.connected().await;
    assert_eq!(entity, "52:54:00:00:00:01");
    assert!(!restarted, "same entity id: not a restart");
    assert_eq!(channels, ["c1"]);

    // The call's queue survived the outage.
    fake.push(playback("PlaybackFinished", "c1:1", "channel:c1", "done"));
    assert!(matches!(
        next_event(&mut call).await,
        Some(Event::PlaybackFinished { .. })
    ));

    // Each session: upgrade with the Basic header and no credentials in the
    // URL, then /asterisk/info, then /channels.
    let calls = fake.calls();
    let upgrades: Vec<_> = calls.iter().filter(|c| c.path == "/ari/events").collect();
    assert_eq!(upgrades.len(), 2);
    for u in &upgrades {
        assert_eq!(u.param("app"), Some("voicepay-test"));
        assert_eq!(u.param("subscribeAll"), Some("false"));
        assert_eq!(u.param("api_key"), None);
        assert!(u.authorization.as_deref().unwrap().starts_with("Basic "));
    }
    let rest: Vec<_> = fake
        .rest_calls()
        .iter()
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    assert_eq!(
        rest,
        [
            "GET /ari/asterisk/info",
            "GET /ari/channels",
            "GET /ari/asterisk/info",
            "GET /ari/channels"
        ]
    );
}

#[tokio::test]
async fn asterisk_restart_is_reported_and_old_calls_end() {
    let fake = FakeAri::start().await;
    let mut client = Client::start(&fake.settings(), fast_options());
    client.connected().await;
    fake.set_channels(vec![channel("c1", "Up")]);
    fake.push(stasis_start("c1"));
    let mut call = client.call().await;

    fake.set_entity_id("52:54:00:00:00:02");
    fake.drop_socket();
    assert!(matches!(client.notice().await, Notice::Disconnected { .. }));
    let (entity, restarted, _) = client.connected().await;
    assert_eq!(entity, "52:54:00:00:00:02");
    assert!(restarted);
    // Even though /channels still lists c1, a restart means it is gone.
    assert!(next_event(&mut call).await.is_none(), "queue closed");

    // The same Asterisk started again: same entity id (it comes from the
    // MAC address), new start time. Also a restart.
    fake.push(stasis_start("c3"));
    let mut call3 = client.call().await;
    fake.set_startup_time("2025-01-01T11:00:00.000+0800");
    fake.drop_socket();
    assert!(matches!(client.notice().await, Notice::Disconnected { .. }));
    let (entity, restarted, _) = client.connected().await;
    assert_eq!(entity, "52:54:00:00:00:02");
    assert!(restarted, "a new start time is a restart");
    assert!(next_event(&mut call3).await.is_none(), "queue closed");

    // A channel missing from /channels after a plain reconnect ends too.
    fake.push(stasis_start("c2"));
    let mut call2 = client.call().await;
    fake.set_channels(vec![]);
    fake.drop_socket();
    assert!(matches!(client.notice().await, Notice::Disconnected { .. }));
    assert!(!client.connected().await.1);
    assert!(next_event(&mut call2).await.is_none());
}

#[tokio::test]
async fn unknown_events_and_values_do_not_break_the_stream() {
    let fake = FakeAri::start().await;
    let mut client = Client::start(&fake.settings(), fast_options());
    client.connected().await;
    fake.push(stasis_start("c1"));
    let mut call = client.call().await;

    fake.push(event(
        "ChannelTeleported",
        json!({"channel": channel("c1", "Up")}),
    ));
    fake.push_raw("this is not json");
    fake.push_raw(r#"{"no":"type"}"#);
    // A known type with a wrong field type is skipped, not fatal.
    fake.push(event(
        "ChannelDtmfReceived",
        json!({"digit": 5, "duration_ms": 1, "channel": channel("c1", "Up")}),
    ));
    fake.push(event(
        "ChannelStateChange",
        json!({"channel": channel("c1", "Pre-ring")}),
    ));
    fake.push(event(
        "ChannelStateChange",
        json!({"channel": channel("c1", "Hyperspace")}),
    ));
    fake.push(playback(
        "PlaybackContinuing",
        "c1:1",
        "channel:c1",
        "paused",
    ));
    // Routed by the playback id when the target is not a channel.
    fake.push(playback("PlaybackFinished", "c1:2", "bridge:b1", "rewound"));
    fake.push(event("StasisEnd", json!({"channel": channel("c1", "Up")})));

    let mut got = Vec::new();
    while let Some(ev) = next_event(&mut call).await {
        got.push(ev);
    }
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(
        matches!(&got[0], Event::ChannelStateChange { channel } if channel.state == ChannelState::PreRing)
    );
    assert!(
        matches!(&got[1], Event::ChannelStateChange { channel } if channel.state == ChannelState::Other("Hyperspace".into()))
    );
    assert!(
        matches!(&got[2], Event::PlaybackContinuing { playback } if playback.state == PlaybackState::Paused)
    );
    assert!(
        matches!(&got[3], Event::PlaybackFinished { playback } if playback.state == PlaybackState::Other("rewound".into()))
    );
    assert!(matches!(&got[4], Event::StasisEnd { .. }));

    // A late event for the ended call is unrouted, and the socket is intact.
    fake.push(event(
        "ChannelDestroyed",
        json!({"cause": 16, "cause_txt": "Normal Clearing", "channel": channel("c1", "Up")}),
    ));
    assert!(matches!(
        client.notice().await,
        Notice::Unrouted(Event::ChannelDestroyed { .. })
    ));
    assert_eq!(fake.connections(), 1);
}

#[tokio::test]
async fn not_found_after_hangup_counts_as_done() {
    let fake = FakeAri::start().await;
    let mut client = Client::start(&fake.settings(), fast_options());
    client.connected().await;
    let rest = client.ari.rest.clone();
    fake.gone("c1");

    rest.stop_playback("c1:3").await.unwrap();
    rest.hangup("c1", HangupReason::Normal).await.unwrap();
    assert!(matches!(rest.answer("c1").await, Err(AriError::NotFound)));
    let media = ["sound:vp-welcome".to_string()];
    assert!(matches!(
        rest.play("c1", "c1:4", &media, None).await,
        Err(AriError::NotFound)
    ));

    let calls = fake.rest_calls();
    let tail: Vec<_> = calls[calls.len() - 4..]
        .iter()
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    assert_eq!(
        tail,
        [
            "DELETE /ari/playbacks/c1:3",
            "DELETE /ari/channels/c1",
            "POST /ari/channels/c1/answer",
            "POST /ari/channels/c1/play/c1:4"
        ]
    );
    assert_eq!(calls[calls.len() - 3].param("reason"), Some("normal"));
}

#[tokio::test]
async fn rest_calls_reuse_a_keep_alive_connection() {
    let fake = FakeAri::start().await;
    let mut client = Client::start(&fake.settings(), fast_options());
    client.connected().await;
    let rest = client.ari.rest.clone();
    let before = fake.tcp_connections();
    for n in 0..20 {
        let id = format!("c1:{n}");
        rest.play("c1", &id, &["sound:voicepay/welcome".into()], None)
            .await
            .unwrap();
        rest.stop_playback(&id).await.unwrap();
    }
    // Asterisk counts every HTTP session against http.conf's sessionlimit.
    assert_eq!(
        fake.tcp_connections() - before,
        0,
        "40 requests in a row reuse the pooled connection of the snapshot"
    );
}

fn bounded_options(max_in_flight: usize) -> AriOptions {
    AriOptions {
        rest: voicepay::ari::RestOptions {
            max_in_flight,
            ..Default::default()
        },
        ..fast_options()
    }
}

#[tokio::test]
async fn a_burst_of_commands_holds_few_connections() {
    let fake = FakeAri::start().await;
    let mut client = Client::start(&fake.settings(), bounded_options(4));
    client.connected().await;
    let rest = client.ari.rest.clone();
    let plays = (0..100).map(|n| {
        let rest = rest.clone();
        async move {
            let id = format!("c{n}:1");
            rest.play(
                &format!("c{n}"),
                &id,
                &["sound:voicepay/welcome".into()],
                None,
            )
            .await
        }
    });
    for r in futures_util::future::join_all(plays).await {
        r.unwrap();
    }
    // Asterisk refuses sessions past http.conf's sessionlimit: 100 calls
    // acting at once must not mean 100 connections.
    let opened = fake.tcp_connections();
    assert!(
        opened <= 20,
        "{opened} connections for 4 requests in flight"
    );
}

#[tokio::test]
async fn requests_in_flight_stay_within_the_bound() {
    let fake = FakeAri::start().await;
    let mut client = Client::start(&fake.settings(), bounded_options(4));
    client.connected().await;
    let rest = client.ari.rest.clone();
    // Every answer waits until the test releases them: requests pile up.
    let held = fake.hold("/ari/channels/c1/play/c1:1");
    let plays: Vec<_> = (0..50)
        .map(|_| {
            let rest = rest.clone();
            tokio::spawn(async move {
                rest.play("c1", "c1:1", &["sound:voicepay/welcome".into()], None)
                    .await
            })
        })
        .collect();
    let played = |c: &voicepay_testkit::fake_ari::Recorded| c.path.ends_with("/play/c1:1");
    wait_for(Duration::from_secs(15), async || {
        let n = fake.rest_calls().iter().filter(|c| played(c)).count();
        if n >= 4 {
            Ok(())
        } else {
            Err(format!("{n} plays arrived"))
        }
    })
    .await;
    held.answer(201);
    for p in plays {
        p.await.unwrap().unwrap();
    }
    assert_eq!(fake.rest_calls().iter().filter(|c| played(c)).count(), 50);
    assert_eq!(
        fake.max_outstanding(),
        4,
        "at most max_in_flight requests wait for Asterisk at once"
    );
}

/// Settings of `fake` with REST over the events socket, whatever
/// `VOICEPAY_TEST_REST_TRANSPORT` says.
fn over_websocket(fake: &FakeAri) -> AriSettings {
    AriSettings {
        rest_transport: voicepay::config::RestTransport::Websocket,
        ..fake.settings()
    }
}

#[tokio::test]
async fn websocket_transport_sends_every_request_on_the_events_socket() {
    let fake = FakeAri::start().await;
    fake.set_channels(vec![channel("c0", "Up")]);
    let mut client = Client::start(&over_websocket(&fake), fast_options());
    let (_, _, channels) = client.connected().await;
    assert_eq!(channels, ["c0"], "the snapshot came over the socket");
    let rest = client.ari.rest.clone();
    rest.answer("c1").await.unwrap();
    rest.play("c1", "c1:1", &["sound:voicepay/welcome".into()], None)
        .await
        .unwrap();
    fake.gone("c2");
    assert!(matches!(rest.answer("c2").await, Err(AriError::NotFound)));
    assert!(matches!(
        rest.hangup("c2", HangupReason::Normal).await,
        Ok(())
    ));
    let calls = fake.rest_calls();
    let seen: Vec<_> = calls
        .iter()
        .map(|c| format!("{} {} ws={}", c.method, c.path, c.websocket))
        .collect();
    assert_eq!(
        seen,
        [
            "GET /ari/asterisk/info ws=true",
            "GET /ari/channels ws=true",
            "POST /ari/channels/c1/answer ws=true",
            "POST /ari/channels/c1/play/c1:1 ws=true",
            "POST /ari/channels/c2/answer ws=true",
            "DELETE /ari/channels/c2 ws=true",
        ]
    );
    assert_eq!(calls[3].param("media"), Some("sound:voicepay/welcome"));
    // Only the socket: no HTTP session besides it counts against
    // http.conf's sessionlimit.
    assert_eq!(fake.tcp_connections(), 1);
}

#[tokio::test]
async fn websocket_transport_fails_waiting_requests_when_the_socket_drops() {
    let fake = FakeAri::start().await;
    let mut client = Client::start(&over_websocket(&fake), fast_options());
    client.connected().await;
    let rest = client.ari.rest.clone();
    let _held = fake.hold("/ari/channels/c1/answer");
    let waiting = tokio::spawn({
        let rest = rest.clone();
        async move { rest.answer("c1").await }
    });
    request(&fake, |r| r.path == "/ari/channels/c1/answer").await;
    fake.drop_socket();
    let err = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("the waiting request fails with the socket, not after its timeout")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, AriError::Transport(m) if m.contains("events WebSocket closed before Asterisk answered")),
        "{err}"
    );
    assert!(matches!(client.notice().await, Notice::Disconnected { .. }));
    // The reconnect works as with HTTP, and requests flow again.
    client.connected().await;
    rest.answer("c3").await.unwrap();
    assert_eq!(fake.connections(), 2);
}

#[tokio::test]
async fn rest_calls_have_the_documented_shape() {
    let fake = FakeAri::start().await;
    let mut client = Client::start(&fake.settings(), fast_options());
    client.connected().await;
    let rest = client.ari.rest.clone();

    let info = rest.asterisk_info().await.unwrap();
    assert_eq!(
        (info.entity_id.as_str(), info.version.as_str()),
        ("52:54:00:00:00:01", "22.0.0")
    );
    let ch = rest
        .originate(&Originate {
            endpoint: "PJSIP/13700000001@trunk".into(),
            app: "voicepay-test".into(),
            app_args: vec!["callback".into(), "o1".into()],
            caller_id: Some("95500".into()),
            timeout_secs: 40,
            channel_id: "vp-o1-1".into(),
            variables: BTreeMap::from([("VOICEPAY_ORDER".to_string(), "o1".to_string())]),
        })
        .await
        .unwrap();
    assert_eq!(ch.id, "vp-o1-1");
    let media = vec!["sound:vp-amount".to_string(), "number:1234".to_string()];
    rest.play("vp-o1-1", "vp-o1-1:1", &media, Some("en"))
        .await
        .unwrap();
    rest.continue_in_dialplan("vp-o1-1", "merchant-return", "s", 1)
        .await
        .unwrap();
    rest.set_variable("vp-o1-1", "VOICEPAY_RESULT", "approved")
        .await
        .unwrap();
    rest.set_global("VOICEPAY_OPEN", "1").await.unwrap();

    let calls = fake.rest_calls();
    let find = |method: &str, path: &str| {
        calls
            .iter()
            .find(|c| c.method == method && c.path == path)
            .unwrap_or_else(|| panic!("no {method} {path} in {calls:#?}"))
            .clone()
    };
    let o = find("POST", "/ari/channels/vp-o1-1");
    assert_eq!(o.param("endpoint"), Some("PJSIP/13700000001@trunk"));
    assert_eq!(o.param("app"), Some("voicepay-test"));
    assert_eq!(o.param("appArgs"), Some("callback,o1"));
    assert_eq!(o.param("callerId"), Some("95500"));
    assert_eq!(o.param("timeout"), Some("40"));
    let body: serde_json::Value = serde_json::from_str(&o.body).unwrap();
    assert_eq!(body, json!({"variables": {"VOICEPAY_ORDER": "o1"}}));
    let p = find("POST", "/ari/channels/vp-o1-1/play/vp-o1-1:1");
    // One parameter: Asterisk keeps only the last of repeated ones.
    assert_eq!(p.params("media"), ["sound:vp-amount,number:1234"]);
    assert_eq!(p.param("lang"), Some("en"));
    let c = find("POST", "/ari/channels/vp-o1-1/continue");
    assert_eq!(
        (
            c.param("context"),
            c.param("extension"),
            c.param("priority")
        ),
        (Some("merchant-return"), Some("s"), Some("1"))
    );
    let v = find("POST", "/ari/channels/vp-o1-1/variable");
    assert_eq!(
        (v.param("variable"), v.param("value")),
        (Some("VOICEPAY_RESULT"), Some("approved"))
    );
    let g = find("POST", "/ari/asterisk/variable");
    assert_eq!(
        (g.param("variable"), g.param("value")),
        (Some("VOICEPAY_OPEN"), Some("1"))
    );
    assert!(calls.iter().all(|c| c.authorization.is_some()));
}

#[tokio::test]
async fn hundred_concurrent_calls_each_get_exactly_their_events_in_order() {
    const CALLS: usize = 100;
    const ROUNDS: u64 = 10;
    let fake = FakeAri::start().await;
    let mut client = Client::start(&fake.settings(), fast_options());
    client.connected().await;

    // The supervisor: one task per call, collecting its playback ids.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut notices = std::mem::replace(&mut client.ari.notices, mpsc::unbounded_channel().1);
    // It keeps reading notices: dropping them would stop the client.
    let supervisor = tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            let Notice::Call(mut call) = notice else {
                panic!("unexpected {notice:?}")
            };
            let done = done_tx.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let slow = call.channel_id.ends_with('7');
                while let Some(ev) = call.events.recv().await {
                    if slow {
                        // A slow call is the point: the others must not wait for it.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    assert_eq!(ev.channel_id(), Some(call.channel_id.as_str()));
                    if let Event::PlaybackStarted { playback } = ev {
                        seen.push(playback.id);
                    }
                }
                done.send((call.channel_id, seen)).unwrap();
            });
        }
    });

    let ids: Vec<String> = (0..CALLS).map(|i| format!("call-{i}")).collect();
    for id in &ids {
        fake.push(stasis_start(id));
    }
    let mut order = ids.clone();
    for n in 1..=ROUNDS {
        order.shuffle(&mut rand::thread_rng());
        for id in &order {
            let target = format!("channel:{id}");
            fake.push(playback(
                "PlaybackStarted",
                &format!("{id}:{n}"),
                &target,
                "playing",
            ));
        }
    }
    for id in &ids {
        fake.push(event("StasisEnd", json!({"channel": channel(id, "Up")})));
    }

    let mut results = BTreeMap::new();
    while results.len() < CALLS {
        let (id, seen) = tokio::time::timeout(WAIT, done_rx.recv())
            .await
            .expect("every call ends")
            .unwrap();
        results.insert(id, seen);
    }
    for id in &ids {
        let want: Vec<String> = (1..=ROUNDS).map(|n| format!("{id}:{n}")).collect();
        assert_eq!(results[id], want, "{id}");
    }
    assert!(!supervisor.is_finished(), "the supervisor saw only calls");
    supervisor.abort();
}

#[tokio::test]
async fn wrong_credentials_fail_clearly_and_back_off() {
    let fake = FakeAri::start().await;
    let mut settings = fake.settings();
    settings.password = "wrong".into();
    let mut client = Client::start(&settings, fast_options());

    let mut delays = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(n) = tokio::time::timeout_at(deadline, client.ari.notices.recv()).await {
        match n {
            Some(Notice::ConnectFailed {
                error: AriError::Unauthorized,
                retry_in,
            }) => delays.push(retry_in),
            other => panic!("expected Unauthorized failures, got {other:?}"),
        }
    }
    let attempts = fake.ws_attempts();
    // 50 ms doubling to 400 ms with jitter in [d/2, d]: at most ~10 tries in
    // 1.5 s; a tight loop would make hundreds.
    assert!((3..=10).contains(&attempts), "{attempts} attempts");
    assert!(delays[0] <= Duration::from_millis(50));
    assert!(
        delays.last().unwrap() >= &Duration::from_millis(200),
        "{delays:?}"
    );
    assert!(
        fake.rest_calls().is_empty(),
        "no REST before the socket is up"
    );
    assert_eq!(
        AriError::Unauthorized.to_string(),
        "ARI refused the credentials (401): check ari.username and ari.password against ari.conf"
    );
}

#[tokio::test]
async fn a_socket_that_stops_answering_pings_is_dropped() {
    let fake = FakeAri::start().await;
    let mut options = fast_options();
    options.connection.ping_interval = Duration::from_millis(200);
    let mut client = Client::start(&fake.settings(), options);
    client.connected().await;
    fake.freeze_socket();
    match client.notice().await {
        Notice::Disconnected { reason } => assert!(reason.contains("pong"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(!client.connected().await.1);
    assert_eq!(fake.connections(), 2);
}

#[tokio::test]
async fn shutdown_closes_the_socket_and_every_call_queue() {
    let fake = FakeAri::start().await;
    let mut client = Client::start(&fake.settings(), fast_options());
    client.connected().await;
    fake.push(stasis_start("c1"));
    let mut call = client.call().await;
    client.shutdown.cancel();
    tokio::time::timeout(WAIT, &mut client.ari.task)
        .await
        .expect("connection task ends")
        .unwrap();
    assert!(next_event(&mut call).await.is_none());
}

#[tokio::test]
async fn an_unanswered_originate_is_a_call_from_dial_to_destroyed() {
    let fake = FakeAri::start().await;
    let mut client = Client::start(&fake.settings(), fast_options());
    client.connected().await;
    // No StasisStart ever comes for a call nobody answers.
    fake.push(event(
        "Dial",
        json!({"dialstatus": "", "peer": channel("vp-o2-1", "Down")}),
    ));
    fake.push(event(
        "ChannelStateChange",
        json!({"channel": channel("vp-o2-1", "Ringing")}),
    ));
    fake.push(event(
        "Dial",
        json!({"dialstatus": "NOANSWER", "peer": channel("vp-o2-1", "Ringing")}),
    ));
    fake.push(event(
        "ChannelDestroyed",
        json!({"cause": 19, "cause_txt": "No user responding",
               "channel": channel("vp-o2-1", "Ringing")}),
    ));
    let mut call = client.call().await;
    assert_eq!(call.channel_id, "vp-o2-1");
    assert!(matches!(&call.first, Event::Dial { dialstatus, .. } if dialstatus.is_empty()));
    assert!(matches!(
        next_event(&mut call).await,
        Some(Event::ChannelStateChange { .. })
    ));
    assert!(
        matches!(next_event(&mut call).await, Some(Event::Dial { dialstatus, .. }) if dialstatus == "NOANSWER")
    );
    assert!(matches!(
        next_event(&mut call).await,
        Some(Event::ChannelDestroyed { cause: 19, .. })
    ));
    assert!(next_event(&mut call).await.is_none());
}

#[tokio::test]
async fn dropping_the_notices_stops_the_client() {
    let fake = FakeAri::start().await;
    let mut client = Client::start(&fake.settings(), fast_options());
    client.connected().await;
    drop(std::mem::replace(
        &mut client.ari.notices,
        mpsc::unbounded_channel().1,
    ));
    tokio::time::timeout(WAIT, &mut client.ari.task)
        .await
        .expect("connection task ends without a reader")
        .unwrap();
}

/// `GET /playbacks/{id}` (issue #12, fault 7): a playback exists while it
/// plays; once done (or never started) Asterisk answers 404, which is "no
/// such playback", not an error. Each reconnection moves the epoch on, and
/// `events_reconnected` resolves with the new one.
#[tokio::test]
async fn playbacks_are_asked_for_and_reconnections_counted() {
    let fake = FakeAri::start().await;
    let mut client = Client::start(&fake.settings(), fast_options());
    client.connected().await;
    let rest = client.ari.rest.clone();
    let first = rest.events_epoch();
    assert!(first >= 1, "{first}");
    rest.play("c1", "c1:1", &["sound:voicepay/welcome".into()], None)
        .await
        .unwrap();
    assert!(rest.playback_exists("c1:1").await.unwrap());
    fake.playback_done("c1:1");
    assert!(!rest.playback_exists("c1:1").await.unwrap());
    assert!(!rest.playback_exists("c1:2").await.unwrap());
    let asked: Vec<String> = fake
        .rest_calls()
        .iter()
        .filter(|c| c.method == "GET" && c.path.starts_with("/ari/playbacks/"))
        .map(|c| c.path.replace("%3A", ":"))
        .collect();
    assert_eq!(
        asked,
        [
            "/ari/playbacks/c1:1",
            "/ari/playbacks/c1:1",
            "/ari/playbacks/c1:2"
        ]
    );

    fake.drop_socket();
    assert!(matches!(client.notice().await, Notice::Disconnected { .. }));
    client.connected().await;
    let next = tokio::time::timeout(Duration::from_secs(10), rest.events_reconnected(first))
        .await
        .expect("the reconnection is seen");
    assert_eq!(next, first + 1);
    assert_eq!(rest.events_epoch(), next);
}
