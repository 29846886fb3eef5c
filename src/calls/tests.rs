//! The runner against a fake ARI (no Asterisk) and a temporary SQLite store:
//! ids, barge-in, the order's moves, and that no command carries the PIN.

use super::line::Line;
use super::placeholder::PlaceholderMatcher;
use super::runner::{CallEnd, CallRunner};
use crate::ari::{self, AriCommands, AriError, Channel, HangupReason, Originate};
use crate::config::CryptoSettings;
use crate::crypto::{KeyRing, Vault};
use crate::domain::{CardKind, Language, Mode, OrderStatus, YearMonth};
use crate::ivr::{CallInfo, CallOutcome, Ivr, IvrConfig};
use crate::matcher::Via;
use crate::store::{OrderRow, Store};
use std::sync::Mutex;
use tokio::sync::{mpsc, watch};

/// Records every command as one line; its events socket is up unless told.
struct FakeAri {
    log: Mutex<Vec<String>>,
    up: watch::Sender<bool>,
}

impl Default for FakeAri {
    fn default() -> Self {
        Self {
            log: Mutex::default(),
            up: watch::channel(true).0,
        }
    }
}

impl FakeAri {
    fn push(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }
    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

type R<T> = Result<T, AriError>;

/// One `in_call` debit order in a temporary store, with a fake ARI and the
/// placeholder matcher: what each runner test starts from.
struct Rig {
    _dir: tempfile::TempDir,
    store: Store,
    order_id: String,
    ari: FakeAri,
    matcher: PlaceholderMatcher,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let (store, order_id) = store_with_order(dir.path()).await;
    let matcher = PlaceholderMatcher::new(store.clone());
    Rig {
        _dir: dir,
        store,
        order_id,
        ari: FakeAri::default(),
        matcher,
    }
}

impl Rig {
    /// The runner of the order's callback on channel `ch1`.
    fn runner(&self, end: CallEnd) -> CallRunner<'_, FakeAri, PlaceholderMatcher> {
        CallRunner {
            ari: &self.ari,
            matcher: &self.matcher,
            store: &self.store,
            order_id: &self.order_id,
            node: "voicepay",
            via: &Via::Callback,
            lang: "zh",
            end,
        }
    }
}

impl AriCommands for FakeAri {
    async fn events_up(&self) {
        let _ = self.up.subscribe().wait_for(|up| *up).await;
    }
    async fn originate(&self, o: &Originate) -> R<Channel> {
        self.push(format!("originate {}", o.channel_id));
        Ok(Channel::default())
    }
    async fn answer(&self, channel_id: &str) -> R<()> {
        self.push(format!("answer {channel_id}"));
        Ok(())
    }
    async fn play(
        &self,
        channel_id: &str,
        playback_id: &str,
        media: &[String],
        lang: Option<&str>,
    ) -> R<()> {
        self.push(format!(
            "play {channel_id} {playback_id} {lang:?} {}",
            media.join(",")
        ));
        Ok(())
    }
    async fn stop_playback(&self, playback_id: &str) -> R<()> {
        self.push(format!("stop {playback_id}"));
        Ok(())
    }
    async fn playback_exists(&self, playback_id: &str) -> R<bool> {
        self.push(format!("playback? {playback_id}"));
        Ok(true)
    }
    async fn hangup(&self, channel_id: &str, _: HangupReason) -> R<()> {
        self.push(format!("hangup {channel_id}"));
        Ok(())
    }
    async fn continue_in_dialplan(&self, c: &str, _: &str, _: &str, _: u32) -> R<()> {
        self.push(format!("continue {c}"));
        Ok(())
    }
    async fn set_variable(&self, c: &str, name: &str, value: &str) -> R<()> {
        self.push(format!("var {c} {name}={value}"));
        Ok(())
    }
}

