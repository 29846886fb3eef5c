//! Who Asterisk takes for the carrier (asterisk-conf/pjsip.conf): an INVITE
//! is the carrier's only when it comes from VOICEPAY_CARRIER_ADDRESSES (the
//! lab: 127.0.0.3), whatever its From header says. Raw SIP over UDP from a
//! chosen loopback source address, read back as the first final response:
//! an identified caller reaches the dialplan (404 for an extension that does
//! not exist), an unidentified one is challenged (401) and reaches nothing.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::net::UdpSocket;
use voicepay_testkit::lab::{lab_setting, log_window, require_asterisk, unique};

/// An extension voicepay-inbound does not have (it takes digits only), so
/// an identified INVITE ends at once with 404 and nothing is answered.
const NO_SUCH_EXTEN: &str = "zz-carrier-probe";

#[tokio::test]
async fn the_carrier_is_known_by_its_address_not_its_name() -> Result<()> {
    let Some(_lab) = require_asterisk() else {
        return Ok(());
    };
    let _g = log_window().await;
    let carrier: IpAddr = lab_setting("VOICEPAY_CARRIER_ADDRESSES").parse()?;
    let stranger: IpAddr = "127.0.0.2".parse()?;

    // From the carrier's address: identified, into the dialplan.
    assert_eq!(invite_from(carrier, "carrier").await?, 404);
    // The same INVITE from another host, naming itself `carrier`: never
    // matched to the carrier endpoint, challenged, no dialplan.
    assert_eq!(invite_from(stranger, "carrier").await?, 401);
    // Nor under any other From user without a password.
    assert_eq!(invite_from(stranger, "13800138000").await?, 401);
    assert_eq!(invite_from(stranger, "anonymous").await?, 401);
    Ok(())
}

/// Sends one INVITE from `source` (any port) with `From: <sip:{user}@…>` to
/// the lab transport and returns the first final status code; ACKs it.
async fn invite_from(source: IpAddr, user: &str) -> Result<u16> {
    let port: u16 = lab_setting("VOICEPAY_SIP_PORT").parse()?;
    let asterisk = SocketAddr::new("127.0.0.1".parse()?, port);
    let sock = UdpSocket::bind(SocketAddr::new(source, 0)).await?;
    let local = sock.local_addr()?;
    let tag = unique("t");
    let branch = format!("z9hG4bK{}", unique("b"));
    let call_id = format!("{}@voicepay-test", unique("c"));
    let via = format!("SIP/2.0/UDP {local};branch={branch};rport");
    let from = format!("<sip:{user}@{source}>;tag={tag}");
    let uri = format!("sip:{NO_SUCH_EXTEN}@{asterisk}");
    let invite = format!(
        "INVITE {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\n\
         To: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:{user}@{local}>\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(invite.as_bytes(), asterisk).await?;
    let mut buf = vec![0u8; 8192];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf))
            .await
            .with_context(|| format!("no SIP answer from {asterisk} to {user}@{source}"))??;
        let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
        let code: u16 = reply
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("not a SIP response: {reply:?}"))?;
        if code < 200 {
            continue;
        }
        if !reply.contains(&call_id) {
            bail!("answer for another call: {reply:?}");
        }
        // A final answer to an INVITE is acknowledged (RFC 3261 17.1.1.3),
        // or Asterisk repeats it for 32 s.
        let to = header(&reply, "To").context("final answer without To")?;
        let ack = format!(
            "ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\n\
             To: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(ack.as_bytes(), asterisk).await?;
        return Ok(code);
    }
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
