//! The demo page's agent desk (issue #16), end to end: headless Chromium
//! places an assisted order on the "Agent desk" tab and reads its one-time
//! code; Capture is refused (`capture_not_ready`) while no leg is in
//! voicepay's bridge; then the cardholder's and the agent's lab phones
//! (Local channels, dialplan/lab.conf "Assisted payments", as in
//! tests/asterisk/assisted_e2e.rs) join with that code, Capture is
//! accepted, the cardholder's phone keys 1 and the PIN, and the desk shows
//! the progress in counts ("PIN: 4 of 6 digits", "Authorizing…") and the
//! success, with no keyed digit anywhere on the page.
//!
//! A second test drives the desk through a wrong PIN and the right one on
//! the scripted fake ARI (keys exact, no lab call).
//!
//! Needs `scripts/asterisk up` (the first test) and `scripts/browser`;
//! skips without them and fails under `CI=true`. Saves `desk-*.png` under
//! `$CARGO_TARGET_TMPDIR/demo/`.

use crate::chromium::{click, require_browser, type_into, Browser};
use serde_json::Value;
use std::time::Duration;
use voicepay_testkit::lab::assisted::{global_set, host_path};
use voicepay_testkit::lab::{self, secs};
use voicepay_testkit::{poll_until, spawn_app_with, wait_for, Db, TestApp};

const CARD: &str = "6222000000000017";
const ID_NUMBER: &str = "11010519491231002X";
const PIN: &str = "805137";

/// A daemon with the demo page on, on the lab Asterisk under `app`.
async fn desk_daemon(app: &str) -> TestApp {
    let app = app.to_owned();
    spawn_app_with(Db::Sqlite, move |s| {
        s.demo.enabled = true;
        s.ari.url = lab::lab_setting("VOICEPAY__ARI__URL");
        s.ari.username = lab::lab_setting("VOICEPAY__ARI__USERNAME");
        s.ari.password = lab::lab_setting("VOICEPAY__ARI__PASSWORD");
        s.ari.app = app;
    })
    .await
    .expect("sqlite app")
}

/// 200 ms of silence as a WAV (8 kHz, 16-bit mono): the lab phone's
/// "tones" files, which this test does not need.
fn silence_wav() -> Vec<u8> {
    lab::assisted::pcm_wav(&[0; 1600])
}

async fn js(b: &Browser, script: &str) -> Value {
    b.client.execute(script, vec![]).await.expect("script runs")
}

/// The assisted call's code once the desk shows it (8 digits).
async fn desk_code(b: &Browser) -> String {
    wait_for(secs(15), async || {
        let v = js(b, "return document.getElementById('desk-view').hidden ? null : document.getElementById('desk-code').textContent;").await;
        v.as_str()
            .filter(|c| c.len() == 8 && c.bytes().all(|d| d.is_ascii_digit()))
            .map(str::to_owned)
            .ok_or(format!("no code on the desk yet: {v}"))
    })
    .await
}

/// Clicks `button` and waits until its request is answered (the desk
/// disables the buttons meanwhile); returns (the error code shown or
/// null, the status line).
async fn press(b: &Browser, button: &str) -> (Value, String) {
    click(b, button).await;
    poll_until(secs(10), Duration::from_millis(100), async || {
        let v = js(
            b,
            r#"var c = document.getElementById('capture');
               if (c.disabled && document.getElementById('desk-result').hidden) { return null; }
               var e = document.getElementById('desk-error');
               return [e.hidden ? null : e.getAttribute('data-code'),
                       document.getElementById('desk-status').textContent];"#,
        )
        .await;
        if v.is_null() {
            Err(())
        } else {
            Ok((v[0].clone(), v[1].as_str().unwrap_or_default().to_owned()))
        }
    })
    .await
    .expect("the desk answers the button")
}

/// What the desk shows: the log lines, the result, and whether any
/// keyed digit sequence is on the page.
const READ_DESK: &str = r#"
    var r = document.getElementById('desk-result');
    if (r.hidden) { return null; }
    return {
      outcome: r.getAttribute('data-outcome'),
      title: document.getElementById('desk-result-title').textContent,
      log: Array.prototype.map.call(document.querySelectorAll('#desk-log li'), function (l) { return l.textContent; }),
      text: document.body.innerText,
      desk: document.getElementById('desk-view').outerHTML
    };
"#;

