//! The assisted flow (issue #16) with two SIP legs on the real lab
//! Asterisk 22: SIPp UAs on 127.0.0.6 (endpoint `assisted-lab`,
//! asterisk-conf/lab/pjsip.conf) call `ch<code>` (the cardholder) and
//! `ag<code>` (the agent); dialplan/lab.conf `voicepay-lab-assisted-sip`
//! sends each into `Stasis(voicepay,assisted,<code>,cardholder|agent)`.
//!
//! The cardholder's SIPp plays one RTP stream (PCMU audio with the keys as
//! in-band tones, and RFC 4733 telephone-events, payload type 101): before
//! the capture it plays `42` as tones, then keys `42` as events (the
//! control: the agent must receive both, so the test can fail); during the
//! capture it keys `1` (confirm), then plays the PIN as tones and keys it as
//! events. The order must pay, and the agent's leg must receive neither a
//! telephone-event packet nor a tone `multimon-ng` decodes in that time.
//!
//! How the agent's leg is recorded: its SDP names a UDP socket this test
//! binds on 127.0.0.6 as its media address (the endpoint has no symmetric
//! RTP, so Asterisk sends there), and the test keeps every packet with its
//! arrival time. That needs no privilege (tcpdump or a raw socket would
//! need CAP_NET_RAW, and the lab has no tcpdump) and SIPp 3.6 has no way to
//! record what it receives (`-rtp_echo` only echoes). The PCMU payloads are
//! decoded (G.711 µ-law, below) and fed to `multimon-ng`.
//!
//! Needs `scripts/asterisk up`, SIPp and `multimon-ng`; skips without them,
//! except under `CI=true`.

use super::assisted_e2e::{decoded_samples_keys, dtmf_pair};
use super::transfer_inbound_e2e::{daemon, phone, wait_app};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use voicepay_testkit::lab::{self, secs, Lab};
use voicepay_testkit::sipp::{self, rtp_pcap, Sipp};
use voicepay_testkit::{wait_for, TestApp};

/// Where both SIPp legs and the agent's media socket live.
const LEG_IP: &str = "127.0.0.6";
const PCMU: u8 = 0;
const TELEPHONE_EVENT: u8 = 101;

/// One stretch of the cardholder's recording.
enum Part {
    /// Silence (PCMU), this many milliseconds.
    Quiet(u32),
    /// Keys as in-band tones in the audio: 160 ms each, 240 ms apart.
    Tones(&'static str),
    /// Keys as RFC 4733 events (no audio meanwhile): 160 ms each, then
    /// three end packets, 240 ms of silence after each.
    Keys(&'static str),
}

/// G.711 µ-law of one 16-bit sample (ITU-T G.711, the "bias 0x84" form).
fn ulaw(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(32635) + 0x84;
    let mut exp = 7;
    let mut mask = 0x4000;
    while exp > 0 && s & mask == 0 {
        exp -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exp + 3)) & 0x0f;
    !((sign | (exp << 4) | mantissa) as u8)
}

/// The 16-bit sample of one G.711 µ-law byte.
fn unulaw(byte: u8) -> i16 {
    let u = !byte;
    let exp = (u >> 4) & 7;
    let s = (((i32::from(u & 0x0f)) << 3) + 0x84) << exp;
    let s = s - 0x84;
    (if u & 0x80 != 0 { -s } else { s }) as i16
}

/// The cardholder's RTP packets `(at_ms, bytes)`: one stream (one SSRC,
/// sequence numbers through the whole call), audio every 20 ms except
/// while an event is keyed.
fn cardholder_stream(parts: &[Part]) -> Vec<(u32, Vec<u8>)> {
    let mut st = Stream {
        out: Vec::new(),
        now: 0,
        seq: 0x2000,
    };
    for part in parts {
        match part {
            Part::Quiet(ms) => st.audio(&vec![0; (*ms * 8) as usize]),
            Part::Tones(keys) => {
                for key in keys.chars() {
                    let (a, b) = dtmf_pair(key);
                    let tone: Vec<i16> = (0..1280)
                        .map(|i| {
                            let t = f64::from(i) / 8000.0;
                            (7000.0
                                * ((2.0 * std::f64::consts::PI * a * t).sin()
                                    + (2.0 * std::f64::consts::PI * b * t).sin()))
                                as i16
                        })
                        .collect();
                    st.audio(&tone);
                    st.audio(&[0; 1920]);
                }
            }
            Part::Keys(keys) => {
                for key in keys.chars() {
                    let event = key.to_digit(10).expect("a digit") as u8;
                    let ts = st.now * 8;
                    for i in 0..8u16 {
                        let d = (i * 160).to_be_bytes();
                        st.push(
                            st.now,
                            TELEPHONE_EVENT,
                            i == 0,
                            ts,
                            &[event, 10, d[0], d[1]],
                        );
                        st.now += 20;
                    }
                    let d = 1280u16.to_be_bytes();
                    for i in 0..3 {
                        st.push(
                            st.now + i * 2,
                            TELEPHONE_EVENT,
                            false,
                            ts,
                            &[event, 0x8a, d[0], d[1]],
                        );
                    }
                    st.audio(&[0; 1920]);
                }
            }
        }
    }
    st.out
}

/// The cardholder's RTP stream while it is written.
struct Stream {
    out: Vec<(u32, Vec<u8>)>,
    /// Milliseconds from the answer.
    now: u32,
    seq: u16,
}

impl Stream {
    /// One RTP packet sent at `at` ms: payload type, marker bit, RTP
    /// timestamp (8 kHz units from the start), payload.
    fn push(&mut self, at: u32, pt: u8, marker: bool, ts: u32, payload: &[u8]) {
        let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&(0x8000 + ts).to_be_bytes());
        p.extend_from_slice(&0x5A1F_0C0Bu32.to_be_bytes());
        p.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.out.push((at, p));
    }

