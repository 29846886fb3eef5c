//! The demo checkout page (`/demo`), end to end: headless Chromium (Debian's
//! package, over WebDriver) fills the form with a test card and submits; a
//! lab handset on the real Asterisk 22 answers the callback and keys the
//! PIN; the page follows the order's status stream and shows the result in
//! words. Each browser run saves a screenshot of the final page under
//! `$CARGO_TARGET_TMPDIR/demo/`.
//!
//! The browser tests need `scripts/asterisk up` and `scripts/browser`; they
//! skip without them and fail under `CI=true`. The plain HTTP tests at the
//! end need neither: the page is off by default, holds no API key, and its
//! backend relays the API (orders, errors, the resumable stream). The page
//! is on the demo's own listener (`demo.listen`), never the API's; what it
//! refuses to strangers is tested in `tests/api/demo.rs`.

use crate::chromium::{click, require_browser, type_into, Browser};
use fantoccini::Locator;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::time::Duration;
use voicepay_testkit::lab;
use voicepay_testkit::{order_body, poll_until, spawn_app, spawn_app_with, Db, TestApp};

const CARD: &str = "6222000000000017";
const ID_NUMBER: &str = "11010519491231002X";
const PIN: &str = "805137";

/// A lab handset number for this file only (136 0013 ….).
fn phone() -> String {
    format!("1360013{:04}", rand::random::<u16>() % 10_000)
}

/// A daemon with the demo page on, placing callbacks through the lab
/// Asterisk under its own Stasis app.
async fn demo_daemon() -> TestApp {
    spawn_app_with(Db::Sqlite, |s| {
        s.demo.enabled = true;
        s.ari.url = lab::lab_setting("VOICEPAY__ARI__URL");
        s.ari.username = lab::lab_setting("VOICEPAY__ARI__USERNAME");
        s.ari.password = lab::lab_setting("VOICEPAY__ARI__PASSWORD");
        s.ari.app = lab::unique("vp-demo");
        s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
        s.telephony.ring_timeout_secs = 6;
        s.telephony.max_attempts = 1;
    })
    .await
    .expect("sqlite app")
}

/// The handset script that answers, confirms and keys the right PIN.
fn pays() -> String {
    format!("answer=1;delay=1;keys=1wwww{PIN};hold=40")
}

/// A lab handset scripted with `script`, a demo daemon, and a browser on
/// `/demo?lang={lang}`: (lab, daemon, the handset's phone, browser). `None`
/// (the test skips) without the lab Asterisk or a browser.
async fn demo_page_with_handset(
    lang: &str,
    script: &str,
) -> Option<(lab::Lab, TestApp, String, Browser)> {
    let lab = lab::require_asterisk()?;
    let paths = require_browser()?;
    let app = demo_daemon().await;
    let phone = phone();
    lab.script_handset(&phone, script).await.expect("script");
    let b = Browser::start(&paths).await.expect("browser");
    b.client
        .goto(&app.demo_url(&format!("/demo?lang={lang}")))
        .await
        .expect("open /demo");
    Some((lab, app, phone, b))
}

/// What the page shows once the order is final.
#[derive(Debug)]
struct Shown {
    outcome: String,
    title: String,
    reason: String,
    /// The progress steps' classes (`done`, `fail`, …), in order.
    steps: Vec<String>,
    /// The steps seen in progress (class `active`) while waiting, in order.
    seen_active: Vec<String>,
    /// The notices seen while waiting (e.g. wrong PIN, key it again).
    seen_notices: Vec<String>,
}

const READ_PROGRESS: &str = r#"
    var a = document.querySelector('#wait-view:not([hidden]) #steps li.active');
    var n = document.querySelector('#wait-view:not([hidden]) #notice:not([hidden])');
    return [a ? a.getAttribute('data-step') : null, n ? n.textContent : null];
"#;