/// A store with one merchant and one debit order already `in_call`.
async fn store_with_order(dir: &std::path::Path) -> (Store, String) {
    let url = format!("sqlite://{}", dir.join("t.db").display());
    let store = Store::connect(&url, 2, crate::views::webhook_body)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let crypto = CryptoSettings {
        key_file: dir.join("keys"),
        ..CryptoSettings::default()
    };
    let vault = Vault::new(&KeyRing::load(&crypto).unwrap());
    let m = crate::merchants::create(&store, &vault, "Shop", None)
        .await
        .unwrap();
    let now = crate::store::now_ms();
    let order = OrderRow {
        id: "ord_test1".into(),
        merchant_id: m.merchant_id,
        merchant_order_id: "m1".into(),
        status: OrderStatus::InCall,
        mode: Mode::Callback,
        amount: 12345,
        currency: "CNY".into(),
        description: None,
        phone: "13800138000".into(),
        language: Language::Zh,
        notify_url: None,
        card_enc: vault.seal("card_number", b"6222000000000017"),
        card_masked: "622200******0017".into(),
        card_type: CardKind::Debit,
        card_fp: "fp".into(),
        id_enc: "x".into(),
        id_masked: "x".into(),
        binding_id: None,
        call_code: None,
        result_code: None,
        resp_code: None,
        result_message: None,
        attempts: 1,
        created_at: now,
        updated_at: now,
        expires_at: now + 600_000,
        notify_progress: 0,
    };
    store.create_order(&order, None).await.unwrap();
    (store, order.id)
}

fn dtmf(channel: &str, digit: char) -> ari::Event {
    ari::Event::ChannelDtmfReceived {
        digit: ari::events::DtmfDigit::new(digit.to_string()),
        duration_ms: 100,
        ended_at_ms: None,
        channel: Channel {
            id: channel.into(),
            ..Channel::default()
        },
    }
}

fn ivr() -> Ivr {
    Ivr::new(
        IvrConfig {
            // No PlaybackFinished comes from the fake: the closing prompt
            // ends on this limit.
            final_prompt_limit: std::time::Duration::from_millis(100),
            ..IvrConfig::default()
        },
        call_info(),
    )
}

fn call_info() -> CallInfo {
    CallInfo {
        language: Language::Zh,
        amount_fen: 12345,
        card_last4: "0017".into(),
        card_kind: CardKind::Debit,
        bound: false,
        today: YearMonth {
            year: 2026,
            month: 1,
        },
    }
}

#[tokio::test]
async fn keyed_ahead_pin_pays_the_order_and_never_leaves_the_runner() {
    let r = rig().await;
    let (tx, rx) = mpsc::unbounded_channel();
    // Confirm and PIN keyed ahead, over the prompts (barge-in, type-ahead).
    for c in "1805137".chars() {
        tx.send(dtmf("ch1", c)).unwrap();
    }
    let runner = r.runner(CallEnd::Hangup);
    let outcome = runner.run(ivr(), &mut Line::new("ch1", rx, None)).await;
    assert_eq!(outcome, Some(CallOutcome::Approved));
    let order = r.store.order(&r.order_id).await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Succeeded);
    assert_eq!(order.result_code.as_deref(), Some("approved"));
    let lines = r.ari.lines();
    assert!(
        lines[0].starts_with("play ch1 ch1:1 Some(\"zh\") sound:voicepay/welcome"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "stop ch1:1"),
        "barge-in: {lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("hangup ch1"));
    assert!(lines.iter().all(|l| !l.contains("805137")), "{lines:?}");
}

#[tokio::test]
async fn caller_hang_up_fails_the_order_with_caller_hung_up() {
    let r = rig().await;
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(dtmf("ch1", '1')).unwrap();
    tx.send(ari::Event::StasisEnd {
        channel: Channel {
            id: "ch1".into(),
            ..Channel::default()
        },
    })
    .unwrap();
    drop(tx); // the dispatcher closes the queue after StasisEnd
    let runner = r.runner(CallEnd::Hangup);
    let outcome = runner.run(ivr(), &mut Line::new("ch1", rx, None)).await;
    assert!(
        matches!(outcome, Some(CallOutcome::Failed(_))),
        "{outcome:?}"
    );
    let order = r.store.order(&r.order_id).await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Failed);
    assert_eq!(order.result_code.as_deref(), Some("caller_hung_up"));
}

