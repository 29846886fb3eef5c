//! SIPp as the lab carrier: the real SIP trunk path (`PJSIP/{phone}@carrier`,
//! asterisk-conf/lab/pjsip.conf) and the access number reached from the
//! carrier's address, against the real Asterisk 22 lab.
//!
//! ```text
//! let Some(sipp) = sipp::require_sipp() else { return };
//! let _carrier = sipp::carrier().await;          // one SIPp owns 127.0.0.3:5060
//! let run = Sipp::uas("uas_answer.xml")
//!     .keys(KeyPresses::parse("W1WW805137")?)    // RFC 4733 events after answer
//!     .spawn()?;
//! // … create the order; Asterisk calls 127.0.0.3:5060 …
//! run.finish(secs(60)).await.assert_ok();
//! ```
//!
//! Scenarios are the XML files under `tests/sipp/`. A scenario that keys
//! digits plays `keys.pcap` (a relative path: SIPp runs in the run's own
//! temporary folder, where [`Sipp::keys`] writes the recording), because
//! SIPp reads `play_pcap_audio` files when it loads the scenario, so the
//! file name cannot come from a `-set` variable.
//!
//! Why the recordings are written here rather than played from
//! `/usr/share/sip-tester/dtmf_2833_*.pcap`: those carry unordered RTP
//! timestamps and sequence numbers (one file per key), and Asterisk drops an
//! event whose timestamp is older than the last one it saw, so a PIN played
//! from them arrives cut short (LAB-NOTES.md). [`KeyPresses`] builds one
//! recording for a whole call, with sequence numbers and timestamps that
//! increase through it (RFC 4733 section 2.5: one timestamp per event, the
//! duration growing, three end packets with the E bit).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, MutexGuard};

use crate::lab::{event_channel_id, lab_setting, under_ci, App, Lab};

/// The lab carrier's signalling and media address
/// (`VOICEPAY_CARRIER_ADDRESSES`; the `carrier` AOR's contact).
pub const CARRIER_IP: &str = "127.0.0.3";
/// The port of the carrier's contact, `sip:127.0.0.3:5060`.
pub const CARRIER_SIP_PORT: u16 = 5060;
/// SIPp's RTP port on [`CARRIER_IP`] (`-mp`).
pub const CARRIER_MEDIA_PORT: u16 = 16000;
/// Where SIPp keeps the recording of [`Sipp::keys`], relative to its folder.
pub const KEYS_PCAP: &str = "keys.pcap";
/// Debian's speech-like G.711 A-law recording (package `sip-tester`),
/// about 7 s long.
pub const SPEECH_PCAP: &str = "/usr/share/sip-tester/g711a.pcap";

static CARRIER: Mutex<()> = Mutex::const_new(());

/// The lab carrier's address to oneself: only one SIPp can own
/// 127.0.0.3:5060, so every test that runs one holds this for its whole run
/// (the tests of one binary then take turns; different binaries hold the
/// lab lock, `/var/cache/voicepay/e2e.lock`, as scripts/test does).
pub async fn carrier() -> MutexGuard<'static, ()> {
    CARRIER.lock().await
}

/// The `sipp` program, when installed (Debian: `sip-tester`; scripts/test
/// installs it). Missing: prints "skipping: SIPp not installed" and returns
/// None, or panics under `CI=true`.
pub fn require_sipp() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("sipp"))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Some(p),
        None if under_ci() => panic!("CI=true and SIPp is required, but `sipp` is not on PATH (apt-get install sip-tester, or scripts/test as root)"),
        None => {
            eprintln!("skipping: SIPp not installed (apt-get install sip-tester)");
            None
        }
    }
}

/// The scenario file `tests/sipp/{name}`.
pub fn scenario_path(name: &str) -> PathBuf {
    let repo = crate::lab::Lab::from_env()
        .map(|l| l.repo().to_path_buf())
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."));
    repo.join("tests/sipp").join(name)
}

/// One SIPp run to start: a scenario, its role, its `-set` variables and
/// what it plays.
pub struct Sipp {
    scenario: PathBuf,
    /// The UAC's target (`host:port`) and request-URI user (`-s`).
    uac: Option<(String, String)>,
    vars: Vec<(String, String)>,
    keys: Option<KeyPresses>,
    /// A whole recording for `keys.pcap` instead (see [`Sipp::recording`]).
    recording: Option<Vec<u8>>,
    timeout: Duration,
    calls: u32,
    /// SIP and RTP ports on [`CARRIER_IP`] (see [`Sipp::ports`]).
    ports: (u16, u16),
    /// The address SIPp signals and sends media from (see [`Sipp::from_ip`]).
    ip: String,
}