#[tokio::test]
async fn the_agent_desk_follows_an_assisted_capture_in_counts_only() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    let Some(paths) = require_browser() else {
        return;
    };
    let name = lab::unique("vp-desk");
    let app = desk_daemon(&name).await;
    wait_for(secs(15), async || {
        lab.get(&format!("/applications/{name}"), &[])
            .await
            .map(|_| ())
            .map_err(|e| format!("app {name} not registered: {e}"))
    })
    .await;
    let phone = format!("1360014{:04}", rand::random::<u16>() % 10_000);
    let b = Browser::start(&paths).await.expect("browser");
    b.client
        .goto(&app.demo_url("/demo?lang=en"))
        .await
        .expect("open /demo");

    // The tab: an assisted order, its code and the dialplan lines.
    click(&b, "#tab-desk").await;
    type_into(&b, "#card_number", CARD).await;
    type_into(&b, "#id_number", ID_NUMBER).await;
    type_into(&b, "#phone", &phone).await;
    click(&b, "#pay").await;
    let code = desk_code(&b).await;
    let dialplan = js(
        &b,
        "return document.getElementById('desk-dialplan').textContent;",
    )
    .await;
    assert_eq!(
        dialplan.as_str().unwrap(),
        format!(
            "Gosub(voicepay-assisted,{code},1(cardholder))\nGosub(voicepay-assisted,{code},1(agent))"
        )
    );
    let (id, mode): (String, String) =
        sqlx::query_as("SELECT id, mode FROM orders WHERE merchant_id = 'mch_demo' AND phone = $1")
            .bind(&phone)
            .fetch_one(&app.pool)
            .await
            .expect("the demo's assisted order");
    assert_eq!(mode, "assisted");

    // No leg in the bridge yet: Capture is refused and nothing is recorded.
    let (error, _) = press(&b, "#capture").await;
    assert_eq!(error, "capture_not_ready");
    let captures: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM order_events WHERE order_id = $1 AND kind = 'capture'",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(captures, 0, "a refused capture recorded progress");

    // Both legs join with the code (the lab phones of assisted_e2e).
    let files = format!("/tmp/vp-desk-{code}");
    std::fs::write(host_path(&format!("{files}-silence.wav")), silence_wav()).unwrap();
    let silence = format!("{files}-silence");
    let holder = lab::assisted::HolderScript {
        pre: "4",
        pre_tones: &silence,
        delay_secs: 8,
        key_tones: &silence,
        keys: PIN,
    };
    let recording = format!("{files}-agent");
    lab::assisted::originate_legs(&lab, &name, &code, &phone, &recording, &holder).await;
    global_set(&lab, &format!("LAB_PRE_DONE_{code}"), secs(30)).await;

    // Capture from the desk (the agent's leg may still be joining).
    let requested = wait_for(secs(6), async || match press(&b, "#capture").await {
        (Value::Null, status) => Ok(status),
        (code, _) => Err(format!("capture refused: {code}")),
    })
    .await;
    assert_eq!(
        requested,
        "Capture requested: the cardholder hears the prompts."
    );

    let shown = match poll_until(secs(90), Duration::from_millis(250), async || {
        let v = js(&b, READ_DESK).await;
        if v.is_null() {
            Err(())
        } else {
            Ok(v)
        }
    })
    .await
    {
        Ok(v) => v,
        Err(()) => {
            let shot = b.screenshot("desk-timeout").await.ok();
            let text = js(&b, "return document.body.innerText;").await;
            panic!("the desk shows no result; it says:\n{text}\n(screenshot {shot:?})");
        }
    };
    let shot = b.screenshot("desk-succeeded").await.ok();
    let log: Vec<String> = shown["log"]
        .as_array()
        .expect("log")
        .iter()
        .map(|l| l.as_str().unwrap_or_default().to_owned())
        .collect();
    eprintln!(
        "the desk showed: {log:?} then {:?} ({shot:?})",
        shown["title"]
    );
    assert_eq!(shown["outcome"], "succeeded", "{shown:#}");
    assert_eq!(shown["title"], "Payment successful");
    assert!(
        !log.iter().any(|l| l.starts_with("Wrong PIN")),
        "the right PIN shown as wrong: {log:?}"
    );
    for step in [
        "Confirm: waiting for the cardholder to press 1",
        "PIN: 4 of 6 digits",
        "PIN: 5 of 6 digits",
        "Authorizing…",
    ] {
        assert!(log.iter().any(|l| l == step), "no {step:?} in {log:?}");
    }
    // Counts only: each line is one of the desk's templates, and the PIN
    // is nowhere on the page.
    let count_line = |l: &str| {
        l.strip_prefix("PIN: ")
            .and_then(|r| r.strip_suffix(" of 6 digits"))
            .is_some_and(|n| n.len() == 1 && n.bytes().all(|d| d.is_ascii_digit()))
    };
    for l in &log {
        assert!(
            count_line(l)
                || [
                    "Confirm: waiting for the cardholder to press 1",
                    "Authorizing…",
                    "Capture over",
                ]
                .contains(&l.as_str()),
            "a desk line that is not a count: {l:?}"
        );
    }
    for part in ["text", "desk"] {
        let s = shown[part].as_str().unwrap();
        for len in 3..=PIN.len() {
            for w in PIN.as_bytes().windows(len) {
                let w = std::str::from_utf8(w).unwrap();
                assert!(
                    !s.replace(&code, "").contains(w),
                    "{w} of the PIN on the page ({part})"
                );
            }
        }
    }
    let (status, result): (String, Option<String>) =
        sqlx::query_as("SELECT status, result_code FROM orders WHERE id = $1")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), result.as_deref()),
        ("succeeded", Some("approved"))
    );
    b.close().await;
    for g in [
        "LAB_PRE_DONE_",
        "LAB_AGENT_HEARD_",
        "LAB_AGENT_RESULT_",
        "LAB_RESULT_",
    ] {
        let _ = lab.set_global(&format!("{g}{code}"), "").await;
    }
    for f in ["silence.wav", "agent.wav"] {
        let _ = std::fs::remove_file(host_path(&format!("{files}-{f}")));
    }
}

