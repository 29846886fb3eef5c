//! A real SIP softphone for tests: baresip registered as a tester endpoint
//! (asterisk-conf/pjsip.conf), auto-answering, keying RFC 4733 DTMF on
//! command through its ctrl_tcp port. `scripts/softphone` installs baresip
//! and writes its config; this module runs it and talks to it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::{under_ci, Lab};
use crate::wait::poll_until;

/// A running baresip registered as one tester number. Killed on drop.
pub struct Softphone {
    phone: String,
    dir: PathBuf,
    child: Child,
    ctrl: TcpStream,
}

/// Starts a softphone for `phone`, or: under `CI=true` panics when it cannot;
/// otherwise prints why and returns None (the test skips).
///
/// Up to three starts, each on new ports: the SIP port is picked free for
/// UDP, but baresip also binds TCP on it and TLS on the next port, which
/// another process may hold at that moment ("Address already in use").
pub async fn require_softphone(lab: &Lab, phone: &str) -> Option<Softphone> {
    let mut started = Softphone::start(lab, phone).await;
    for _ in 0..2 {
        if started.is_ok() {
            break;
        }
        started = Softphone::start(lab, phone).await;
    }
    match started {
        Ok(sp) => Some(sp),
        Err(e) if under_ci() => panic!("CI=true and the softphone test needs baresip: {e:#}"),
        Err(e) => {
            eprintln!("skipping: no softphone ({e:#})");
            None
        }
    }
}

impl Softphone {
    /// Installs baresip if missing (`scripts/softphone install`), writes a
    /// config for `phone`, starts it and waits until Asterisk reports the
    /// PJSIP endpoint online (registered).
    pub async fn start(lab: &Lab, phone: &str) -> Result<Softphone> {
        let script = lab.repo().join("scripts/softphone");
        run(Command::new(&script).arg("install")).await?;
        let dir = std::env::temp_dir().join(super::unique(&format!("voicepay-softphone-{phone}")));
        let ctrl_port = free_tcp_port()?;
        let sip_port = free_udp_port()?;
        run(Command::new(&script).args(["config"]).arg(&dir).args([
            phone,
            &ctrl_port.to_string(),
            &sip_port.to_string(),
        ]))
        .await?;
        let log = std::fs::File::create(dir.join("baresip.log"))?;
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting baresip")?;
        let ctrl = connect_ctrl(ctrl_port, &dir).await?;
        let mut sp = Softphone {
            phone: phone.to_string(),
            dir,
            child,
            ctrl,
        };
        sp.wait_registered(lab, Duration::from_secs(15)).await?;
        Ok(sp)
    }

    /// Polls by hand rather than with [`poll_until`]: it gives up at once
    /// when baresip exits or ARI fails, not at the deadline.
    async fn wait_registered(&mut self, lab: &Lab, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if lab.endpoint_state("PJSIP", &self.phone).await?.as_deref() == Some("online") {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("baresip exited ({status}); log: {}", self.log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "PJSIP/{} did not register within {timeout:?}; baresip log: {}",
                    self.phone,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The tester number this softphone is registered as.
    pub fn phone(&self) -> &str {
        &self.phone
    }

    /// Keys `digits` one by one as RFC 4733 events, `gap` apart.
    pub async fn send_dtmf(&mut self, digits: &str, gap: Duration) -> Result<()> {
        for d in digits.chars() {
            self.command("sndcode", &d.to_string()).await?;
            tokio::time::sleep(gap).await;
        }
        Ok(())
    }

    /// Sends one ctrl_tcp command (a JSON netstring) and returns the reply.
    pub async fn command(&mut self, command: &str, params: &str) -> Result<serde_json::Value> {
        let body =
            serde_json::json!({ "command": command, "params": params, "token": "t" }).to_string();
        let frame = format!("{}:{},", body.len(), body);
        self.ctrl.write_all(frame.as_bytes()).await?;
        // Replies and events share the socket; the reply carries our token.
        loop {
            let msg = read_netstring(&mut self.ctrl).await?;
            let v: serde_json::Value =
                serde_json::from_str(&msg).with_context(|| format!("baresip said {msg:?}"))?;
            if v["response"] == true {
                if v["ok"] != true {
                    bail!("baresip refused {command} {params}: {msg}");
                }
                return Ok(v);
            }
        }
    }

    /// baresip's log (the tail), for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Stops baresip and removes its config folder.
    pub async fn stop(mut self) {
        let _ = self.command("quit", "").await;
        let _ = tokio::time::timeout(Duration::from_secs(3), self.child.wait()).await;
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().await.context("running scripts/softphone")?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd.as_std(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

async fn connect_ctrl(port: u16, dir: &std::path::Path) -> Result<TcpStream> {
    let every = Duration::from_millis(100);
    poll_until(Duration::from_secs(5), every, async || {
        TcpStream::connect(("127.0.0.1", port)).await
    })
    .await
    .map_err(|e| {
        let log = std::fs::read_to_string(dir.join("baresip.log")).unwrap_or_default();
        anyhow!("baresip ctrl_tcp port {port}: {e}; log: {log}")
    })
}

async fn read_netstring(s: &mut TcpStream) -> Result<String> {
    let mut len = 0usize;
    loop {
        let b = s.read_u8().await.context("baresip closed ctrl_tcp")?;
        match b {
            b'0'..=b'9' => len = len * 10 + usize::from(b - b'0'),
            b':' => break,
            _ => bail!("bad netstring from baresip"),
        }
    }
    let mut buf = vec![0u8; len + 1];
    s.read_exact(&mut buf).await?;
    buf.pop(); // the trailing ','
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn free_tcp_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
