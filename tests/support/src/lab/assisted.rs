//! The two Local-channel legs of an assisted call on the lab Asterisk
//! (`dialplan/lab.conf`: `voicepay-lab-assisted-merchant`, `-phone`,
//! `-agent`), shared by the real-Asterisk and the Chromium tests.

use super::{unique, Lab, Originate};
use crate::wait_for;
use std::path::PathBuf;
use std::time::Duration;

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

/// Where a file Asterisk sees at `path` is on this host: under the lab's
/// chroot (`VOICEPAY_ASTERISK_ROOT`, default `/var/cache/voicepay/asterisk-sid`)
/// unless Asterisk runs on the host.
pub fn host_path(path: &str) -> PathBuf {
    let root = std::env::var("VOICEPAY_ASTERISK_ROOT")
        .unwrap_or_else(|_| "/var/cache/voicepay/asterisk-sid".into());
    let chroot = std::env::var("VOICEPAY_ASTERISK_USE_CHROOT").as_deref() == Ok("1")
        || std::process::Command::new("asterisk")
            .arg("-V")
            .output()
            .is_err();
    if chroot {
        PathBuf::from(format!("{root}{path}"))
    } else {
        PathBuf::from(path)
    }
}

/// `samples` as a WAV file (8 kHz, 16-bit PCM, mono), as the lab phones
/// play them.
pub fn pcm_wav(samples: &[i16]) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk length
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16000u32.to_le_bytes()); // bytes a second
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    wav
}

/// The lab global `name` once the dialplan has set it (not empty), waiting
/// at most `within`.
///
/// # Panics
/// When Asterisk refuses the read, or `name` stays unset (a test helper).
pub async fn global_set(lab: &Lab, name: &str, within: Duration) -> String {
    wait_for(within, async || {
        let v = lab.global(name).await.expect("global");
        if v.is_empty() {
            Err(format!("{name} still unset"))
        } else {
            Ok(v)
        }
    })
    .await
}
