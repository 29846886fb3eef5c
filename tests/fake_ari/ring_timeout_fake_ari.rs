//! A callback that rang out on an Asterisk build without the 2025 fix for
//! originate timeouts (issue #12, fault 6), against the scripted fake ARI
//! server: no final Dial status and `ChannelDestroyed` with cause 0. After
//! the full ring time (`telephony.ring_timeout_secs`, from the originate)
//! that is no answer, retried as one; well before it, the call failed.

use super::common::{attempt_outcomes as outcomes, daemon_on, new_order, originate_of};
use serde_json::{json, Value};
use std::time::Duration;
use voicepay_testkit::fake_ari::{channel, event, request, FakeAri};
use voicepay_testkit::TestApp;

async fn daemon(fake: &FakeAri, ring_timeout_secs: u64, max_attempts: u32) -> TestApp {
    daemon_on(fake, |s| {
        s.telephony.callback_endpoint = "PJSIP/{phone}@carrier".into();
        s.telephony.ring_timeout_secs = ring_timeout_secs;
        s.telephony.max_attempts = max_attempts;
        s.telephony.retry_interval_secs = 1;
    })
    .await
}

/// What such an Asterisk sends when the originate's timeout ends the
/// ringing: the dial in progress, then the channel destroyed with cause 0.
fn rings_out_with_cause_0(fake: &FakeAri, ch: &str) {
    fake.push(event(
        "Dial",
        json!({"dialstatus": "", "peer": channel(ch, "Ringing")}),
    ));
    fake.push(event(
        "ChannelDestroyed",
        json!({"cause": 0, "cause_txt": "Unknown", "channel": channel(ch, "Ringing")}),
    ));
}

#[tokio::test]
async fn cause_0_after_the_full_ring_time_is_no_answer_and_retried() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, 1, 2).await;
    let id = new_order(&app, "R1").await;
    for n in 1..=2 {
        let ch = format!("vp-{id}-{n}");
        let o = request(&fake, originate_of(ch.clone())).await;
        assert_eq!(o.param("timeout"), Some("1"));
        // The ring time passes (the event is what Asterisk sends at its
        // end; the fake sends it when told to).
        tokio::time::sleep(Duration::from_millis(1200)).await;
        rings_out_with_cause_0(&fake, &ch);
        if n == 1 {
            // Retried like a no answer: back in the queue, then called again.
            let v = app
                .order_until(&id, |v| v["attempts"][0]["outcome"] != Value::Null)
                .await;
            assert_eq!(outcomes(&v), ["no_answer"], "{v:#}");
        }
    }
    let v = app.order_until(&id, |v| v["status"] == "failed").await;
    assert_eq!(v["result"]["code"], "no_answer", "{v:#}");
    assert_eq!(outcomes(&v), ["no_answer", "no_answer"], "{v:#}");
}

#[tokio::test]
async fn cause_0_well_before_the_ring_time_is_a_failed_call() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, 30, 1).await;
    let id = new_order(&app, "R2").await;
    let ch = format!("vp-{id}-1");
    request(&fake, originate_of(ch.clone())).await;
    rings_out_with_cause_0(&fake, &ch);
    let v = app.order_until(&id, |v| v["status"] == "failed").await;
    assert_eq!(v["result"]["code"], "call_failed", "{v:#}");
    assert_eq!(outcomes(&v), ["failed"], "{v:#}");
}