    /// `samples` (8 kHz) as PCMU packets of 20 ms from now on.
    fn audio(&mut self, samples: &[i16]) {
        for chunk in samples.chunks(160) {
            let bytes: Vec<u8> = chunk.iter().map(|s| ulaw(*s)).collect();
            self.push(self.now, PCMU, false, self.now * 8, &bytes);
            self.now += 20;
        }
    }
}

/// One RTP packet the agent's leg received, and when.
struct Received {
    at: Instant,
    rtp: Vec<u8>,
}

impl Received {
    fn payload_type(&self) -> u8 {
        self.rtp[1] & 0x7f
    }

    /// The event of an RFC 4733 end packet (E bit), if this is one.
    fn event_end(&self) -> Option<u8> {
        let p = self.rtp.get(12..16)?;
        (self.payload_type() == TELEPHONE_EVENT && p[1] & 0x80 != 0).then_some(p[0])
    }
}

/// Binds the agent's media socket and records every packet it receives.
async fn agent_media() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let socket = tokio::net::UdpSocket::bind((LEG_IP, 0))
        .await
        .expect("a socket on 127.0.0.6");
    let port = socket.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok(n) = socket.recv(&mut buf).await {
            if n >= 12 {
                keep.lock().unwrap().push(Received {
                    at: Instant::now(),
                    rtp: buf[..n].to_vec(),
                });
            }
        }
    });
    (port, got)
}

/// What the agent received in a stretch: the events that ended, the keys
/// `multimon-ng` hears in its PCMU audio, its audio packet count and the
/// packets of any other payload type.
fn heard(packets: &[&Received]) -> (Vec<u8>, String, usize, usize) {
    let ends: Vec<u8> =
        packets
            .iter()
            .filter_map(|p| p.event_end())
            .fold(Vec::new(), |mut v, e| {
                if v.last() != Some(&e) {
                    v.push(e);
                }
                v
            });
    let audio: Vec<&&Received> = packets
        .iter()
        .filter(|p| p.payload_type() == PCMU)
        .collect();
    let samples: Vec<i16> = audio
        .iter()
        .flat_map(|p| p.rtp[12..].iter().map(|b| unulaw(*b)))
        .collect();
    let other = packets.len() - audio.len();
    (
        ends,
        decoded_samples_keys(&samples, 8000),
        audio.len(),
        other,
    )
}

/// Asks for the capture until both legs are in the bridge; returns when
/// the request that was accepted (202) was sent.
async fn capture(app: &TestApp, id: &str) -> Instant {
    wait_for(secs(20), async || {
        let sent = Instant::now();
        let res = app
            .http
            .post(app.url(&format!("/v1/orders/{id}/capture")))
            .bearer_auth(&app.api_key)
            .send()
            .await
            .unwrap();
        match res.status().as_u16() {
            202 => Ok(sent),
            s => Err(format!(
                "capture answered {s}: {}",
                res.text().await.unwrap()
            )),
        }
    })
    .await
}

fn tools_missing() -> bool {
    if sipp::require_sipp().is_none() {
        return true;
    }
    if std::process::Command::new("multimon-ng")
        .arg("-h")
        .output()
        .is_err()
    {
        assert!(!lab::under_ci(), "CI=true but multimon-ng is missing");
        eprintln!("skipping: multimon-ng is missing (scripts/lib.sh ensure_multimon)");
        return true;
    }
    false
}

