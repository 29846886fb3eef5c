//! The assisted flow (issue #16) on the real lab Asterisk 22: the
//! cardholder's and the agent's legs (lab phones behind Local channels,
//! dialplan/lab.conf "Assisted payments") in voicepay's bridge. Before the
//! capture the cardholder keys `42` (DTMF frames) and plays the same keys as
//! tones in its audio: the agent must get both (the test's control: its
//! phone collects the keys it receives, and `multimon-ng` decodes the
//! tones in the agent's recording). During the capture the cardholder keys
//! `1` and the PIN the same two ways: the order pays, and the agent gets
//! neither a key nor a tone of it.
//!
//! What this proves on Asterisk itself: a bridge member re-added with
//! `absorbDTMF` keeps its keys from the other member while our app still
//! hears them, a channel muted `in` (and added with `mute`) sends the bridge
//! silence, and the prompts played to the cardholder's channel do not reach
//! the agent's recording as key tones. The RTP-level proof with two SIP
//! legs (telephone-event packets at the agent's leg) is
//! `assisted_sip_e2e.rs`. Needs `scripts/asterisk up` and `multimon-ng`
//! (`scripts/lib.sh ensure_multimon`); skips without them, except under
//! `CI=true`.

use super::transfer_inbound_e2e::{daemon, phone, wait_app};
use serde_json::Value;
use voicepay_testkit::lab::assisted::{global_set, host_path};
use voicepay_testkit::lab::{self, secs};
use voicepay_testkit::{wait_for, TestApp};

/// DTMF frequency pairs (Hz), ITU-T Q.23.
pub(super) fn dtmf_pair(key: char) -> (f64, f64) {
    let row = match key {
        '1' | '2' | '3' => 697.0,
        '4' | '5' | '6' => 770.0,
        '7' | '8' | '9' => 852.0,
        _ => 941.0,
    };
    let col = match key {
        '1' | '4' | '7' | '*' => 1209.0,
        '2' | '5' | '8' | '0' => 1336.0,
        _ => 1477.0,
    };
    (row, col)
}

/// A WAV (8 kHz, 16-bit mono) of `keys` as tones: 150 ms each, 250 ms apart.
fn tones_wav(keys: &str) -> Vec<u8> {
    let rate = 8000.0;
    let mut samples: Vec<i16> = vec![0; 800];
    for key in keys.chars() {
        let (a, b) = dtmf_pair(key);
        for i in 0..1200 {
            let t = f64::from(i) / rate;
            let v = 7000.0
                * ((2.0 * std::f64::consts::PI * a * t).sin()
                    + (2.0 * std::f64::consts::PI * b * t).sin());
            samples.push(v as i16);
        }
        samples.extend(std::iter::repeat_n(0, 2000));
    }
    lab::assisted::pcm_wav(&samples)
}

