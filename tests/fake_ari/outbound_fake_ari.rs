//! `ari.websocket = "outbound"`: the fake plays Asterisk 22.5+ connecting
//! *to* the ARI client (websocket_client.conf + ari.conf
//! `type = outbound_websocket`), with the same events, the same commands
//! (over HTTP, or over the socket with
//! `VOICEPAY_TEST_REST_TRANSPORT=websocket`), reconnects after a drop, and
//! a wrong credential refused.

use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use voicepay::ari::{AriClient, AriCommands, AriError, AriOptions, Call, Event, Notice};
use voicepay::config::{AriSettings, RestTransport, WebsocketMode};
use voicepay_testkit::fake_ari::{
    channel, event, request, test_transport, FakeAri, PASSWORD, USER,
};

const WAIT: Duration = Duration::from_secs(3);

fn outbound(fake: &FakeAri) -> AriSettings {
    AriSettings {
        websocket: WebsocketMode::Outbound,
        listen: "127.0.0.1:0".into(),
        ..fake.settings()
    }
}

struct Client {
    ari: AriClient,
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Client {
    fn start(settings: &AriSettings) -> Client {
        let shutdown = CancellationToken::new();
        let ari = AriClient::start_with(settings, AriOptions::default(), shutdown.clone()).unwrap();
        let addr = ari.listen_addr.expect("outbound mode binds ari.listen");
        Client {
            ari,
            addr,
            shutdown,
        }
    }

    async fn notice(&mut self) -> Notice {
        tokio::time::timeout(WAIT, self.ari.notices.recv())
            .await
            .expect("no notice in time")
            .expect("notices closed")
    }

    /// The next notice must be `Connected`; its channel ids.
    async fn connected(&mut self) -> Vec<String> {
        match self.notice().await {
            Notice::Connected { channels, .. } => channels.into_iter().map(|c| c.id).collect(),
            other => panic!("expected Connected, got {other:?}"),
        }
    }
}

async fn next_event(call: &mut Call) -> Option<Event> {
    tokio::time::timeout(WAIT, call.events.recv())
        .await
        .expect("no event for the call in time")
}

#[tokio::test]
async fn asterisk_connecting_out_drives_calls_and_its_reconnect_resumes_dispatch() {
    let fake = FakeAri::start().await;
    let mut client = Client::start(&outbound(&fake));
    fake.dial(client.addr, USER, PASSWORD).await.unwrap();
    assert!(client.connected().await.is_empty());

    // An event Asterisk 22.5 sends on every (re)connection, unmodelled.
    fake.push(event(
        "ApplicationRegistered",
        json!({"application": "voicepay-test"}),
    ));
    fake.set_channels(vec![channel("c1", "Up")]);
    fake.push(event(
        "StasisStart",
        json!({"args": ["inbound"], "channel": channel("c1", "Up")}),
    ));
    let mut call = match client.notice().await {
        Notice::Call(call) => call,
        other => panic!("expected a call, got {other:?}"),
    };
    assert_eq!(call.channel_id, "c1");

    // Commands reach "Asterisk" (HTTP, or the socket Asterisk opened).
    client.ari.rest.answer("c1").await.unwrap();
    let answered = request(&fake, |r| {
        r.method == "POST" && r.path == "/ari/channels/c1/answer"
    })
    .await;
    assert_eq!(
        answered.websocket,
        test_transport() == RestTransport::Websocket
    );

    // The socket drops; Asterisk reconnects (reconnect_interval) and the
    // same call keeps getting its events.
    fake.drop_socket();
    assert!(matches!(client.notice().await, Notice::Disconnected { .. }));
    fake.dial(client.addr, USER, PASSWORD).await.unwrap();
    assert_eq!(client.connected().await, ["c1"]);
    fake.push(event(
        "ChannelDtmfReceived",
        json!({"digit": "7", "duration_ms": 100, "channel": channel("c1", "Up")}),
    ));
    match next_event(&mut call).await {
        Some(Event::ChannelDtmfReceived { digit, .. }) => assert_eq!(digit.expose(), Some('7')),
        other => panic!("{other:?}"),
    }

    // The client never dialled Asterisk's /ari/events itself; each session
    // took the snapshot.
    let calls = fake.calls();
    assert!(calls.iter().all(|c| c.path != "/ari/events"), "{calls:?}");
    let info = calls
        .iter()
        .filter(|c| c.path == "/ari/asterisk/info")
        .count();
    assert_eq!(info, 2);
}

#[tokio::test]
async fn a_wrong_credential_is_refused_and_gets_no_session() {
    let fake = FakeAri::start().await;
    let mut client = Client::start(&outbound(&fake));

    for (user, password) in [(USER, "s3cre"), ("other", PASSWORD), (USER, "")] {
        assert_eq!(fake.dial(client.addr, user, password).await, Err(401));
        match client.notice().await {
            Notice::ConnectFailed {
                error: AriError::Unauthorized,
                retry_in,
            } => assert_eq!(retry_in, Duration::ZERO, "Asterisk paces reconnects"),
            other => panic!("expected Unauthorized, got {other:?}"),
        }
    }
    assert!(
        fake.rest_calls().is_empty(),
        "no snapshot, no command for a refused socket"
    );
    assert_eq!(fake.connections(), 0);

    // The right credential still gets in afterwards.
    fake.dial(client.addr, USER, PASSWORD).await.unwrap();
    assert!(client.connected().await.is_empty());
}

#[tokio::test]
async fn a_listen_address_in_use_fails_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake = FakeAri::start().await;
    let settings = AriSettings {
        listen: taken.local_addr().unwrap().to_string(),
        ..outbound(&fake)
    };
    let err = AriClient::start_with(&settings, AriOptions::default(), CancellationToken::new())
        .err()
        .expect("a taken port must fail at start");
    assert!(
        matches!(&err, AriError::Config(m) if m.contains("ari.listen")),
        "{err}"
    );
}
