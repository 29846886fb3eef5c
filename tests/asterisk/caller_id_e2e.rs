//! Caller IDs as carriers present them, through the real Asterisk 22
//! (issue #12, fault 4): the handset dials the access number
//! (`voicepay-inbound`) presenting its number with the national trunk
//! prefix `0`, or no number at all (`anonymous`). Either way the caller
//! keys the order code and pays; the prefixed number is the order's phone,
//! the withheld one is identified by the code alone.
//!
//! Needs `scripts/asterisk up` (and `set -a; . scripts/lab.env; set +a`);
//! skips without Asterisk, fails under `CI=true`.

use super::transfer_inbound_e2e::{daemon, dial_in, order, phone, wait_app};
use voicepay_testkit::lab;
use voicepay_testkit::lab::secs;

#[tokio::test]
async fn inbound_callers_with_a_trunk_prefix_or_no_number_pay_by_order_code() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let name = lab::unique("vp-cid");
    let app = daemon(&name).await;
    wait_app(&lab, &name).await;
    for presented in ["0{phone}", "\"Anonymous\" <anonymous>"] {
        let phone = phone();
        let created = order(&app, &phone, "inbound").await;
        let id = created["id"].as_str().expect("id");
        let code = created["order_code"].as_str().expect("order_code");
        lab.script_handset(
            &phone,
            &format!("answer=0;delay=2;keys={code}WWW1wwww805137;hold=40"),
        )
        .await
        .expect("script");
        dial_in(&lab, &name, &phone, &presented.replace("{phone}", &phone)).await;
        let v = app.final_view(id, secs(60)).await;
        let _ = lab.clear_handset(&phone).await;
        assert_eq!(v["status"], "succeeded", "{presented}: {v:#}");
        assert_eq!(v["result"]["code"], "approved", "{presented}: {v:#}");
    }
}