#[tokio::test]
async fn return_to_dialplan_leaves_the_channel_up() {
    let r = rig().await;
    let (tx, rx) = mpsc::unbounded_channel();
    for c in "1805137".chars() {
        tx.send(dtmf("ch1", c)).unwrap();
    }
    let runner = r.runner(CallEnd::ReturnToDialplan);
    let outcome = runner.run(ivr(), &mut Line::new("ch1", rx, None)).await;
    assert_eq!(outcome, Some(CallOutcome::Approved));
    let lines = r.ari.lines();
    assert!(
        lines.iter().all(|l| !l.starts_with("hangup")),
        "a transferred caller goes back to the agent: {lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("sound:voicepay/success")));
    // Still open: the flow, not the runner, hands the channel back.
    drop(tx);
}

#[tokio::test]
async fn a_call_lost_in_an_outage_is_not_a_hang_up_and_its_timers_wait() {
    let r = rig().await;
    r.ari.up.send_replace(false); // the events socket is down
    let (tx, rx) = mpsc::unbounded_channel();
    let runner = r.runner(CallEnd::Hangup);
    let short = Ivr::new(
        IvrConfig {
            // Fires during the outage; without the hold it would end the
            // call as a timeout.
            max_call: std::time::Duration::from_millis(20),
            ..IvrConfig::default()
        },
        call_info(),
    );
    let watcher = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let order = r.store.order(&r.order_id).await.unwrap().unwrap();
        assert_eq!(
            order.status,
            OrderStatus::InCall,
            "a timer that fired during the outage must wait, not end the call"
        );
        // Reconnected, and the channel was gone: its queue closes with no
        // hang-up event.
        drop(tx);
    };
    let mut line = Line::new("ch1", rx, None);
    let (outcome, ()) = tokio::join!(runner.run(short, &mut line), watcher);
    assert_eq!(outcome, None, "lost, not hung up");
    let order = r.store.order(&r.order_id).await.unwrap().unwrap();
    assert_eq!(
        order.status,
        OrderStatus::InCall,
        "the flow settles a lost call"
    );
}

fn hangup_request(soft: Option<bool>, cause: i64) -> ari::Event {
    ari::Event::ChannelHangupRequest {
        cause: Some(cause),
        tech_cause: None,
        soft,
        channel: Channel {
            id: "ch1".into(),
            ..Channel::default()
        },
    }
}

#[tokio::test]
async fn asterisk_hanging_the_call_up_is_not_the_caller_hanging_up() {
    for (request, want) in [
        // `core stop now`: a soft request with cause 4 (shutdown).
        (hangup_request(Some(true), 4), None),
        // The caller: a plain request with a Q.850 cause.
        (
            hangup_request(None, 16),
            Some(CallOutcome::Failed(crate::domain::ResultCode::CallerHungUp)),
        ),
    ] {
        let r = rig().await;
        let (tx, rx) = mpsc::unbounded_channel();
        for c in "1805".chars() {
            tx.send(dtmf("ch1", c)).unwrap();
        }
        tx.send(request).unwrap();
        let runner = r.runner(CallEnd::Hangup);
        assert_eq!(
            runner.run(ivr(), &mut Line::new("ch1", rx, None)).await,
            want
        );
        drop(tx);
    }
}

#[tokio::test]
async fn a_masquerade_mid_pin_keeps_the_keyed_digits_and_moves_every_command() {
    let r = rig().await;
    let (tx, rx) = mpsc::unbounded_channel();
    for c in "180".chars() {
        tx.send(dtmf("ch1", c)).unwrap();
    }
    // An attended transfer into the app: the call is now on ch2, then the
    // old channel leaves the app.
    let old = Channel {
        id: "ch1".into(),
        ..Channel::default()
    };
    tx.send(ari::Event::StasisStart {
        args: vec![],
        channel: Channel {
            id: "ch2".into(),
            ..Channel::default()
        },
        replace_channel: Some(Box::new(old.clone())),
    })
    .unwrap();
    tx.send(ari::Event::StasisEnd { channel: old }).unwrap();
    for c in "5137".chars() {
        tx.send(dtmf("ch2", c)).unwrap();
    }
    let runner = r.runner(CallEnd::Hangup);
    let mut line = Line::new("ch1", rx, None);
    let outcome = runner.run(ivr(), &mut line).await;
    assert_eq!(outcome, Some(CallOutcome::Approved));
    assert_eq!(line.id(), "ch2");
    let order = r.store.order(&r.order_id).await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Succeeded);
    let lines = r.ari.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("play ch2 ch2:") && l.contains("sound:voicepay/success")),
        "the closing prompt on the new channel: {lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("hangup ch2"));
    assert!(!lines.iter().any(|l| l == "hangup ch1"), "{lines:?}");
}