const READ_RESULT: &str = r#"
    var r = document.getElementById('result');
    if (r.hidden) { return null; }
    return {
      outcome: r.getAttribute('data-outcome'),
      title: document.getElementById('result-title').textContent,
      reason: document.getElementById('result-reason').textContent,
      steps: Array.prototype.map.call(document.querySelectorAll('#steps li'), function (l) { return l.className; })
    };
"#;

/// Polls the page until it shows a result (generous deadline: a call with
/// prompts takes tens of seconds); on timeout saves `NAME-timeout.png`.
async fn wait_for_result(b: &Browser, name: &str) -> Shown {
    // The steps and notices the page showed on the way, gathered look by look.
    let seen = RefCell::new([Vec::<String>::new(), Vec::<String>::new()]);
    let every = Duration::from_millis(250);
    let result = poll_until(Duration::from_secs(150), every, async || {
        let progress = b
            .client
            .execute(READ_PROGRESS, vec![])
            .await
            .expect("script runs");
        for (i, seen) in seen.borrow_mut().iter_mut().enumerate() {
            if let Some(text) = progress[i].as_str() {
                if seen.last().map(String::as_str) != Some(text) {
                    seen.push(text.to_string());
                }
            }
        }
        let v = b
            .client
            .execute(READ_RESULT, vec![])
            .await
            .expect("script runs");
        if v.is_null() {
            Err(())
        } else {
            Ok(v)
        }
    })
    .await;
    if let Ok(v) = result {
        let [seen_active, seen_notices] = seen.into_inner();
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        return Shown {
            outcome: s("outcome"),
            title: s("title"),
            reason: s("reason"),
            steps: v["steps"]
                .as_array()
                .map(|a| a.iter().map(|c| c.as_str().unwrap_or("").into()).collect())
                .unwrap_or_default(),
            seen_active,
            seen_notices,
        };
    }
    let shot = b.screenshot(&format!("{name}-timeout")).await.ok();
    let text = b
        .client
        .find(Locator::Css("main"))
        .await
        .expect("main")
        .text()
        .await
        .unwrap_or_default();
    panic!("the page shows no result; it says:\n{text}\n(screenshot {shot:?})");
}

/// The demo merchant's order for `phone`: (status, result code).
async fn stored_outcome(app: &TestApp, phone: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as(
        "SELECT status, result_code FROM orders WHERE merchant_id = 'mch_demo' AND phone = $1 \
         ORDER BY created_at",
    )
    .bind(phone)
    .fetch_all(&app.pool)
    .await
    .expect("orders")
}

async fn value_of(b: &Browser, css: &str) -> String {
    b.client
        .find(Locator::Css(css))
        .await
        .expect(css)
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default()
}

