//! The two Local-channel legs of an assisted call on the lab Asterisk
//! (`dialplan/lab.conf`: `voicepay-lab-assisted-merchant`, `-phone`,
//! `-agent`), shared by the real-Asterisk and the Chromium tests.

use super::{unique, Lab, Originate};

/// What the cardholder's lab phone does (inherited channel variables of
/// `voicepay-lab-assisted-phone`): keys `pre` and plays the tones file
/// `pre_tones` (before any capture), sets `LAB_PRE_DONE_<code>`, waits
/// `delay` seconds, keys `1`, waits 4 s, plays `key_tones` and keys `keys`,
/// stays 15 s and hangs up. Tones files are paths without `.wav`.
pub struct HolderScript<'a> {
    pub pre: &'a str,
    pub pre_tones: &'a str,
    pub delay_secs: u32,
    pub key_tones: &'a str,
    pub keys: &'a str,
}

/// Clears the call's lab globals (`LAB_PRE_DONE_`, `LAB_AGENT_HEARD_`,
/// `LAB_AGENT_RESULT_`, `LAB_RESULT_` + `code`), then originates the agent's
/// leg (recorded with MixMonitor to `recording`.wav, collecting the keys it
/// hears) and the cardholder's leg on `phone`, both into
/// `Stasis(<app>,assisted,<code>,…)` through the merchant's lab context.
///
/// # Panics
/// When Asterisk refuses a global or an originate (a test helper).
pub async fn originate_legs(
    lab: &Lab,
    app: &str,
    code: &str,
    phone: &str,
    recording: &str,
    holder: &HolderScript<'_>,
) {
    for g in [
        "LAB_PRE_DONE_",
        "LAB_AGENT_HEARD_",
        "LAB_AGENT_RESULT_",
        "LAB_RESULT_",
    ] {
        lab.set_global(&format!("{g}{code}"), "").await.unwrap();
    }
    let agent = Originate::to_dialplan(
        format!("Local/{}@voicepay-lab-assisted-agent", &phone[3..]),
        "voicepay-lab-assisted-merchant",
        "agentdesk",
        &unique("agent"),
    )
    .var("LAB_TRANSFER_CODE", code)
    .var("VOICEPAY_APP", app)
    .var("LAB_RECORDING", recording)
    .var("__LAB_CODE", code)
    .var("__LAB_HOLD", "60")
    .timeout(10);
    lab.originate(&agent).await.expect("the agent's leg");
    let delay = holder.delay_secs.to_string();
    let phone_leg = Originate::to_dialplan(
        format!("Local/{phone}@voicepay-lab-assisted-phone"),
        "voicepay-lab-assisted-merchant",
        "assisted",
        &unique("holder"),
    )
    .var("LAB_TRANSFER_CODE", code)
    .var("VOICEPAY_APP", app)
    .var("__LAB_CODE", code)
    .var("__LAB_PRE", holder.pre)
    .var("__LAB_PRE_TONES", holder.pre_tones)
    .var("__LAB_DELAY", &delay)
    .var("__LAB_CONFIRM", "1")
    .var("__LAB_GAP", "4")
    .var("__LAB_KEY_TONES", holder.key_tones)
    .var("__LAB_KEYS", holder.keys)
    .var("__LAB_HOLD", "15")
    .timeout(10);
    lab.originate(&phone_leg)
        .await
        .expect("the cardholder's leg");
}