/// The 16-bit samples of a PCM WAV and its rate.
fn wav_samples(wav: &[u8]) -> (Vec<i16>, u32) {
    assert_eq!(&wav[0..4], b"RIFF", "not a WAV");
    let mut at = 12;
    let mut rate = 8000;
    while at + 8 <= wav.len() {
        let id = &wav[at..at + 4];
        let len = u32::from_le_bytes(wav[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &wav[at + 8..(at + 8 + len).min(wav.len())];
        if id == b"fmt " {
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
            assert_eq!(u16::from_le_bytes(body[14..16].try_into().unwrap()), 16);
        } else if id == b"data" {
            let s = body
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (s, rate);
        }
        at += 8 + len + (len & 1);
    }
    panic!("no data chunk");
}

/// The keys `multimon-ng`'s DTMF decoder finds in a recording (resampled
/// to the 22 050 Hz raw input it reads).
fn decoded_keys(wav: &[u8]) -> String {
    let (samples, rate) = wav_samples(wav);
    decoded_samples_keys(&samples, rate)
}

/// The keys `multimon-ng`'s DTMF decoder finds in 16-bit mono `samples`
/// at `rate` Hz.
pub(super) fn decoded_samples_keys(samples: &[i16], rate: u32) -> String {
    if samples.is_empty() {
        return String::new();
    }
    let ratio = f64::from(rate) / 22050.0;
    let n = (samples.len() as f64 / ratio) as usize;
    let mut raw = Vec::with_capacity(n * 2);
    for j in 0..n {
        let x = j as f64 * ratio;
        let i = x as usize;
        let f = x - i as f64;
        let a = f64::from(samples[i]);
        let b = f64::from(*samples.get(i + 1).unwrap_or(&samples[i]));
        raw.extend_from_slice(&((a * (1.0 - f) + b * f) as i16).to_le_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.raw");
    std::fs::write(&path, raw).unwrap();
    let out = std::process::Command::new("multimon-ng")
        .args(["-q", "-t", "raw", "-a", "DTMF"])
        .arg(&path)
        .output()
        .expect("multimon-ng runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("DTMF: "))
        .collect()
}

/// Asks for the capture until both legs are in the bridge (409
/// `capture_not_ready` before).
async fn capture(app: &TestApp, id: &str) {
    wait_for(secs(45), async || {
        let res = app
            .http
            .post(app.url(&format!("/v1/orders/{id}/capture")))
            .bearer_auth(&app.api_key)
            .send()
            .await
            .unwrap();
        match res.status().as_u16() {
            202 => Ok(()),
            s => Err(format!(
                "capture answered {s}: {}",
                res.text().await.unwrap()
            )),
        }
    })
    .await
}

#[tokio::test]
async fn the_agent_gets_no_key_and_no_tone_of_the_capture() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    if std::process::Command::new("multimon-ng")
        .arg("-h")
        .output()
        .is_err()
    {
        assert!(!lab::under_ci(), "CI=true but multimon-ng is missing");
        eprintln!("skipping: multimon-ng is missing (scripts/lib.sh ensure_multimon)");
        return;
    }
    let _log = lab::log_window().await;
    let name = lab::unique("vp-as");
    let app = daemon(&name).await;
    wait_app(&lab, &name).await;
    let phone = phone();
    let created = super::common::order(&app, &phone, super::common::DEBIT, "assisted").await;
    let id = created["id"].as_str().expect("id").to_owned();
    let code = created["transfer_code"].as_str().expect("code").to_owned();
    let files = format!("/tmp/vp-assisted-{code}");
    for (name, keys) in [("pre", "42"), ("keys", "805137")] {
        std::fs::write(host_path(&format!("{files}-{name}.wav")), tones_wav(keys)).unwrap();
    }
    let recording = format!("{files}-agent");
    let (pre_tones, key_tones) = (format!("{files}-pre"), format!("{files}-keys"));
    let holder = lab::assisted::HolderScript {
        pre: "42",
        pre_tones: &pre_tones,
        delay_secs: 4,
        key_tones: &key_tones,
        keys: "805137",
    };
    lab::assisted::originate_legs(&lab, &name, &code, &phone, &recording, &holder).await;
    // Keys and tones before the capture reach the agent (the control).
    global_set(&lab, &format!("LAB_PRE_DONE_{code}"), secs(30)).await;
    capture(&app, &id).await;
    let v = app.final_view(&id, secs(60)).await;
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    // The cardholder hangs up after its hold: the agent goes back.
    let back = global_set(&lab, &format!("LAB_AGENT_RESULT_{code}"), secs(60)).await;
    assert_eq!(back, "success:approved");
    let heard = lab
        .global(&format!("LAB_AGENT_HEARD_{code}"))
        .await
        .unwrap();
    assert_eq!(heard, "42", "the agent's phone received these keys");
    let wav = wait_for(secs(20), async || {
        std::fs::read(host_path(&format!("{recording}.wav")))
            .map_err(|e| format!("no recording yet: {e}"))
    })
    .await;
    assert_eq!(
        decoded_keys(&wav),
        "42",
        "multimon-ng found these keys in what the agent heard"
    );
    let progress: Vec<Value> = sqlx::query_scalar::<_, String>(
        "SELECT detail FROM order_events WHERE order_id = $1 AND kind = 'capture' ORDER BY id",
    )
    .bind(&id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
    .iter()
    .map(|d| serde_json::from_str(d).unwrap())
    .collect();
    assert!(
        progress.iter().any(|p| p["step"] == "authorizing"),
        "{progress:#?}"
    );
    for g in [
        "LAB_PRE_DONE_",
        "LAB_AGENT_HEARD_",
        "LAB_AGENT_RESULT_",
        "LAB_RESULT_",
    ] {
        let _ = lab.set_global(&format!("{g}{code}"), "").await;
    }
    for f in ["pre.wav", "keys.wav", "agent.wav"] {
        let _ = std::fs::remove_file(host_path(&format!("{files}-{f}")));
    }
}