/// First test card, the phone, submit: the page shows success in Chinese
/// once the handset has keyed the PIN. Then, with the phone now bound, a
/// phone-only payment succeeds too.
#[tokio::test]
async fn the_first_test_card_pays_and_the_page_shows_success() {
    let Some((lab, app, phone, b)) = demo_page_with_handset("zh", &pays()).await else {
        return;
    };
    let title = b.client.find(Locator::Css("h1")).await.unwrap();
    assert_eq!(title.text().await.unwrap(), "银行卡语音支付");
    click(&b, ".card-btn").await;
    assert_eq!(value_of(&b, "#card_number").await, CARD);
    assert_eq!(value_of(&b, "#id_number").await, ID_NUMBER);
    type_into(&b, "#phone", &phone).await;
    b.screenshot("form-zh").await.expect("screenshot");
    click(&b, "#pay").await;

    let shown = wait_for_result(&b, "success-zh").await;
    let shot = b.screenshot("success-zh").await.expect("screenshot");
    assert_eq!(shown.outcome, "succeeded", "{shown:?} ({})", shot.display());
    assert_eq!(shown.title, "支付成功", "{shown:?}");
    assert!(
        shown.reason.contains("¥123.45") && shown.reason.contains("622200******0017"),
        "{shown:?}"
    );
    assert!(shown.steps.iter().all(|c| c == "done"), "{shown:?}");
    // The page followed the call live: it showed the PIN step in progress
    // (the handset takes seconds to confirm and key it).
    assert!(shown.seen_active.iter().any(|s| s == "secret"), "{shown:?}");
    let page = b.client.source().await.expect("source");
    assert!(!page.contains("vpk_"), "an API key reached the browser");
    assert_eq!(
        stored_outcome(&app, &phone).await,
        [("succeeded".into(), Some("approved".into()))]
    );

    // The phone is bound now: the phone-only tab, the phone, submit.
    lab.script_handset(&phone, &pays()).await.expect("script");
    click(&b, "#again").await;
    let cleared = b.client.execute(READ_RESULT, vec![]).await.expect("script");
    assert!(
        cleared.is_null(),
        "the old result is still shown: {cleared}"
    );
    click(&b, "#tab-bound").await;
    let card_fields = b.client.find(Locator::Css("#card-fields")).await.unwrap();
    assert!(!card_fields.is_displayed().await.unwrap(), "phone only");
    type_into(&b, "#amount", "1.00").await;
    type_into(&b, "#phone", &phone).await;
    click(&b, "#pay").await;
    let bound = wait_for_result(&b, "bound-zh").await;
    b.screenshot("bound-zh").await.expect("screenshot");
    let _ = lab.clear_handset(&phone).await;
    b.close().await;
    assert_eq!(bound.outcome, "succeeded", "{bound:?}");
    assert_eq!(bound.title, "支付成功", "{bound:?}");
    assert!(bound.reason.contains("¥1.00"), "{bound:?}");
    let paid = ("succeeded".to_string(), Some("approved".to_string()));
    assert_eq!(stored_outcome(&app, &phone).await, [paid.clone(), paid]);
    let bound_flags: Vec<i64> = sqlx::query_scalar(
        "SELECT CASE WHEN binding_id IS NULL THEN 0 ELSE 1 END FROM orders \
         WHERE phone = $1 ORDER BY created_at",
    )
    .bind(&phone)
    .fetch_all(&app.pool)
    .await
    .expect("orders");
    assert_eq!(bound_flags, [0, 1], "the second order used the binding");
}

/// Every status stream the page opens fails at once (an `EventSource`
/// stand-in that only reports an error): the page reads the order instead,
/// opens the stream again after a pause while the order is not final, and
/// shows the result once it is, rather than waiting forever.
#[tokio::test]
async fn a_failing_status_stream_falls_back_to_reading_the_order() {
    let Some((lab, _app, phone, b)) = demo_page_with_handset("en", &pays()).await else {
        return;
    };
    b.client
        .execute(
            r#"
            window.streamsOpened = 0;
            window.EventSource = function (url) {
              var me = this;
              window.streamsOpened++;
              me.url = url;
              me.readyState = 0;
              me.addEventListener = function () {};
              me.close = function () { me.readyState = 2; };
              setTimeout(function () {
                me.readyState = 2;
                if (me.onerror) { me.onerror(new Event('error')); }
              }, 10);
            };
            return true;
            "#,
            vec![],
        )
        .await
        .expect("script");
    click(&b, ".card-btn").await;
    type_into(&b, "#phone", &phone).await;
    click(&b, "#pay").await;
    let shown = wait_for_result(&b, "stream-fails").await;
    let opened = b
        .client
        .execute("return window.streamsOpened;", vec![])
        .await
        .expect("script");
    let shot = b.screenshot("stream-fails").await.expect("screenshot");
    let _ = lab.clear_handset(&phone).await;
    b.close().await;
    assert_eq!(shown.outcome, "succeeded", "{shown:?} ({})", shot.display());
    assert_eq!(shown.title, "Payment successful", "{shown:?}");
    // The call takes many seconds: the stream was tried again meanwhile.
    assert!(
        opened.as_i64().unwrap_or(0) >= 2,
        "streams opened: {opened}"
    );
}

