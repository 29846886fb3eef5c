//! The link against an in-process host speaking the frames, on tokio's
//! paused clock: time moves only when every task waits, so "nothing arrived
//! while the link idled for 5 s" is deterministic and no test sleeps.
//!
//! The host's connections are in-memory pipes (`tokio::io::duplex`), not
//! TCP: with a paused clock, tokio jumps to the next timer whenever no task
//! is ready, even while a socket's bytes wait in the kernel for the IO
//! driver (tokio 1.54 `time::Driver::park_thread_timeout`), so a TCP
//! answer could lose a race against its own deadline. A pipe wakes its
//! reader directly. One test at the end runs over real TCP, on the real
//! clock, and the Python peer's tests (tests/api/iso8583_link.rs) do too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::DuplexStream;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::codec::Framed;

use super::actor::backoff;
use super::*;
use crate::bank::iso8583::{FrameCodec, Mti, NetworkCode, ResponseCode};
use crate::domain::Stan;

const TID: &str = "VP000001";
const ACQUIRER: &str = "00012345";
const TIMEOUT: Duration = Duration::from_secs(10);
const ECHO: Duration = Duration::from_secs(60);
/// The link's own STANs start here (the requests' are small numbers).
const OWN_STAN: u32 = 900_001;

type Wire = Framed<DuplexStream, FrameCodec>;

fn settings(address: String, max_in_flight: usize) -> LinkSettings {
    LinkSettings {
        address,
        terminal_id: TID.into(),
        acquirer_id: ACQUIRER.into(),
        response_timeout: TIMEOUT,
        echo_interval: ECHO,
        max_in_flight,
    }
}

/// The acquirer host's side: every connect the link makes hands the host
/// the other end of a fresh pipe.
struct Host {
    conns: tokio::sync::Mutex<mpsc::UnboundedReceiver<DuplexStream>>,
}

impl Host {
    async fn start(max_in_flight: usize) -> (Host, Link) {
        let (tx, rx) = mpsc::unbounded_channel();
        let connector: actor::Connector = Arc::new(move |_address| {
            let (ours, theirs) = tokio::io::duplex(1 << 16);
            let accepted = tx
                .send(theirs)
                .map_err(|_| std::io::ErrorKind::ConnectionRefused);
            Box::pin(async move {
                accepted?;
                Ok(Box::new(ours) as Box<dyn actor::Transport>)
            })
        });
        let link = Link::spawn_with(
            settings("host.test:8583".into(), max_in_flight),
            connector,
            Arc::new(CounterStans::new(OWN_STAN)),
        );
        let host = Host {
            conns: tokio::sync::Mutex::new(rx),
        };
        (host, link)
    }

    async fn accept(&self) -> Wire {
        let conn = self.conns.lock().await.recv().await.unwrap();
        Framed::new(conn, FrameCodec::default())
    }

    /// Accepts the next connection, checks its sign-on and answers `00`;
    /// returns the sign-on's STAN.
    async fn accept_signed_on(&self, link: &Link) -> (Wire, Stan) {
        let mut wire = self.accept().await;
        let sign_on = recv(&mut wire).await;
        assert_eq!(sign_on.network_code(), Some(NetworkCode::SignOn));
        answer(&mut wire, &sign_on, "00").await;
        signed_on(link).await;
        (wire, sign_on.stan().unwrap())
    }
}

/// The next message on the wire (panics at the end of the connection).
async fn recv(wire: &mut Wire) -> Message {
    wire.next()
        .await
        .expect("the link closed the connection")
        .unwrap()
        .unwrap()
}

/// Whether the connection stays silent (and open) while the link idles
/// for `d`.
async fn quiet(wire: &mut Wire, d: Duration) -> bool {
    timeout(d, wire.next()).await.is_err()
}

/// Whether the link closes the connection (reading past anything it sent).
async fn closed(wire: &mut Wire) -> Vec<Mti> {
    let mut seen = vec![];
    while let Some(frame) = wire.next().await {
        match frame {
            Ok(Ok(m)) => seen.push(m.mti()),
            _ => break,
        }
    }
    seen
}