async fn agent_result(lab: &Lab, code: &str) -> String {
    let name = format!("LAB_AGENT_RESULT_{code}");
    wait_for(secs(60), async || match lab.global(&name).await {
        Ok(v) if !v.is_empty() => Ok(v),
        other => Err(format!("{name}: {other:?}")),
    })
    .await
}

#[tokio::test]
async fn the_agents_sip_leg_gets_no_event_and_no_tone_of_the_capture() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    if tools_missing() {
        return;
    }
    let _log = lab::log_window().await;
    let name = lab::unique("vp-as-sip");
    let app = daemon(&name).await;
    wait_app(&lab, &name).await;
    let created = super::common::order(&app, &phone(), super::common::DEBIT, "assisted").await;
    let id = created["id"].as_str().expect("id").to_owned();
    let code = created["transfer_code"].as_str().expect("code").to_owned();
    lab.set_global(&format!("LAB_AGENT_RESULT_{code}"), "")
        .await
        .unwrap();

    let (rtp_port, received) = agent_media().await;
    let agent = Sipp::uac("uac_assisted_agent.xml", &format!("ag{code}"))
        .from_ip(LEG_IP)
        .ports(5082, 16040)
        .set("app", &name)
        .set("rtp_port", &rtp_port.to_string())
        .timeout(secs(90))
        .spawn()
        .expect("the agent's SIPp");
    // No head start needed: the capture is refused (409) until both legs
    // are in the bridge, and `capture` asks again until then.
    let stream = cardholder_stream(&[
        Part::Quiet(1000),
        Part::Tones("42"),
        Part::Quiet(500),
        Part::Keys("42"),
        // The capture is requested meanwhile.
        Part::Quiet(6000),
        Part::Keys("1"),
        // The PIN prompt ends.
        Part::Quiet(5000),
        Part::Tones("805137"),
        Part::Keys("805137"),
        // Back in the bridge, unmuted: the agent hears the cardholder again.
        Part::Quiet(8000),
    ]);
    let cardholder = Sipp::uac("uac_assisted_cardholder.xml", &format!("ch{code}"))
        .from_ip(LEG_IP)
        .ports(5080, 16030)
        .set("app", &name)
        .recording(rtp_pcap(&stream))
        .timeout(secs(90))
        .spawn()
        .expect("the cardholder's SIPp");

    // The control: the pre-capture key events reach the agent (else the
    // SIPp logs say why).
    let deadline = Instant::now() + secs(30);
    while !received
        .lock()
        .unwrap()
        .iter()
        .any(|p| p.event_end() == Some(2))
    {
        if Instant::now() > deadline {
            let n = received.lock().unwrap().len();
            let a = agent.finish(secs(1)).await;
            let c = cardholder.finish(secs(1)).await;
            panic!(
                "{n} packets at the agent, no end of key 2:\n{}\n{}",
                a.log, c.log
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let started = capture(&app, &id).await;
    let v = app.final_view(&id, secs(60)).await;
    let ended = Instant::now();
    // The cardholder hangs up 30 s into its call: the agent goes back.
    let agent_back = agent_result(&lab, &code).await;
    let cardholder = cardholder.finish(secs(40)).await;
    let agent = agent.finish(secs(20)).await;

    let got = received.lock().unwrap();
    let before: Vec<&Received> = got.iter().filter(|p| p.at < started).collect();
    let during: Vec<&Received> = got
        .iter()
        .filter(|p| p.at >= started && p.at <= ended)
        .collect();
    let (ends, tones, _, _) = heard(&before);
    assert_eq!(
        ends,
        [4, 2],
        "telephone-events the agent received before the capture"
    );
    assert_eq!(
        tones, "42",
        "multimon-ng in the agent's audio before the capture"
    );
    let (ends, tones, audio, other) = heard(&during);
    eprintln!("during the capture the agent received {audio} PCMU packets and {other} others");
    assert!(ends.is_empty(), "the agent received key events {ends:?}");
    assert_eq!(
        other, 0,
        "the agent received non-audio RTP during the capture"
    );
    assert_eq!(tones, "", "multimon-ng heard keys in the agent's audio");
    // After the capture the cardholder is back in the bridge, unmuted: its
    // audio reaches the agent's leg again (the leg was live all along;
    // while the cardholder is muted the bridge sends the agent nothing,
    // which it plays as silence).
    let after = got
        .iter()
        .filter(|p| p.at > ended && p.payload_type() == PCMU)
        .count();
    eprintln!("after the capture the agent received {after} PCMU packets");
    assert!(after > 0, "no audio reached the agent after the capture");
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    assert_eq!(agent_back, "success:approved");
    cardholder.assert_ok();
    agent.assert_ok();
}