/// The handset keys a wrong PIN three times: the page (in English) says
/// the payment failed and why, in words.
#[tokio::test]
async fn a_wrong_pin_shows_the_failure_reason_in_words() {
    let Some((lab, app, phone, b)) = demo_page_with_handset(
        "en",
        "answer=1;delay=1;keys=1wwww111111WWWWWWWW222222WWWWWWWW333333;hold=40",
    )
    .await
    else {
        return;
    };
    click(&b, ".card-btn").await;
    type_into(&b, "#phone", &phone).await;
    click(&b, "#pay").await;
    let shown = wait_for_result(&b, "wrong-pin-en").await;
    println!(
        "seen while waiting: {:?} {:?}",
        shown.seen_active, shown.seen_notices
    );
    let shot = b.screenshot("wrong-pin-en").await.expect("screenshot");
    let _ = lab.clear_handset(&phone).await;
    // The language toggle turns the same result into Chinese.
    click(&b, "#lang-toggle").await;
    let in_zh = b.client.execute(READ_RESULT, vec![]).await.expect("script");
    b.close().await;
    assert_eq!(in_zh["title"], "支付失败", "{in_zh}");
    assert_eq!(
        in_zh["reason"], "今日密码或卡片信息错误次数过多，该卡今日已暂停语音支付，请明天再试。",
        "{in_zh}"
    );

    assert_eq!(shown.outcome, "failed", "{shown:?} ({})", shot.display());
    assert_eq!(shown.title, "Payment failed", "{shown:?}");
    assert_eq!(
        shown.reason,
        "Too many wrong PINs or card details today: payments by phone with this card are locked until tomorrow.",
        "{shown:?}"
    );
    assert!(shown.steps.contains(&"fail".to_string()), "{shown:?}");
    // While the call went on, the page said to key the PIN again.
    assert!(
        shown
            .seen_notices
            .iter()
            .any(|n| n == "Wrong PIN: key it again on the phone."),
        "{shown:?}"
    );
    assert_eq!(
        stored_outcome(&app, &phone).await,
        [("failed".into(), Some("pin_tries_exceeded".into()))]
    );
}

// --- plain HTTP: no browser, no Asterisk ------------------------------------

/// One parsed SSE event: (id, event name, data).
fn parse_sse(body: &str) -> Vec<(i64, String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let (mut id, mut event, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str(v.trim()).ok();
                }
            }
            Some((id?, event?, data?))
        })
        .collect()
}

/// The demo merchant's key, derived as the daemon derives it.
fn demo_key(app: &TestApp) -> String {
    let ring = voicepay::crypto::KeyRing::load(&app.settings.crypto).expect("keys");
    let vault = voicepay::crypto::Vault::new(&ring);
    format!(
        "vpk_demo_{}",
        vault.fingerprint("demo_api_key", voicepay::demo::MERCHANT_ID)
    )
}

