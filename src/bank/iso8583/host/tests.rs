//! The host over real TCP on port 0, driven with the codec as an acquirer
//! would, in front of the stub issuer with the built-in test cards; each
//! test checks the answers and the card's balance at the issuer.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::IssuerHost;
use crate::bank::iso8583::{
    CardholderAuth, EntryMode, FrameCodec, Message, Mti, NetworkCode, ProcessingCode,
};
use crate::bank::{Latency, StubIssuer};
use crate::crypto::{PinBlock0, ZonePinKey, Zpk};
use crate::domain::{Amount, CardNumber, Cvn2, Expiry, IdNumber, OriginalRequest, Stan};

const LAB_ZPK: &str = "0123456789ABCDEFFEDCBA9876543210";
const ACQ: &str = "12345678";
const DEBIT: &str = "6222000000000017";
const DEBIT2: &str = "6217000000000014";
const SLOW: &str = "6222000000000041";
const CREDIT: &str = "6250000000000012";
const HOLDER: &str = "11010519491231002X";
const PIN: &[u8] = b"805137";
const START_FEN: i64 = 10_000_000;

fn zpk() -> Zpk {
    Zpk::from_hex("lab-zpk", LAB_ZPK).unwrap()
}

struct Lab {
    issuer: Arc<StubIssuer>,
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    stan: u32,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

type Conn = Framed<TcpStream, FrameCodec>;

impl Lab {
    async fn start() -> Self {
        let issuer = StubIssuer::builtin(ZonePinKey::from_bytes(&[7u8; 32]).unwrap())
            .with_link_zpk(zpk())
            .with_latency(Latency {
                // Never reached in a test: the slow card's answer is not
                // waited for, only shown not to hold up the others.
                slow: Duration::from_secs(3600),
                no_answer: Duration::from_secs(3600),
            });
        let issuer = Arc::new(issuer);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let host = Arc::new(IssuerHost::new(issuer.clone()));
        tokio::spawn(host.serve(listener, stop.clone()));
        Self {
            issuer,
            addr,
            stop,
            stan: 0,
        }
    }

    async fn connect(&self) -> Conn {
        Framed::new(
            TcpStream::connect(self.addr).await.unwrap(),
            FrameCodec::default(),
        )
    }

    fn next_stan(&mut self) -> Stan {
        self.stan += 1;
        Stan::new(self.stan).unwrap()
    }

    fn balance(&self, card: &str) -> i64 {
        self.issuer
            .available_fen(&CardNumber::parse(card).unwrap())
            .unwrap()
    }

    fn network(&mut self, code: NetworkCode) -> Message {
        let mut m = Message::new(Mti::NETWORK_REQUEST);
        m.set_transmission_time(OffsetDateTime::now_utc()).unwrap();
        m.set_stan(self.next_stan()).unwrap();
        m.set_terminal_id("VPTERM01").unwrap();
        m.set_network_code(code).unwrap();
        m
    }

    fn financial(&mut self, card: &str, fen: i64, code: ProcessingCode) -> Message {
        let now = OffsetDateTime::now_utc();
        let mut m = Message::new(Mti::FINANCIAL_REQUEST);
        m.set_pan(&CardNumber::parse(card).unwrap()).unwrap();
        m.set_processing_code(code).unwrap();
        m.set_amount(Amount::parse(fen, i64::MAX).unwrap()).unwrap();
        m.set_transmission_time(now).unwrap();
        m.set_stan(self.next_stan()).unwrap();
        m.set_local_time(now).unwrap();
        m.set_telephone_order().unwrap();
        m.set_acquirer_id(ACQ).unwrap();
        m.set_terminal_id("VPTERM01").unwrap();
        m.set_currency_cny().unwrap();
        m
    }

    fn debit(&mut self, card: &str, fen: i64, pin: &[u8], id: &str) -> Message {
        let mut m = self.financial(card, fen, ProcessingCode::Purchase);
        m.set_entry_mode(EntryMode::KeyedWithPin).unwrap();
        let block = PinBlock0::encipher(pin, card, &zpk()).unwrap();
        m.set_pin_block(block.as_bytes()).unwrap();
        let id = IdNumber::parse(id).unwrap();
        m.set_cardholder_auth(&CardholderAuth {
            id_number: &id,
            cvn2: None,
        })
        .unwrap();
        m
    }

