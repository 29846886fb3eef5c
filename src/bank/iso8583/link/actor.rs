//! The task that owns the connection: connect, sign on, serve (write
//! requests, match answers, echo when idle, expire deadlines), and on any
//! failure drop everything in flight and try again after a back-off.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::super::{CodecError, FrameCodec, FrameError, Message, Mti, NetworkCode, ResponseCode};
use super::inflight::{key_of, InFlight, Matched, Outgoing, Waiter};
use super::{LinkError, LinkSettings, LinkStatus, StanSource};

/// A byte stream to the host: a TCP connection, or an in-memory pipe in
/// tests.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// Opens a connection to an address.
pub(super) type Connector =
    Arc<dyn Fn(String) -> BoxFuture<'static, std::io::Result<Box<dyn Transport>>> + Send + Sync>;

/// Production's connector: TCP, Nagle off (small frames, one at a time).
pub(super) fn tcp() -> Connector {
    Arc::new(|address: String| {
        Box::pin(async move {
            let stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Box<dyn Transport>)
        })
    })
}

type Conn = Framed<Box<dyn Transport>, FrameCodec>;

/// The first back-off: attempt 1 waits 0.25–0.5 s.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
/// The back-off stops doubling here.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a connection (or an attempt at one) ended: the status's
/// `last_error`. Never carries field data.
#[derive(Debug, thiserror::Error)]
pub(super) enum Down {
    #[error("connect to {address}: {error}")]
    Connect {
        address: String,
        error: std::io::Error,
    },
    #[error("connect to {0}: no connection within the response timeout")]
    ConnectTimeout(String),
    #[error("no STAN for the {0}: {1:#}")]
    Stan(&'static str, anyhow::Error),
    #[error("no STAN for the {0} within the response timeout")]
    StanTimeout(&'static str),
    #[error("building the {0}: {1}")]
    Build(&'static str, CodecError),
    #[error("sign-on refused: F39 {0}")]
    SignOnRefused(String),
    #[error("sign-on not answered within the response timeout")]
    SignOnUnanswered,
    #[error("echo test not answered within the response timeout")]
    EchoUnanswered,
    #[error("a write stalled for the response timeout")]
    WriteStalled,
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("the host closed the connection")]
    Closed,
}

/// The back-off before attempt `attempt` (1, 2, …), `jitter` in [0, 1):
/// between half of and the whole of `min(0.5 s × 2^(attempt-1), 30 s)`.
pub(super) fn backoff(attempt: u32, jitter: f64) -> Duration {
    let doubled = BACKOFF_FIRST.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let full = doubled.min(BACKOFF_MAX);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

pub(super) struct Actor {
    settings: LinkSettings,
    connector: Connector,
    stans: Arc<dyn StanSource>,
    requests: mpsc::UnboundedReceiver<Outgoing>,
    status: watch::Sender<LinkStatus>,
    shutdown: CancellationToken,
}

impl Actor {
    pub fn new(
        settings: LinkSettings,
        connector: Connector,
        stans: Arc<dyn StanSource>,
        requests: mpsc::UnboundedReceiver<Outgoing>,
        status: watch::Sender<LinkStatus>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            settings,
            connector,
            stans,
            requests,
            status,
            shutdown,
        }
    }

    /// Connects, signs on and serves, again and again, until shut down.
    pub async fn run(mut self) {
        let shutdown = self.shutdown.clone();
        let mut attempt = 0u32;
        loop {
            let down = tokio::select! {
                () = shutdown.cancelled() => break,
                down = self.session(&mut attempt) => down,
            };
            attempt = attempt.saturating_add(1);
            tracing::warn!(address = %self.settings.address, attempt, error = %down,
                "ISO 8583 link down; reconnecting");
            self.status.send_replace(LinkStatus::Connecting {
                attempt,
                last_error: Some(down.to_string()),
            });
            let wait = backoff(attempt, rand::thread_rng().gen());
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        self.status.send_replace(LinkStatus::Stopped);
        tracing::info!(address = %self.settings.address, "ISO 8583 link stopped");
    }

    /// One connection, from connect to its end (always an error).
    async fn session(&mut self, attempt: &mut u32) -> Down {
        let address = self.settings.address.clone();
        let connect = (self.connector)(address.clone());
        let stream = match timeout(self.settings.response_timeout, connect).await {
            Err(_) => return Down::ConnectTimeout(address),
            Ok(Err(error)) => return Down::Connect { address, error },
            Ok(Ok(s)) => s,
        };
        let mut conn = Framed::new(stream, FrameCodec::default());
        if let Err(down) = self.sign_on(&mut conn).await {
            return down;
        }
        *attempt = 0;
        self.status.send_replace(LinkStatus::SignedOn {
            since_ms: crate::clock::now_ms(),
        });
        tracing::info!(address = %self.settings.address, "ISO 8583 link signed on");
        let mut inflight = InFlight::default();
        let down = self.serve(&mut conn, &mut inflight).await;
        let dropped = inflight.drop_all();
        if dropped > 0 {
            tracing::warn!(dropped, "ISO 8583 link: exchanges in flight end as dropped");
        }
        down
    }

    /// An 0800 of the link's own: F7 now, F11 from the source, F32, F41,
    /// F70 `code`.
    async fn network_request(&self, code: NetworkCode) -> Result<Message, Down> {
        let what = match code {
            NetworkCode::SignOn => "sign-on",
            NetworkCode::Echo => "echo test",
            NetworkCode::SignOff => "sign-off",
        };
        let stan = timeout(self.settings.response_timeout, self.stans.next_stan())
            .await
            .map_err(|_| Down::StanTimeout(what))?
            .map_err(|e| Down::Stan(what, e))?;
        let mut m = Message::new(Mti::NETWORK_REQUEST);
        let built = (|| {
            m.set_transmission_time(time::OffsetDateTime::now_utc())?
                .set_stan(stan)?
                .set_acquirer_id(&self.settings.acquirer_id)?
                .set_terminal_id(&self.settings.terminal_id)?
                .set_network_code(code)?;
            Ok::<_, CodecError>(())
        })();
        // The config layer validated F32 and F41: a failure here is a bug.
        built.map_err(|e| Down::Build(what, e))?;
        Ok(m)
    }

    /// Sends the sign-on and waits for its 0810 (answering a host's own
    /// 0800 meanwhile, dropping anything else).
    async fn sign_on(&self, conn: &mut Conn) -> Result<(), Down> {
        let request = self.network_request(NetworkCode::SignOn).await?;
        let key = key_of(&request);
        let deadline = Instant::now() + self.settings.response_timeout;
        write(conn, &request, deadline).await?;
        loop {
            let msg = match timeout_at(deadline, read(conn)).await {
                Err(_) => return Err(Down::SignOnUnanswered),
                Ok(r) => r?,
            };
            let Some(msg) = msg else { continue };
            if !msg.mti().is_response() {
                self.host_request(conn, &msg, deadline).await?;
            } else if key_of(&msg) == key {
                return match msg.response_code() {
                    Some(ResponseCode::APPROVED) => Ok(()),
                    code => Err(Down::SignOnRefused(
                        code.map_or_else(|| "missing".into(), |c| c.as_str().to_owned()),
                    )),
                };
            } else {
                log_unmatched(&msg, "before sign-on");
            }
        }
    }

    /// The signed-on connection until it fails.
    async fn serve(&mut self, conn: &mut Conn, inflight: &mut InFlight) -> Down {
        let mut last_write = Instant::now();
        loop {
            let echo_at = last_write + self.settings.echo_interval;
            let echo_due = !inflight.echo_outstanding();
            let deadline = inflight.next_deadline();
            // Biased: answers already received win over a deadline that
            // came due meanwhile, and over new requests.
            let result = tokio::select! {
                biased;
                msg = read(conn) => match msg {
                    Ok(Some(msg)) => self.on_message(conn, inflight, msg).await,
                    Ok(None) => Ok(()),
                    Err(down) => Err(down),
                },
                Some(out) = self.requests.recv() => {
                    self.send_request(conn, inflight, out, &mut last_write).await
                }
                () = sleep_until(echo_at), if echo_due => {
                    self.send_echo(conn, inflight, &mut last_write).await
                }
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    match inflight.expire(Instant::now()) {
                        (_, true) => Err(Down::EchoUnanswered),
                        _ => Ok(()),
                    }
                }
            };
            if let Err(down) = result {
                return down;
            }
        }
    }

    /// An answer (matched, or logged and dropped) or a host's request.
    async fn on_message(
        &self,
        conn: &mut Conn,
        inflight: &mut InFlight,
        msg: Message,
    ) -> Result<(), Down> {
        if !msg.mti().is_response() {
            let deadline = Instant::now() + self.settings.response_timeout;
            return self.host_request(conn, &msg, deadline).await;
        }
        match inflight.answer(msg) {
            Matched::Caller => {}
            Matched::Echo => tracing::debug!("ISO 8583 link: echo answered"),
            Matched::Nobody(msg) => log_unmatched(&msg, "nobody waits for it"),
        }
        Ok(())
    }

    /// Writes a queued request unless its caller gave up on it, and awaits
    /// its answer.
    async fn send_request(
        &self,
        conn: &mut Conn,
        inflight: &mut InFlight,
        out: Outgoing,
        last_write: &mut Instant,
    ) -> Result<(), Down> {
        if !out.ticket.claim() {
            return Ok(());
        }
        let Some(key) = key_of(&out.request) else {
            let _ = out.answer.send(Err(LinkError::NotSent("no F11 or F41")));
            return Ok(());
        };
        if inflight.contains(&key) {
            let _ = out.answer.send(Err(LinkError::NotSent(
                "a request with this STAN and terminal id awaits its answer",
            )));
            return Ok(());
        }
        let now = Instant::now();
        let deadline = now + self.settings.response_timeout;
        inflight.insert(key.clone(), Waiter::Caller(out.answer), deadline);
        match write(conn, &out.request, deadline).await {
            Ok(()) => {
                *last_write = now;
                Ok(())
            }
            Err(Down::Frame(FrameError::TooLarge { len, max })) => {
                // Refused by the encoder: nothing reached the socket.
                tracing::warn!(len, max, "ISO 8583 link: request over the frame maximum");
                if let Some(Waiter::Caller(tx)) = inflight.remove(&key) {
                    let _ = tx.send(Err(LinkError::NotSent("over the frame maximum")));
                }
                Ok(())
            }
            // Maybe partly written: the connection goes, the exchange ends
            // Dropped with the others in flight.
            Err(down) => Err(down),
        }
    }

    /// The idle-time echo test (0800, F70 301).
    async fn send_echo(
        &self,
        conn: &mut Conn,
        inflight: &mut InFlight,
        last_write: &mut Instant,
    ) -> Result<(), Down> {
        let now = Instant::now();
        let echo = match self.network_request(NetworkCode::Echo).await {
            Ok(m) => m,
            Err(e) => {
                // No STAN (the database?): not the connection's fault.
                tracing::warn!(error = %e, "ISO 8583 link: echo test skipped");
                *last_write = now;
                return Ok(());
            }
        };
        let Some(key) = key_of(&echo).filter(|k| !inflight.contains(k)) else {
            *last_write = now;
            return Ok(());
        };
        let deadline = now + self.settings.response_timeout;
        inflight.insert(key, Waiter::Echo, deadline);
        write(conn, &echo, deadline).await?;
        *last_write = now;
        Ok(())
    }

    /// The host's own request: its echo test is answered `00`; anything
    /// else is logged and dropped.
    async fn host_request(
        &self,
        conn: &mut Conn,
        msg: &Message,
        deadline: Instant,
    ) -> Result<(), Down> {
        if msg.mti() == Mti::NETWORK_REQUEST {
            if let Some(mut answer) = msg.reply() {
                if answer.set_response_code(ResponseCode::APPROVED).is_ok() {
                    return write(conn, &answer, deadline).await;
                }
            }
        }
        log_unmatched(msg, "a host request voicepay does not serve");
        Ok(())
    }
}

/// Writes and flushes one frame, by `deadline`.
async fn write(conn: &mut Conn, msg: &Message, deadline: Instant) -> Result<(), Down> {
    match timeout_at(deadline, conn.send(msg)).await {
        Err(_) => Err(Down::WriteStalled),
        Ok(r) => r.map_err(Down::Frame),
    }
}

/// The next frame: `Ok(Some)` a message, `Ok(None)` a frame that did not
/// decode (logged; the connection goes on), `Err` the connection's end.
async fn read(conn: &mut Conn) -> Result<Option<Message>, Down> {
    match conn.next().await {
        None => Err(Down::Closed),
        Some(Err(e)) => Err(Down::Frame(e)),
        Some(Ok(Err(e))) => {
            tracing::warn!(error = %e, "ISO 8583 link: a frame that does not decode, dropped");
            Ok(None)
        }
        Some(Ok(Ok(msg))) => Ok(Some(msg)),
    }
}

/// The `warn` line for a message nobody waits for: MTI, STAN, F39, F41 and
/// the masked PAN, nothing else.
fn log_unmatched(msg: &Message, why: &str) {
    let f39 = msg.response_code();
    tracing::warn!(
        mti = %msg.mti(),
        stan = msg.text(11).unwrap_or("-"),
        f39 = f39.as_ref().map_or("-", ResponseCode::as_str),
        terminal = msg.terminal_id().unwrap_or("-"),
        pan = msg.pan_masked().as_deref().unwrap_or("-"),
        "ISO 8583 link: message dropped ({why})"
    );
}