impl Sipp {
    /// SIPp as the carrier's side of callbacks: waits for one INVITE on
    /// 127.0.0.3:5060 and runs `tests/sipp/{scenario}`.
    pub fn uas(scenario: &str) -> Sipp {
        Sipp {
            scenario: scenario_path(scenario),
            uac: None,
            vars: Vec::new(),
            keys: None,
            recording: None,
            timeout: Duration::from_secs(90),
            calls: 1,
            ports: (CARRIER_SIP_PORT, CARRIER_MEDIA_PORT),
            ip: CARRIER_IP.to_string(),
        }
    }

    /// SIPp as the carrier placing one call from 127.0.0.3:5060 to the lab
    /// Asterisk's SIP port (`VOICEPAY_SIP_PORT`), to number `service` (the
    /// request-URI user; voicepay-inbound takes any digits).
    pub fn uac(scenario: &str, service: &str) -> Sipp {
        let port = lab_setting("VOICEPAY_SIP_PORT");
        Sipp {
            uac: Some((format!("127.0.0.1:{port}"), service.to_string())),
            ..Sipp::uas(scenario)
        }
    }

    /// A machine answers (issue #12, fault 5): `uas_speech.xml` answers
    /// with PCMA, plays [`SPEECH_PCAP`] (about 7 s of speech-like audio),
    /// keys nothing and waits for Asterisk's BYE; one call per attempt, so
    /// give [`Sipp::calls`] the daemon's `telephony.max_attempts`.
    pub fn answering_machine() -> Sipp {
        Sipp::uas("uas_speech.xml")
    }

    /// A scenario variable, `[$name]` in the XML (`-set name value`); the
    /// scenario declares it with `<Global variables="name"/>`.
    pub fn set(mut self, name: &str, value: &str) -> Sipp {
        self.vars.push((name.to_string(), value.to_string()));
        self
    }

    /// The key presses the scenario plays (as `keys.pcap`) once the call is up.
    pub fn keys(mut self, keys: KeyPresses) -> Sipp {
        self.keys = Some(keys);
        self
    }

    /// A recording of one's own (a pcap file, e.g. from [`rtp_pcap`]) that
    /// the scenario plays as `keys.pcap`: audio and key events together.
    pub fn recording(mut self, pcap: Vec<u8>) -> Sipp {
        self.recording = Some(pcap);
        self
    }

    /// A second carrier leg beside the one on 127.0.0.3:5060 (e.g. the
    /// leg of an attended transfer, issue #12 fault 3): SIPp on
    /// [`CARRIER_IP`] with these SIP and RTP ports (defaults
    /// [`CARRIER_SIP_PORT`], [`CARRIER_MEDIA_PORT`]). Asterisk identifies
    /// the carrier by address only, so it is the carrier's call too.
    pub fn ports(mut self, sip: u16, media: u16) -> Sipp {
        self.ports = (sip, media);
        self
    }

    /// SIPp on another loopback address than [`CARRIER_IP`] (`-i`, `-mi`):
    /// Asterisk then identifies its calls by that address (e.g. the
    /// assisted-payment legs on 127.0.0.6, endpoint `assisted-lab`).
    pub fn from_ip(mut self, ip: &str) -> Sipp {
        self.ip = ip.to_string();
        self
    }

    /// SIPp gives up (and fails) after this long (`-timeout`, default 90 s).
    pub fn timeout(mut self, t: Duration) -> Sipp {
        self.timeout = t;
        self
    }

    /// How many calls SIPp takes (or places) before it ends (`-m`, default
    /// 1): a retried callback rings the carrier once per attempt.
    pub fn calls(mut self, n: u32) -> Sipp {
        self.calls = n.max(1);
        self
    }