fn reply(request: &Message, f39: &str) -> Message {
    let mut m = request.reply().unwrap();
    m.set_response_code(ResponseCode::parse(f39).unwrap())
        .unwrap();
    m
}

async fn answer(wire: &mut Wire, request: &Message, f39: &str) {
    wire.send(reply(request, f39)).await.unwrap();
}

/// A 0200 numbered `stan`, F4 = `stan` fen (so an answer shows whose it is).
fn request(stan: u32) -> Message {
    let mut m = Message::new(Mti::FINANCIAL_REQUEST);
    m.set_text(3, "000000").unwrap();
    m.set_text(4, &format!("{stan:012}")).unwrap();
    m.set_transmission_time(time::OffsetDateTime::now_utc())
        .unwrap();
    m.set_stan(Stan::new(stan).unwrap()).unwrap();
    m.set_terminal_id(TID).unwrap();
    m
}

fn exchange(link: &Link, stan: u32) -> JoinHandle<Result<Message, LinkError>> {
    let link = link.clone();
    tokio::spawn(async move { link.exchange(request(stan)).await })
}

async fn signed_on(link: &Link) {
    let mut status = link.inner.status.clone();
    status.wait_for(LinkStatus::is_signed_on).await.unwrap();
}

async fn connecting(link: &Link) -> LinkStatus {
    let mut status = link.inner.status.clone();
    let s = status
        .wait_for(|s| matches!(s, LinkStatus::Connecting { attempt, .. } if *attempt > 0))
        .await
        .unwrap();
    s.clone()
}

#[tokio::test(start_paused = true)]
async fn signs_on_first_and_a_request_waits_for_the_sign_on() {
    let (host, link) = Host::start(4).await;
    let pending = exchange(&link, 1);
    let mut wire = host.accept().await;
    let sign_on = recv(&mut wire).await;
    assert_eq!(sign_on.mti(), Mti::NETWORK_REQUEST);
    assert_eq!(sign_on.network_code(), Some(NetworkCode::SignOn));
    assert_eq!(sign_on.stan(), Stan::new(OWN_STAN).ok());
    assert_eq!(sign_on.terminal_id(), Some(TID));
    assert_eq!(sign_on.acquirer_id(), Some(ACQUIRER));
    assert_eq!(sign_on.transmission_time().map(str::len), Some(10));
    assert_eq!(
        link.status(),
        LinkStatus::Connecting {
            attempt: 0,
            last_error: None
        }
    );
    // The sign-on unanswered, the request stays off the wire.
    assert!(quiet(&mut wire, TIMEOUT / 2).await);
    answer(&mut wire, &sign_on, "00").await;
    let req = recv(&mut wire).await;
    assert_eq!(req.mti(), Mti::FINANCIAL_REQUEST);
    assert_eq!(req.stan(), Stan::new(1).ok());
    answer(&mut wire, &req, "00").await;
    let got = pending.await.unwrap().unwrap();
    assert_eq!(got.mti(), Mti::FINANCIAL_RESPONSE);
    assert_eq!(got.stan(), Stan::new(1).ok());
    assert!(link.status().is_signed_on(), "{:?}", link.status());
}