/// The page at `path` for a browser that sends `accept_language`.
async fn page_for(app: &TestApp, path: &str, accept_language: &str) -> String {
    app.http
        .get(app.demo_url(path))
        .header("Accept-Language", accept_language)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_demo_is_off_by_default() {
    let app = spawn_app(Db::Sqlite).await.expect("app");
    assert!(app.demo_base.is_none(), "no demo listener");
    assert_eq!(
        app.http
            .get(app.url("/demo"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let post = app
        .http
        .post(app.url("/demo/api/orders"))
        .json(&json!({"amount": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 404);
    assert_eq!(app.count("merchants").await, 1, "no demo merchant");
}

#[tokio::test]
async fn the_page_is_self_contained_and_holds_no_key() {
    let app = spawn_app_with(Db::Sqlite, |s| s.demo.enabled = true)
        .await
        .expect("app");
    let key = demo_key(&app);
    // The key is real (it places orders), and the page does not carry it.
    let probe = app.get("/v1/bindings?phone=13800138000", &key).await;
    assert_eq!(
        probe.status(),
        200,
        "the derived demo key is not the daemon's"
    );

    let res = app.http.get(app.demo_url("/demo")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    let page = res.text().await.unwrap();
    assert!(!page.contains(&key), "the API key is in the page");
    assert!(!page.contains("vpk_"), "an API key is in the page");
    assert!(page.contains("<html lang=\"zh\">"));
    assert!(page.contains(CARD), "the test cards are one click away");
    for external in ["http://", "https://", "src=\""] {
        assert!(!page.contains(external), "the page loads {external}…");
    }

    let en = page_for(&app, "/demo", "en-GB,en;q=0.9,zh;q=0.5").await;
    assert!(en.contains("<html lang=\"en\">"));
    let chosen = page_for(&app, "/demo?lang=zh", "en").await;
    assert!(chosen.contains("<html lang=\"zh\">"));
}

#[tokio::test]
async fn the_backend_places_orders_and_relays_the_resumable_stream() {
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.demo.enabled = true;
        s.http.events_poll_ms = 50;
    })
    .await
    .expect("app");
    let session = app.demo().await;
    let phone = phone();
    let res = session
        .place(&json!({"amount": 12345, "phone": phone, "language": "en",
                       "card_number": CARD, "id_number": ID_NUMBER}))
        .await;
    assert_eq!(res.status(), 201);
    let text = res.text().await.unwrap();
    assert!(
        !text.contains(CARD) && !text.contains(ID_NUMBER) && !text.contains("vpk_"),
        "{text}"
    );
    let order: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(order["card"]["masked"], "622200******0017");
    assert_eq!(order["mode"], "callback");
    let id = order["id"].as_str().unwrap().to_string();
    let owner: String = sqlx::query_scalar("SELECT merchant_id FROM orders WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(owner, "mch_demo");

    // The shop cancels; the relayed stream then has both events and ends.
    let cancel = app
        .post_json(
            &format!("/v1/orders/{id}/cancel"),
            &demo_key(&app),
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status(), 200);
    let stream = |last: Option<i64>| {
        let mut req = session.request(
            reqwest::Method::GET,
            &format!("/demo/api/orders/{id}/events"),
        );
        if let Some(last) = last {
            req = req.header("Last-Event-ID", last.to_string());
        }
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
            let body = tokio::time::timeout(Duration::from_secs(60), res.text())
                .await
                .expect("the stream of a final order ends")
                .unwrap();
            parse_sse(&body)
        }
    };
    let all = stream(None).await;
    let names: Vec<&str> = all.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(names, ["pending", "cancelled"], "{all:?}");
    assert_eq!(all[1].2["result_code"], "merchant_cancelled");
    let rest = stream(Some(all[0].0)).await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].0, all[1].0);

    // The API's own errors come back, field by field.
    let bad = session
        .place(&json!({"amount": 12345, "phone": "12345", "language": "zh",
                      "card_number": "6222000000000018", "id_number": ID_NUMBER}))
        .await;
    assert_eq!(bad.status(), 422);
    let err: Value = bad.json().await.unwrap();
    let fields: Vec<&str> = err["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"card_number") && fields.contains(&"phone"),
        "{err}"
    );
    let unbound = session
        .place(&json!({"amount": 100, "phone": "13600139999", "language": "zh"}))
        .await;
    assert_eq!(unbound.status(), 422);
    assert_eq!(
        unbound.json::<Value>().await.unwrap()["error"]["code"],
        "no_binding"
    );
    // Only the form's fields pass: no merchant order id, no mode.
    let extra = session
        .place(&json!({"amount": 100, "phone": phone, "language": "zh", "mode": "transfer"}))
        .await;
    assert_eq!(extra.status(), 400);
    // Another merchant's order is not reachable through the demo.
    let other = app
        .create_order(&order_body("NOTDEMO1"))
        .await
        .json::<Value>()
        .await
        .unwrap();
    let other_id = other["id"].as_str().unwrap();
    let res = session.get(&format!("/demo/api/orders/{other_id}")).await;
    assert_eq!(res.status(), 404);
}