    /// Starts SIPp for [`Sipp::calls`] calls in a temporary folder of its own.
    /// The process is killed when the returned [`Running`] is dropped.
    pub fn spawn(self) -> Result<Running> {
        if !self.scenario.is_file() {
            bail!("no SIPp scenario {}", self.scenario.display());
        }
        let dir = tempfile::tempdir().context("SIPp's folder")?;
        if let Some(keys) = &self.keys {
            keys.write(&dir.path().join(KEYS_PCAP))?;
        }
        if let Some(pcap) = &self.recording {
            std::fs::write(dir.path().join(KEYS_PCAP), pcap).context("writing keys.pcap")?;
        }
        let errors = dir.path().join("errors.log");
        let messages = dir.path().join("messages.log");
        let mut cmd = Command::new("sipp");
        cmd.current_dir(dir.path())
            .arg("-sf")
            .arg(&self.scenario)
            .args(["-i", &self.ip, "-p", &self.ports.0.to_string()])
            .args(["-mi", &self.ip, "-mp", &self.ports.1.to_string()])
            .arg("-m")
            .arg(self.calls.to_string())
            .args(["-nostdin", "-timeout_error"])
            .arg("-timeout")
            .arg(format!("{}s", self.timeout.as_secs().max(1)))
            .args(["-trace_err", "-error_file"])
            .arg(&errors)
            .args(["-trace_msg", "-message_file"])
            .arg(&messages);
        for (k, v) in &self.vars {
            cmd.arg("-set").arg(k).arg(v);
        }
        if let Some((target, service)) = &self.uac {
            cmd.args(["-s", service]).arg(target);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting sipp")?;
        Ok(Running {
            child,
            dir,
            scenario: self.scenario,
        })
    }
}

/// A SIPp process running one scenario; killed when dropped.
pub struct Running {
    child: Child,
    dir: tempfile::TempDir,
    scenario: PathBuf,
}

impl Running {
    /// Waits (at most `within`) for SIPp to end and returns its result; a
    /// SIPp still running then is killed and reported as failed.
    pub async fn finish(mut self, within: Duration) -> SippResult {
        let status = tokio::time::timeout(within, self.child.wait()).await;
        let (code, note) = match status {
            Ok(Ok(s)) => (s.code(), String::new()),
            Ok(Err(e)) => (None, format!("waiting for sipp: {e}\n")),
            Err(_) => {
                let _ = self.child.kill().await;
                (
                    None,
                    format!("sipp still running after {within:?}: killed\n"),
                )
            }
        };
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = err.read_to_string(&mut stderr).await;
        }
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        SippResult {
            scenario: self.scenario.display().to_string(),
            code,
            log: format!(
                "{note}--- stderr\n{stderr}--- errors.log\n{}--- messages.log\n{}",
                read("errors.log"),
                read("messages.log")
            ),
        }
    }
}

/// How a SIPp run ended: its exit code (0: the call went through the
/// scenario; 1: it failed somewhere, e.g. an unexpected message or the
/// `-timeout`; None: killed) and its logs.
#[derive(Debug)]
pub struct SippResult {
    pub scenario: String,
    pub code: Option<i32>,
    /// stderr, the unexpected-message log and the SIP message trace.
    pub log: String,
}

impl SippResult {
    /// True when the call ran through the whole scenario.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the logs unless [`SippResult::ok`].
    pub fn assert_ok(&self) {
        assert!(
            self.ok(),
            "SIPp {} ended with {:?}:\n{}",
            self.scenario,
            self.code,
            self.log
        );
    }
}

/// RFC 4733 key presses for a whole call, written as a pcap file that
/// SIPp's `play_pcap_audio` sends as RTP (payload type 101, 8 kHz clock).
///
/// Built from a script in the lab handsets' notation (dialplan/lab.conf):
/// digits `0-9`, `*`, `#`, and pauses `w` (0.5 s) and `W` (1 s). Each press
/// lasts [`KeyPresses::TONE_MS`], with [`KeyPresses::GAP_MS`] of silence
/// before the next one; sequence numbers and timestamps increase through
/// the whole recording. `scripts/sipp-keys` (`tests/sipp/keys_pcap.py`)
/// writes the same bytes for testers by hand, and a test here compares the
/// two: change both together.
#[derive(Clone, Debug)]
pub struct KeyPresses {
    steps: Vec<Step>,
    /// The RFC 4733 events (0-9, 10 = `*`, 11 = `#`) whose presses a
    /// re-stamping relay mangles.
    restamped: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Key(u8),
    PauseMs(u32),
}

/// An RTP packet to write, at `at_ms` from the start of the recording.
struct Packet {
    at_ms: u32,
    rtp: [u8; 16],
}

impl KeyPresses {
    /// How long one press lasts, in milliseconds.
    pub const TONE_MS: u32 = 160;
    /// Silence after each press, in milliseconds.
    pub const GAP_MS: u32 = 240;
    /// RTP payload type of telephone-event in the scenarios' SDP.
    pub const PAYLOAD_TYPE: u8 = 101;
    const SSRC: u32 = 0x5a1f_0c0a;