/// The desk's lines so far (`#desk-log`), and its result once shown.
async fn desk_lines(b: &Browser) -> (Vec<String>, Value) {
    let v = js(
        b,
        r#"var r = document.getElementById('desk-result');
           return [Array.prototype.map.call(document.querySelectorAll('#desk-log li'), function (l) { return l.textContent; }),
                   r.hidden ? null : r.getAttribute('data-outcome')];"#,
    )
    .await;
    let lines = v[0]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l.as_str().unwrap_or_default().to_owned())
        .collect();
    (lines, v[1].clone())
}

/// Waits until the desk shows `line` (or panics with what it shows).
async fn desk_shows(b: &Browser, line: &str) {
    wait_for(secs(20), async || {
        let (lines, _) = desk_lines(b).await;
        if lines.iter().any(|l| l == line) {
            Ok(())
        } else {
            Err(format!("no {line:?} on the desk: {lines:?}"))
        }
    })
    .await;
}

/// The desk in words after a wrong PIN, on the scripted fake ARI (no lab
/// call needed, so the keys are exact): the cardholder keys 1 and a wrong
/// PIN, the desk says "Wrong PIN, 2 tries left"; then the right PIN pays
/// in the same capture. Needs `scripts/browser`.
#[tokio::test]
async fn the_agent_desk_shows_a_wrong_pin_in_words_then_the_success() {
    use voicepay_testkit::fake_ari::{channel, event, FakeAri};
    let Some(paths) = require_browser() else {
        return;
    };
    let fake = FakeAri::start().await;
    let ari = fake.settings();
    let app = spawn_app_with(Db::Sqlite, move |s| {
        s.demo.enabled = true;
        s.http.events_poll_ms = 20;
        s.ari = ari;
    })
    .await
    .expect("sqlite app");
    fake.wait_connections(1, secs(10)).await;
    let b = Browser::start(&paths).await.expect("browser");
    b.client
        .goto(&app.demo_url("/demo?lang=en"))
        .await
        .expect("open /demo");
    click(&b, "#tab-desk").await;
    type_into(&b, "#card_number", CARD).await;
    type_into(&b, "#id_number", ID_NUMBER).await;
    type_into(&b, "#phone", "13600140001").await;
    click(&b, "#pay").await;
    let code = desk_code(&b).await;
    for (ch, party) in [("vp-desk-agent", "agent"), ("vp-desk-holder", "cardholder")] {
        fake.push(event(
            "StasisStart",
            serde_json::json!({"args": ["assisted", code, party], "channel": channel(ch, "Up")}),
        ));
    }
    let requested = wait_for(secs(10), async || match press(&b, "#capture").await {
        (Value::Null, status) => Ok(status),
        (code, _) => Err(format!("capture refused: {code}")),
    })
    .await;
    assert_eq!(
        requested,
        "Capture requested: the cardholder hears the prompts."
    );
    let holder = channel("vp-desk-holder", "Up");
    desk_shows(&b, "Confirm: waiting for the cardholder to press 1").await;
    fake.press(&holder, "1123456");
    desk_shows(&b, "Wrong PIN, 2 tries left").await;
    fake.press(&holder, PIN);
    let (lines, outcome) = wait_for(secs(20), async || {
        let (lines, outcome) = desk_lines(&b).await;
        if outcome.is_null() {
            Err(format!("no result yet: {lines:?}"))
        } else {
            Ok((lines, outcome))
        }
    })
    .await;
    let shot = b.screenshot("desk-wrong-then-right").await.ok();
    eprintln!("the desk showed: {lines:?} then {outcome} ({shot:?})");
    assert_eq!(outcome, "succeeded");
    let wrong = lines
        .iter()
        .position(|l| l == "Wrong PIN, 2 tries left")
        .unwrap();
    assert_eq!(
        &lines[wrong - 1..=wrong + 1],
        [
            "Authorizing…",
            "Wrong PIN, 2 tries left",
            "PIN: 0 of 6 digits"
        ],
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("Wrong PIN")).count(),
        1,
        "{lines:?}"
    );
    let text = js(&b, "return document.body.innerText;").await;
    for secret in [PIN, "123456"] {
        assert!(
            !text.as_str().unwrap().contains(secret),
            "{secret} on the page"
        );
    }
    b.close().await;
}
