//! Caller IDs as carriers present them, through the real Asterisk 22
//! (issue #12, fault 4): the handset dials the access number
//! (`voicepay-inbound`) presenting its number with the national trunk
//! prefix `0`, or no number at all (`anonymous`). Either way the caller
//! keys the order code and pays; the prefixed number is the order's phone,
//! the withheld one is identified by the code alone.
//!
//! Needs `scripts/asterisk up` (and `set -a; . scripts/lab.env; set +a`);
//! skips without Asterisk, fails under `CI=true`.

use super::transfer_inbound_e2e::{daemon, pay_inbound, phone, wait_app};
use voicepay_testkit::lab;

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
        let caller_id = presented.replace("{phone}", &phone);
        let (_, v) = pay_inbound(&lab, &app, &name, &phone, &caller_id).await;
        assert_eq!(v["status"], "succeeded", "{presented}: {v:#}");
        assert_eq!(v["result"]["code"], "approved", "{presented}: {v:#}");
    }
}