    /// Parses a key script such as `W1WW805137`; anything but `0-9*#wW` is
    /// an error.
    pub fn parse(script: &str) -> Result<KeyPresses> {
        let mut steps = Vec::new();
        for c in script.chars() {
            steps.push(match c {
                '0'..='9' => Step::Key(c as u8 - b'0'),
                '*' => Step::Key(10),
                '#' => Step::Key(11),
                'w' => Step::PauseMs(500),
                'W' => Step::PauseMs(1000),
                _ => bail!("key script {script:?}: {c:?} is not 0-9, *, #, w or W"),
            });
        }
        Ok(KeyPresses {
            steps,
            restamped: Vec::new(),
        })
    }

    /// The relay fault of issue #12 (fault 1) on every press: the 2nd and
    /// 3rd end packets carry a new RTP timestamp (and, like every packet,
    /// their own sequence numbers), as a relay that re-stamps packets sends
    /// them; Asterisk 22.10 then reports such a press twice.
    pub fn restamped_ends(mut self) -> KeyPresses {
        self.restamped = (0..12).collect();
        self
    }

    /// [`KeyPresses::restamped_ends`] for the presses of `key` only (e.g.
    /// `'8'` in PIN 805137: Asterisk reports 8, 8, 0, 5, 1, 3, 7).
    pub fn restamped_ends_of(mut self, key: char) -> KeyPresses {
        let event = match key {
            '*' => 10,
            '#' => 11,
            d => d.to_digit(10).map_or(u8::MAX, |d| d as u8),
        };
        self.restamped.push(event);
        self
    }

    /// The RTP packets, in sending order.
    fn packets(&self) -> Vec<Packet> {
        const PACKET_MS: u32 = 20;
        let mut out = Vec::new();
        let (mut now_ms, mut seq) = (0u32, 0x1000u16);
        let mut push = |at_ms: u32, seq: &mut u16, marker: bool, ts: u32, payload: [u8; 4]| {
            let mut rtp = [0u8; 16];
            rtp[0] = 0x80;
            rtp[1] = Self::PAYLOAD_TYPE | if marker { 0x80 } else { 0 };
            rtp[2..4].copy_from_slice(&seq.to_be_bytes());
            rtp[4..8].copy_from_slice(&ts.to_be_bytes());
            rtp[8..12].copy_from_slice(&Self::SSRC.to_be_bytes());
            rtp[12..16].copy_from_slice(&payload);
            *seq = seq.wrapping_add(1);
            out.push(Packet { at_ms, rtp });
        };
        for step in &self.steps {
            match *step {
                Step::PauseMs(ms) => now_ms += ms,
                Step::Key(event) => {
                    // 8 samples per millisecond; the event's timestamp is its start.
                    let ts = 0x8000 + now_ms * 8;
                    let updates = Self::TONE_MS / PACKET_MS;
                    for i in 0..updates {
                        let dur = (i * PACKET_MS * 8) as u16;
                        let [d0, d1] = dur.to_be_bytes();
                        push(
                            now_ms + i * PACKET_MS,
                            &mut seq,
                            i == 0,
                            ts,
                            [event, 10, d0, d1],
                        );
                    }
                    let end_at = now_ms + Self::TONE_MS;
                    let [d0, d1] = ((Self::TONE_MS * 8) as u16).to_be_bytes();
                    for i in 0..3u32 {
                        // A re-stamping relay: ends 2 and 3 look like a new event.
                        let ts = if i > 0 && self.restamped.contains(&event) {
                            ts + Self::TONE_MS * 8
                        } else {
                            ts
                        };
                        push(
                            end_at + i * 2,
                            &mut seq,
                            false,
                            ts,
                            [event, 0x80 | 10, d0, d1],
                        );
                    }
                    now_ms = end_at + Self::GAP_MS;
                }
            }
        }
        out
    }

    /// How long the recording plays, in milliseconds.
    pub fn duration_ms(&self) -> u32 {
        self.packets().last().map_or(0, |p| p.at_ms)
    }