    fn credit(&mut self, card: &str, fen: i64, mmyy: &str, cvn2: &str) -> Message {
        let mut m = self.financial(card, fen, ProcessingCode::Purchase);
        m.set_entry_mode(EntryMode::KeyedNoPin).unwrap();
        m.set_expiry(&Expiry::parse(mmyy).unwrap()).unwrap();
        let id = IdNumber::parse(HOLDER).unwrap();
        let cvn2 = Cvn2::parse(cvn2).unwrap();
        m.set_cardholder_auth(&CardholderAuth {
            id_number: &id,
            cvn2: Some(&cvn2),
        })
        .unwrap();
        m
    }

    fn reversal(&mut self, original: &Message, mti: Mti) -> Message {
        let mut m = Message::new(mti);
        for f in [2, 3, 4, 32, 41] {
            m.set(f, original.get(f).unwrap()).unwrap();
        }
        m.set_transmission_time(OffsetDateTime::now_utc()).unwrap();
        m.set_stan(self.next_stan()).unwrap();
        m.set_original(&name_of(original)).unwrap();
        m
    }
}

fn name_of(m: &Message) -> OriginalRequest {
    OriginalRequest {
        mti: m.mti().as_str().to_owned(),
        stan: m.stan().unwrap(),
        transmitted_at: m.transmission_time().unwrap().to_owned(),
        acquirer_id: m.acquirer_id().unwrap().to_owned(),
    }
}

/// Sends `req` and reads until the answer with its STAN (others are
/// returned in `skipped`, for the concurrency test).
async fn exchange(conn: &mut Conn, req: &Message) -> Message {
    conn.send(req).await.unwrap();
    read_answer(conn, req).await
}

async fn read_answer(conn: &mut Conn, req: &Message) -> Message {
    loop {
        let answer = conn
            .next()
            .await
            .expect("connection open")
            .unwrap()
            .unwrap();
        if answer.stan() == req.stan() {
            assert_eq!(Some(answer.mti()), req.mti().response());
            return answer;
        }
    }
}

fn f39(m: &Message) -> &str {
    m.text(39).expect("F39")
}

#[tokio::test]
async fn sign_on_and_echo_are_answered_00_with_f11_and_f41_echoed() {
    let mut lab = Lab::start().await;
    let mut conn = lab.connect().await;
    for code in [NetworkCode::SignOn, NetworkCode::Echo, NetworkCode::SignOff] {
        let req = lab.network(code);
        let answer = exchange(&mut conn, &req).await;
        assert_eq!(answer.mti(), Mti::NETWORK_RESPONSE);
        assert_eq!(f39(&answer), "00");
        assert_eq!(answer.terminal_id(), Some("VPTERM01"));
        assert_eq!(answer.network_code(), Some(code));
    }
}

#[tokio::test]
async fn debit_is_approved_with_f38_and_a_wrong_pin_is_55_without_a_debit() {
    let mut lab = Lab::start().await;
    let mut conn = lab.connect().await;
    let req = lab.debit(DEBIT, 12_345, PIN, HOLDER);
    let answer = exchange(&mut conn, &req).await;
    assert_eq!(f39(&answer), "00");
    assert_eq!(answer.approval_code().map(str::len), Some(6));
    assert_eq!(answer.amount_fen(), Some(12_345));
    assert!(!answer.has(2) && !answer.has(52) && !answer.has(61));
    assert_eq!(answer.rrn().map(str::len), Some(12));
    assert_eq!(lab.balance(DEBIT), START_FEN - 12_345);

    let wrong = lab.debit(DEBIT, 500, b"111111", HOLDER);
    let answer = exchange(&mut conn, &wrong).await;
    assert_eq!(f39(&answer), "55");
    assert!(!answer.has(38));
    assert_eq!(lab.balance(DEBIT), START_FEN - 12_345);
}

#[tokio::test]
async fn credit_card_is_approved_by_expiry_and_cvn2() {
    let mut lab = Lab::start().await;
    let mut conn = lab.connect().await;
    let req = lab.credit(CREDIT, 20_000, "1230", "123");
    assert_eq!(f39(&exchange(&mut conn, &req).await), "00");
    assert_eq!(lab.balance(CREDIT), START_FEN - 20_000);
    let wrong = lab.credit(CREDIT, 100, "1230", "999");
    assert_eq!(f39(&exchange(&mut conn, &wrong).await), "55");
    assert_eq!(lab.balance(CREDIT), START_FEN - 20_000);
}

#[tokio::test]
async fn another_cardholders_id_is_63_and_debits_nothing() {
    let mut lab = Lab::start().await;
    let mut conn = lab.connect().await;
    // DEBIT2 belongs to someone else; its right PIN with HOLDER's ID.
    let req = lab.debit(DEBIT2, 100, b"246810", HOLDER);
    assert_eq!(f39(&exchange(&mut conn, &req).await), "63");
    assert_eq!(lab.balance(DEBIT2), START_FEN);
}

#[tokio::test]
async fn a_duplicate_0200_gets_the_first_answer_and_debits_once() {
    let mut lab = Lab::start().await;
    let mut conn = lab.connect().await;
    let req = lab.debit(DEBIT, 500, PIN, HOLDER);
    let first = exchange(&mut conn, &req).await;
    // Again on another connection, as after a reconnect.
    let mut other = lab.connect().await;
    let again = exchange(&mut other, &req).await;
    assert_eq!(f39(&first), "00");
    assert_eq!(again, first);
    assert_eq!(lab.balance(DEBIT), START_FEN - 500);
}

#[tokio::test]
async fn a_reversal_restores_the_balance_and_a_repeat_is_acknowledged_again() {
    let mut lab = Lab::start().await;
    let mut conn = lab.connect().await;
    let purchase = lab.debit(DEBIT, 3_000, PIN, HOLDER);
    assert_eq!(f39(&exchange(&mut conn, &purchase).await), "00");
    assert_eq!(lab.balance(DEBIT), START_FEN - 3_000);

    let advice = lab.reversal(&purchase, Mti::REVERSAL_ADVICE);
    let answer = exchange(&mut conn, &advice).await;
    assert_eq!(answer.mti(), Mti::REVERSAL_RESPONSE);
    assert_eq!(f39(&answer), "00");
    assert_eq!(answer.original(), Some(name_of(&purchase)));
    assert_eq!(lab.balance(DEBIT), START_FEN);

    for _ in 0..2 {
        let repeat = lab.reversal(&purchase, Mti::REVERSAL_ADVICE_REPEAT);
        assert_eq!(f39(&exchange(&mut conn, &repeat).await), "00");
    }
    assert_eq!(lab.balance(DEBIT), START_FEN, "reversed once only");
}

#[tokio::test]
async fn a_purchase_whose_reversal_came_first_is_never_processed() {
    let mut lab = Lab::start().await;
    // Straight to the host, no socket: which request comes first is the
    // point here.
    let host = IssuerHost::new(lab.issuer.clone());
    let purchase = lab.debit(DEBIT, 700, PIN, HOLDER);
    let advice = lab.reversal(&purchase, Mti::REVERSAL_ADVICE);
    let ack = host.answer(&advice).await.expect("acknowledged");
    assert_eq!(f39(&ack), "00");
    assert_eq!(
        host.answer(&purchase).await,
        None,
        "the late 0200 is not answered"
    );
    assert_eq!(lab.balance(DEBIT), START_FEN);
    let key = super::request_key(&name_of(&purchase));
    use crate::bank::IssuerLink;
    assert_eq!(lab.issuer.query(&key).await, Ok(None), "nor processed");

    // A declined purchase reversed afterwards is still answered on repeat.
    let declined = lab.debit(DEBIT, 700, b"111111", HOLDER);
    assert_eq!(f39(&host.answer(&declined).await.unwrap()), "55");
    let advice = lab.reversal(&declined, Mti::REVERSAL_ADVICE);
    assert_eq!(f39(&host.answer(&advice).await.unwrap()), "00");
    assert_eq!(f39(&host.answer(&declined).await.unwrap()), "55");
}

#[tokio::test]
async fn a_slow_cards_purchase_does_not_hold_up_the_connection() {
    let mut lab = Lab::start().await;
    let mut conn = lab.connect().await;
    let slow = lab.debit(SLOW, 400, PIN, HOLDER);
    conn.send(&slow).await.unwrap();
    // Decided and debited at once, answered "later" (an hour): the echo
    // behind it is answered first.
    let echo = lab.network(NetworkCode::Echo);
    assert_eq!(f39(&exchange(&mut conn, &echo).await), "00");
    let other = lab.debit(DEBIT, 100, PIN, HOLDER);
    assert_eq!(f39(&exchange(&mut conn, &other).await), "00");
}

#[tokio::test]
async fn garbage_and_incomplete_requests_leave_the_connection_up() {
    let mut lab = Lab::start().await;
    let stream = TcpStream::connect(lab.addr).await.unwrap();
    let mut raw = Framed::new(
        stream,
        tokio_util::codec::LengthDelimitedCodec::builder()
            .length_field_length(2)
            .new_codec(),
    );
    // A well-framed message that does not decode: dropped, not answered.
    raw.send(tokio_util::bytes::Bytes::from_static(b"garbage!"))
        .await
        .unwrap();
    let mut conn = Framed::new(raw.into_inner(), FrameCodec::default());

    // A purchase without F61: answered 30, nothing debited.
    let mut req = lab.debit(DEBIT, 100, PIN, HOLDER);
    req.remove(61);
    assert_eq!(f39(&exchange(&mut conn, &req).await), "30");
    // Neither F52 nor F14: 30 too.
    let mut req = lab.debit(DEBIT, 100, PIN, HOLDER);
    req.remove(52);
    assert_eq!(f39(&exchange(&mut conn, &req).await), "30");
    // A card number that fails Luhn: 14.
    let mut req = lab.debit(DEBIT, 100, PIN, HOLDER);
    req.set_text(2, "6222000000000018").unwrap();
    assert_eq!(f39(&exchange(&mut conn, &req).await), "14");
    assert_eq!(lab.balance(DEBIT), START_FEN);

    let echo = lab.network(NetworkCode::Echo);
    assert_eq!(f39(&exchange(&mut conn, &echo).await), "00");
}

#[tokio::test]
async fn a_refund_of_a_purchase_the_issuer_never_approved_is_25() {
    let mut lab = Lab::start().await;
    let mut conn = lab.connect().await;
    let never_sent = lab.debit(DEBIT, 100, PIN, HOLDER);
    let mut refund = lab.financial(DEBIT, 100, ProcessingCode::Refund);
    refund.set_original(&name_of(&never_sent)).unwrap();
    assert_eq!(f39(&exchange(&mut conn, &refund).await), "25");

    let declined = lab.debit(DEBIT, 100, b"111111", HOLDER);
    assert_eq!(f39(&exchange(&mut conn, &declined).await), "55");
    let mut refund = lab.financial(DEBIT, 100, ProcessingCode::Refund);
    refund.set_original(&name_of(&declined)).unwrap();
    assert_eq!(f39(&exchange(&mut conn, &refund).await), "25");
    assert_eq!(lab.balance(DEBIT), START_FEN);
}

#[test]
fn the_request_key_ignores_f32s_zero_fill() {
    let mut name = OriginalRequest {
        mti: "0200".into(),
        stan: Stan::new(42).unwrap(),
        transmitted_at: "1130120000".into(),
        acquirer_id: "12345678".into(),
    };
    let key = super::request_key(&name);
    assert_eq!(key, "iso8583:12345678:1130120000:000042");
    name.acquirer_id = "00012345678".into();
    assert_eq!(super::request_key(&name), key);
    name.stan = Stan::new(43).unwrap();
    assert_ne!(super::request_key(&name), key);
}