#[tokio::test(start_paused = true)]
async fn a_refused_sign_on_is_retried_and_nothing_is_sent_before_it_succeeds() {
    let (host, link) = Host::start(4).await;
    let pending = exchange(&link, 1);
    let mut wire = host.accept().await;
    let sign_on = recv(&mut wire).await;
    answer(&mut wire, &sign_on, "91").await;
    // The link hangs up without sending the request…
    assert_eq!(closed(&mut wire).await, vec![]);
    let LinkStatus::Connecting {
        attempt,
        last_error,
    } = connecting(&link).await
    else {
        unreachable!()
    };
    assert_eq!(attempt, 1);
    assert_eq!(last_error.as_deref(), Some("sign-on refused: F39 91"));
    // …and signs on again, with a new STAN, after its back-off.
    let mut wire = host.accept().await;
    let again = recv(&mut wire).await;
    assert_eq!(again.network_code(), Some(NetworkCode::SignOn));
    assert_eq!(again.stan(), Stan::new(OWN_STAN + 1).ok());
    answer(&mut wire, &again, "00").await;
    let req = recv(&mut wire).await;
    assert_eq!(req.stan(), Stan::new(1).ok());
    answer(&mut wire, &req, "00").await;
    assert!(pending.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_request_is_not_sent_when_no_sign_on_succeeds_in_time() {
    let (host, link) = Host::start(4).await;
    let pending = exchange(&link, 1);
    let mut wire = host.accept().await;
    let sign_on = recv(&mut wire).await;
    assert_eq!(sign_on.network_code(), Some(NetworkCode::SignOn));
    // Never answered: the exchange gives up unsent, the link hangs up.
    assert_eq!(
        pending.await.unwrap().unwrap_err(),
        LinkError::NotSent("the link is not signed on")
    );
    assert_eq!(closed(&mut wire).await, vec![]);
    let LinkStatus::Connecting { last_error, .. } = connecting(&link).await else {
        unreachable!()
    };
    assert_eq!(
        last_error.as_deref(),
        Some("sign-on not answered within the response timeout")
    );
    // The abandoned request is not sent on the next connection either.
    let (mut wire, _) = host.accept_signed_on(&link).await;
    let probe = exchange(&link, 2);
    let next = recv(&mut wire).await;
    assert_eq!(next.stan(), Stan::new(2).ok());
    answer(&mut wire, &next, "00").await;
    assert!(probe.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_request_queued_as_the_connection_drops_is_never_sent_once_given_up() {
    let (host, link) = Host::start(4).await;
    let (wire, _) = host.accept_signed_on(&link).await;
    // Queued while the link still counts as signed on, then the connection
    // goes before the link writes it.
    let pending = exchange(&link, 2);
    drop(wire);
    let mut wire = host.accept().await;
    let sign_on = recv(&mut wire).await;
    assert_eq!(
        pending.await.unwrap().unwrap_err(),
        LinkError::NotSent("the link is not signed on")
    );
    answer(&mut wire, &sign_on, "00").await;
    signed_on(&link).await;
    let probe = exchange(&link, 3);
    let next = recv(&mut wire).await;
    assert_eq!(
        next.stan(),
        Stan::new(3).ok(),
        "the given-up request was sent"
    );
    answer(&mut wire, &next, "00").await;
    assert!(probe.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn echoes_when_idle_and_reconnects_when_the_echo_goes_unanswered() {
    let (host, link) = Host::start(4).await;
    let (mut wire, _) = host.accept_signed_on(&link).await;
    // Traffic half-way through the interval puts the echo off: nothing for
    // a whole interval after it, then the echo.
    tokio::time::sleep(ECHO / 2).await;
    let pending = exchange(&link, 1);
    let req = recv(&mut wire).await;
    answer(&mut wire, &req, "00").await;
    pending.await.unwrap().unwrap();
    assert!(quiet(&mut wire, ECHO - Duration::from_secs(1)).await);
    let echo = recv(&mut wire).await;
    assert_eq!(echo.mti(), Mti::NETWORK_REQUEST);
    assert_eq!(echo.network_code(), Some(NetworkCode::Echo));
    assert_eq!(echo.stan(), Stan::new(OWN_STAN + 1).ok());
    assert_eq!(echo.terminal_id(), Some(TID));
    assert_eq!(echo.acquirer_id(), Some(ACQUIRER));
    answer(&mut wire, &echo, "00").await;
    assert!(quiet(&mut wire, ECHO - Duration::from_secs(1)).await);
    let second = recv(&mut wire).await;
    assert_eq!(second.network_code(), Some(NetworkCode::Echo));
    assert!(link.status().is_signed_on());
    // Unanswered: the connection is dead to the link.
    assert_eq!(closed(&mut wire).await, vec![]);
    let LinkStatus::Connecting { last_error, .. } = connecting(&link).await else {
        unreachable!()
    };
    assert_eq!(
        last_error.as_deref(),
        Some("echo test not answered within the response timeout")
    );
    host.accept_signed_on(&link).await;
}

#[tokio::test(start_paused = true)]
async fn answers_out_of_order_reach_their_own_requests() {
    let (host, link) = Host::start(4).await;
    let (mut wire, _) = host.accept_signed_on(&link).await;
    let pending: Vec<_> = (1..=3).map(|n| exchange(&link, n)).collect();
    let mut requests = vec![];
    for _ in 0..3 {
        requests.push(recv(&mut wire).await);
    }
    requests.reverse();
    for req in &requests {
        answer(&mut wire, req, "00").await;
    }
    for (n, p) in (1..=3u64).zip(pending) {
        let got = p.await.unwrap().unwrap();
        assert_eq!(got.stan(), Stan::new(n as u32).ok());
        assert_eq!(got.amount_fen(), Some(n));
    }
}

#[tokio::test(start_paused = true)]
async fn an_answer_nobody_waits_for_is_logged_masked_and_dropped() {
    let log = capture();
    let (host, link) = Host::start(4).await;
    let (mut wire, _) = host.accept_signed_on(&link).await;
    let first = exchange(&link, 1);
    let req = recv(&mut wire).await;
    answer(&mut wire, &req, "00").await;
    assert_eq!(first.await.unwrap().unwrap().stan(), Stan::new(1).ok());
    // The same answer again, and one for a request never sent, with a PAN.
    answer(&mut wire, &req, "00").await;
    let mut unsolicited = reply(&request(77), "05");
    unsolicited.set_text(2, "6222000000000017").unwrap();
    wire.send(unsolicited).await.unwrap();
    let second = exchange(&link, 2);
    let req = recv(&mut wire).await;
    answer(&mut wire, &req, "51").await;
    let got = second.await.unwrap().unwrap();
    assert_eq!(got.stan(), Stan::new(2).ok());
    assert_eq!(got.response_code(), ResponseCode::parse("51"));
    let text = log.text();
    let dropped: Vec<_> = text
        .lines()
        .filter(|l| l.contains("message dropped (nobody waits for it)"))
        .collect();
    assert_eq!(dropped.len(), 2, "{text}");
    assert!(dropped[0].contains("stan=\"000001\"") && dropped[0].contains("f39=\"00\""));
    assert!(dropped[1].contains("stan=\"000077\"") && dropped[1].contains("f39=\"05\""));
    assert!(dropped[1].contains("622200******0017"), "{text}");
    assert!(!text.contains("6222000000000017"), "{text}");
    assert!(link.status().is_signed_on());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_connection_drops_the_exchanges_in_flight_then_signs_on_again() {
    let (host, link) = Host::start(4).await;
    let (mut wire, first_stan) = host.accept_signed_on(&link).await;
    let pending: Vec<_> = (1..=2).map(|n| exchange(&link, n)).collect();
    recv(&mut wire).await;
    recv(&mut wire).await;
    drop(wire);
    for p in pending {
        assert_eq!(p.await.unwrap().unwrap_err(), LinkError::Dropped);
    }
    let LinkStatus::Connecting { last_error, .. } = connecting(&link).await else {
        unreachable!()
    };
    assert_eq!(
        last_error.as_deref(),
        Some("the host closed the connection")
    );
    let (mut wire, stan) = host.accept_signed_on(&link).await;
    assert_ne!(stan, first_stan);
    let again = exchange(&link, 3);
    let req = recv(&mut wire).await;
    answer(&mut wire, &req, "00").await;
    assert_eq!(again.await.unwrap().unwrap().stan(), Stan::new(3).ok());
}

#[tokio::test(start_paused = true)]
async fn max_in_flight_bounds_the_requests_awaiting_answers() {
    let (host, link) = Host::start(2).await;
    let (mut wire, _) = host.accept_signed_on(&link).await;
    let pending: Vec<_> = (1..=3).map(|n| exchange(&link, n)).collect();
    let a = recv(&mut wire).await;
    let b = recv(&mut wire).await;
    // Two await their answers: the third waits for a slot.
    assert!(quiet(&mut wire, TIMEOUT / 2).await);
    answer(&mut wire, &a, "00").await;
    let c = recv(&mut wire).await;
    answer(&mut wire, &b, "00").await;
    answer(&mut wire, &c, "00").await;
    let mut stans = vec![a.stan(), b.stan(), c.stan()];
    stans.sort();
    assert_eq!(
        stans,
        (1..=3).map(|n| Stan::new(n).ok()).collect::<Vec<_>>()
    );
    for p in pending {
        p.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_request_times_out_and_its_late_answer_is_dropped() {
    let (host, link) = Host::start(4).await;
    let (mut wire, _) = host.accept_signed_on(&link).await;
    let pending = exchange(&link, 1);
    let req = recv(&mut wire).await;
    assert_eq!(pending.await.unwrap().unwrap_err(), LinkError::Timeout);
    answer(&mut wire, &req, "00").await;
    // Same connection, still working.
    let next = exchange(&link, 2);
    let req = recv(&mut wire).await;
    assert_eq!(req.stan(), Stan::new(2).ok());
    answer(&mut wire, &req, "00").await;
    assert_eq!(next.await.unwrap().unwrap().stan(), Stan::new(2).ok());
}

#[tokio::test(start_paused = true)]
async fn a_second_request_with_a_stan_in_flight_is_not_sent() {
    let (host, link) = Host::start(4).await;
    let (mut wire, _) = host.accept_signed_on(&link).await;
    let first = exchange(&link, 1);
    let req = recv(&mut wire).await;
    assert_eq!(
        exchange(&link, 1).await.unwrap().unwrap_err(),
        LinkError::NotSent("a request with this STAN and terminal id awaits its answer")
    );
    answer(&mut wire, &req, "00").await;
    assert!(first.await.unwrap().is_ok());
    // Only the first one went out.
    assert!(quiet(&mut wire, TIMEOUT / 2).await);
}

#[tokio::test(start_paused = true)]
async fn a_request_over_the_frame_maximum_is_not_sent_and_the_link_goes_on() {
    let (host, link) = Host::start(4).await;
    let (mut wire, _) = host.accept_signed_on(&link).await;
    let mut huge = request(1);
    for field in [46, 47, 48, 56, 57, 58, 59, 60, 62, 63] {
        huge.set_text(field, &"x".repeat(999)).unwrap();
    }
    assert_eq!(
        link.exchange(huge).await.unwrap_err(),
        LinkError::NotSent("over the frame maximum")
    );
    let next = exchange(&link, 2);
    let req = recv(&mut wire).await;
    assert_eq!(req.stan(), Stan::new(2).ok());
    answer(&mut wire, &req, "00").await;
    assert!(next.await.unwrap().is_ok());
    assert!(link.status().is_signed_on());
}

#[tokio::test(start_paused = true)]
async fn the_host_echo_is_answered() {
    let (host, link) = Host::start(4).await;
    let (mut wire, _) = host.accept_signed_on(&link).await;
    let mut echo = Message::new(Mti::NETWORK_REQUEST);
    echo.set_stan(Stan::new(5).unwrap()).unwrap();
    echo.set_transmission_time(time::OffsetDateTime::now_utc())
        .unwrap();
    echo.set_network_code(NetworkCode::Echo).unwrap();
    wire.send(&echo).await.unwrap();
    let got = recv(&mut wire).await;
    assert_eq!(got.mti(), Mti::NETWORK_RESPONSE);
    assert_eq!(got.stan(), Stan::new(5).ok());
    assert_eq!(got.response_code(), Some(ResponseCode::APPROVED));
}

#[tokio::test(start_paused = true)]
async fn what_cannot_be_matched_or_comes_after_shutdown_is_not_sent() {
    let (host, link) = Host::start(4).await;
    let (mut wire, _) = host.accept_signed_on(&link).await;
    let answer_msg = reply(&request(1), "00");
    assert_eq!(
        link.exchange(answer_msg).await.unwrap_err(),
        LinkError::NotSent("not a request or advice")
    );
    let mut no_tid = request(1);
    no_tid.remove(41);
    assert_eq!(
        link.exchange(no_tid).await.unwrap_err(),
        LinkError::NotSent("no F11 or F41 to match the answer by")
    );
    let in_flight = exchange(&link, 2);
    recv(&mut wire).await;
    link.shutdown().await;
    assert_eq!(in_flight.await.unwrap().unwrap_err(), LinkError::Dropped);
    assert_eq!(link.status(), LinkStatus::Stopped);
    assert_eq!(closed(&mut wire).await, vec![]);
    assert_eq!(
        link.exchange(request(3)).await.unwrap_err(),
        LinkError::NotSent("the link is shut down")
    );
}

#[tokio::test]
async fn signs_on_and_exchanges_over_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let link = Link::spawn(settings(address, 1), Arc::new(CounterStans::new(OWN_STAN)));
    let pending = exchange(&link, 1);
    let (stream, _) = listener.accept().await.unwrap();
    let mut wire = Framed::new(stream, FrameCodec::default());
    let sign_on = wire.next().await.unwrap().unwrap().unwrap();
    assert_eq!(sign_on.network_code(), Some(NetworkCode::SignOn));
    wire.send(reply(&sign_on, "00")).await.unwrap();
    let req = wire.next().await.unwrap().unwrap().unwrap();
    assert_eq!(req.stan(), Stan::new(1).ok());
    wire.send(reply(&req, "00")).await.unwrap();
    assert_eq!(pending.await.unwrap().unwrap().stan(), Stan::new(1).ok());
    link.shutdown().await;
    assert!(wire.next().await.is_none());
}

#[test]
fn backoff_doubles_from_half_a_second_to_thirty_with_jitter() {
    let ms = |attempt, jitter| backoff(attempt, jitter).as_millis();
    assert_eq!((ms(1, 0.0), ms(1, 0.999_999)), (250, 499));
    assert_eq!((ms(2, 0.0), ms(3, 0.0), ms(4, 0.0)), (500, 1000, 2000));
    assert_eq!((ms(7, 0.0), ms(7, 1.0)), (15_000, 30_000));
    assert_eq!((ms(50, 0.0), ms(u32::MAX, 1.0)), (15_000, 30_000));
}

#[test]
fn status_shows_as_readyz_wants_it() {
    let json = |s: &LinkStatus| serde_json::to_value(s).unwrap();
    assert_eq!(
        json(&LinkStatus::Connecting {
            attempt: 2,
            last_error: Some("the host closed the connection".into())
        }),
        serde_json::json!({"state": "connecting", "attempt": 2,
            "last_error": "the host closed the connection"})
    );
    assert_eq!(
        json(&LinkStatus::SignedOn { since_ms: 1_000 }),
        serde_json::json!({"state": "signed_on", "since_ms": 1000})
    );
    assert_eq!(
        json(&LinkStatus::Stopped),
        serde_json::json!({"state": "stopped"})
    );
}

#[tokio::test]
async fn counter_stans_count_and_wrap() {
    let c = CounterStans::new(999_998);
    let mut got = vec![];
    for _ in 0..3 {
        got.push(c.next_stan().await.unwrap().get());
    }
    assert_eq!(got, vec![999_998, 999_999, 1]);
}

#[test]
fn settings_come_from_the_config_section() {
    let s = LinkSettings::from_settings(&crate::config::Iso8583Settings {
        address: "127.0.0.1:8583".into(),
        terminal_id: TID.into(),
        acquirer_id: ACQUIRER.into(),
        response_timeout_secs: 7,
        echo_interval_secs: 30,
        max_in_flight: 3,
        ..Default::default()
    });
    assert_eq!(s.address, "127.0.0.1:8583");
    assert_eq!(
        (s.terminal_id.as_str(), s.acquirer_id.as_str()),
        (TID, ACQUIRER)
    );
    assert_eq!(s.response_timeout, Duration::from_secs(7));
    assert_eq!(s.echo_interval, Duration::from_secs(30));
    assert_eq!(s.max_in_flight, 3);
}

/// What the link logs on this test's thread (the runtime of a
/// `#[tokio::test]` is single-threaded). A second, do-nothing dispatcher
/// keeps tracing asking every dispatcher about each callsite, so tests
/// running in parallel without a subscriber do not switch lines off.
struct Captured {
    sink: Sink,
    _guard: tracing::subscriber::DefaultGuard,
    _second: tracing::Dispatch,
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.sink.0.lock().unwrap()).into_owned()
    }
}

fn capture() -> Captured {
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    Captured {
        sink,
        _guard: tracing::subscriber::set_default(subscriber),
        _second: tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()),
    }
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