    /// Writes the recording as a classic pcap file (Ethernet, IPv4, UDP,
    /// RTP), the format SIPp's `play_pcap_audio` reads; SIPp takes only
    /// the UDP payload and the packets' times from it.
    pub fn write(&self, path: &Path) -> Result<()> {
        let packets: Vec<(u32, Vec<u8>)> = self
            .packets()
            .into_iter()
            .map(|p| (p.at_ms, p.rtp.to_vec()))
            .collect();
        std::fs::write(path, rtp_pcap(&packets))
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// A classic pcap file (Ethernet, IPv4, UDP) of RTP packets, each
/// `(at_ms, rtp bytes)` from the start of the recording, as SIPp's
/// `play_pcap_audio` reads it (it takes only the UDP payloads and their
/// times).
pub fn rtp_pcap(packets: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut file = Vec::new();
    // Global header: magic, version 2.4, UTC offset, accuracy, snaplen, Ethernet.
    file.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    file.extend_from_slice(&2u16.to_le_bytes());
    file.extend_from_slice(&4u16.to_le_bytes());
    file.extend_from_slice(&[0; 8]);
    file.extend_from_slice(&65535u32.to_le_bytes());
    file.extend_from_slice(&1u32.to_le_bytes());
    for (n, (at_ms, rtp)) in packets.iter().enumerate() {
        let frame = frame(rtp, n as u16);
        let t_us = u64::from(*at_ms) * 1000;
        file.extend_from_slice(&(1_700_000_000 + (t_us / 1_000_000) as u32).to_le_bytes());
        file.extend_from_slice(&((t_us % 1_000_000) as u32).to_le_bytes());
        file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        file.extend_from_slice(&frame);
    }
    file
}

/// One Ethernet/IPv4/UDP frame around `payload` (addresses are SIPp's to
/// replace: it sends from its media port to the far end's SDP address).
fn frame(payload: &[u8], ip_id: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(42 + payload.len());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&ip_id.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&Ipv4Addr::new(127, 0, 0, 3).octets());
    ip[16..20].copy_from_slice(&Ipv4Addr::new(127, 0, 0, 1).octets());
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&CARRIER_MEDIA_PORT.to_be_bytes());
    f.extend_from_slice(&10000u16.to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&0u16.to_be_bytes()); // no UDP checksum
    f.extend_from_slice(payload);
    f
}

/// The prompts the daemon plays on the calls of one test, as Asterisk
/// reports them: a Stasis app of the test's own, connected with
/// `subscribeAll=true` (an app subscribed to everything receives every
/// channel's `PlaybackStarted`, whichever app
/// started the playback), keeping those of channels whose name starts with
/// a prefix (e.g. `PJSIP/carrier-`; carrier tests run one at a time).
/// Asterisk 22 sends one `PlaybackStarted` per media of a playback's list
/// (a stopped list starts no further media), so the recording is the
/// prompts the caller actually began to hear.
pub struct PromptRecorder {
    app: App,
    prefix: String,
    channels: Vec<String>,
    destroyed: Vec<String>,
    prompts: Vec<String>,
}

impl PromptRecorder {
    /// Starts recording (before the call is placed).
    pub async fn start(lab: &Lab, channel_name_prefix: &str) -> Result<PromptRecorder> {
        Ok(PromptRecorder {
            app: lab.app_all("prompts").await?,
            prefix: channel_name_prefix.to_string(),
            channels: Vec::new(),
            destroyed: Vec::new(),
            prompts: Vec::new(),
        })
    }

    fn take(&mut self, ev: &Value) {
        let id = event_channel_id(ev).unwrap_or_default().to_string();
        let name = ev["channel"]["name"].as_str().unwrap_or_default();
        if !name.is_empty() && name.starts_with(&self.prefix) && !self.channels.contains(&id) {
            self.channels.push(id.clone());
        }
        if !self.channels.contains(&id) {
            return;
        }
        match ev["type"].as_str().unwrap_or_default() {
            // Asterisk 22 sends PlaybackStarted for each media of a list (a
            // PlaybackContinuing names the one that ended): one per prompt.
            "PlaybackStarted" => {
                if let Some(uri) = ev["playback"]["media_uri"].as_str() {
                    self.prompts
                        .push(uri.trim_start_matches("sound:").to_string());
                }
            }
            "ChannelDestroyed" => self.destroyed.push(id),
            _ => {}
        }
    }

    /// The prompts (sound names such as `voicepay/welcome`) played on the
    /// matching channels, in order, once every such channel is gone (the
    /// call is over); fails if none was seen within `within`.
    pub async fn prompts(mut self, within: Duration) -> Result<Vec<String>> {
        let deadline = tokio::time::Instant::now() + within;
        while self.channels.is_empty() || self.destroyed.len() < self.channels.len() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let what = format!("the end of the {}* calls", self.prefix);
            let ev = self
                .app
                .wait_for(&what, left, |_| true)
                .await
                .with_context(|| format!("prompts so far: {:?}", self.prompts))?;
            self.take(&ev);
        }
        self.app.close().await;
        Ok(self.prompts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presses_increase_through_the_call() {
        let k = KeyPresses::parse("1w80").unwrap();
        let p = k.packets();
        assert_eq!(p.len(), 3 * 11);
        let seq = |p: &Packet| u16::from_be_bytes([p.rtp[2], p.rtp[3]]);
        let ts = |p: &Packet| u32::from_be_bytes([p.rtp[4], p.rtp[5], p.rtp[6], p.rtp[7]]);
        assert!(p.windows(2).all(|w| seq(&w[1]) == seq(&w[0]) + 1));
        assert!(p.windows(2).all(|w| ts(&w[1]) >= ts(&w[0])));
        assert!(p.windows(2).all(|w| w[1].at_ms >= w[0].at_ms));
        // Events 1, 8, 0; one timestamp per press; the E bit on the last 3.
        let events: Vec<u8> = p.iter().step_by(11).map(|p| p.rtp[12]).collect();
        assert_eq!(events, [1, 8, 0]);
        assert!(p[..11].iter().all(|q| ts(q) == ts(&p[0])));
        assert_eq!(p[..11].iter().filter(|q| q.rtp[13] & 0x80 != 0).count(), 3);
        assert_eq!(p[0].rtp[1], 0x80 | 101, "marker on the first packet");
        // The pause: the 2nd press starts 0.5 s after the 1st one's gap.
        assert_eq!(p[11].at_ms, KeyPresses::TONE_MS + KeyPresses::GAP_MS + 500);
        assert!(KeyPresses::parse("12x").is_err());
    }

    #[test]
    fn a_restamping_relay_changes_the_last_two_end_packets() {
        let plain = KeyPresses::parse("8").unwrap().packets();
        let relay = KeyPresses::parse("8").unwrap().restamped_ends().packets();
        let ts = |p: &Packet| u32::from_be_bytes([p.rtp[4], p.rtp[5], p.rtp[6], p.rtp[7]]);
        assert_eq!(ts(&plain[8]), ts(&plain[10]));
        assert_eq!(ts(&relay[8]), ts(&plain[8]));
        assert_ne!(ts(&relay[9]), ts(&relay[8]));
        assert_eq!(ts(&relay[9]), ts(&relay[10]));
    }

    #[test]
    fn only_the_chosen_key_is_restamped() {
        let p = KeyPresses::parse("80")
            .unwrap()
            .restamped_ends_of('8')
            .packets();
        let ts = |p: &Packet| u32::from_be_bytes([p.rtp[4], p.rtp[5], p.rtp[6], p.rtp[7]]);
        assert_ne!(ts(&p[9]), ts(&p[8]), "the 8's 2nd end packet");
        assert_eq!(ts(&p[20]), ts(&p[19]), "the 0's end packets");
    }

    #[test]
    fn the_pcap_file_has_one_record_per_packet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pcap");
        KeyPresses::parse("5").unwrap().write(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(bytes.len(), 24 + 11 * (16 + 14 + 20 + 8 + 16));
    }

    /// `scripts/sipp-keys SCRIPT DIR` (the testers' tool, README "pay by
    /// hand") writes the same bytes as [`KeyPresses::write`], for a whole
    /// payment and for every key and pause; a bad key is refused and
    /// writes nothing. Needs `python3` (skips without it, fails under CI).
    #[test]
    fn the_testers_sipp_keys_script_writes_the_same_recording() {
        let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/sipp-keys");
        if std::process::Command::new("python3")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(!under_ci(), "CI=true and python3 is missing");
            eprintln!("skipping: python3 not installed");
            return;
        }
        for script in ["Ww1WW805137", "0123456789*#", "wW", "8"] {
            let dir = tempfile::tempdir().unwrap();
            let out = std::process::Command::new(tool)
                .arg(script)
                .arg(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{script}: {out:?}");
            let theirs = std::fs::read(dir.path().join(KEYS_PCAP)).unwrap();
            let ours_path = dir.path().join("kit.pcap");
            KeyPresses::parse(script)
                .unwrap()
                .write(&ours_path)
                .unwrap();
            let ours = std::fs::read(&ours_path).unwrap();
            assert_eq!(theirs.len(), ours.len(), "{script}: file length");
            assert!(theirs == ours, "{script}: the recordings differ");
        }
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(tool)
            .arg("12x")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("'x' is not 0-9"));
        assert!(!dir.path().join(KEYS_PCAP).exists());
    }
}
