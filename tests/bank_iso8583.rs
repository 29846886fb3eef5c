//! voicepay's ISO 8583 codec against a peer it did not write: pyiso8583
//! 4.0.1 (Python, MIT) with its `default` specification, the wire format
//! voicepay documents (README, "ISO 8583 wire format").
//!
//! Every message type voicepay speaks, and one message per data element
//! (2–128, at its minimum and maximum length), and 200 messages with a
//! random set of fields (fixed seed), is encoded in Rust; Python
//! decodes it with `iso8583.decode(raw, iso8583.specs.default)` and must
//! find the same fields, and encodes those fields with `iso8583.encode`,
//! which must give the same bytes, which Rust decodes back to the same
//! message. The field table is compared with pyiso8583's too.
//!
//! Needs the venv at /var/cache/voicepay/venv (`VOICEPAY_VENV`) with
//! tests/iso8583-peer-requirements.txt installed (scripts/test does it). Skips
//! without it; fails under `CI=true`.
//!
//! `bank_serve`: `voicepay bank serve`, the issuer host, as a child process.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Map, Value};
use time::macros::datetime;
use voicepay::bank::iso8583::spec::{self, Encoding, LenType};
use voicepay::bank::iso8583::{
    CardholderAuth, EntryMode, Message, Mti, NetworkCode, ProcessingCode, ResponseCode,
};
use voicepay::domain::{Amount, CardNumber, Cvn2, Expiry, IdNumber, OriginalRequest, Stan};

#[path = "bank_iso8583/bank_serve.rs"]
mod bank_serve;

const PYISO_VERSION: &str = "4.0.1";

/// The venv's python with pyiso8583 at the pinned version, or `None` (a
/// skip), or a panic under `CI=true`.
fn python() -> Option<PathBuf> {
    let venv = std::env::var("VOICEPAY_VENV").unwrap_or_else(|_| "/var/cache/voicepay/venv".into());
    let python = PathBuf::from(venv).join("bin/python");
    let version = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m, iso8583; print(m.version('pyiso8583'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match version {
        Some(v) if v == PYISO_VERSION => Some(python),
        found => {
            let why = format!(
                "pyiso8583 {PYISO_VERSION} is not in {} (found {found:?}); scripts/test installs it (tests/iso8583-peer-requirements.txt)",
                python.display()
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true: {why}");
            }
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// pyiso8583's decoded form of a message: `t` and each field as text, a
/// binary field as upper-case hex.
fn doc(m: &Message) -> Value {
    let mut d = Map::new();
    d.insert("t".into(), json!(m.mti().as_str()));
    for f in m.field_numbers() {
        let data = m.get(f).unwrap();
        let value = match spec::spec(f).unwrap().encoding {
            Encoding::Binary => hex::encode_upper(data),
            Encoding::Ascii => String::from_utf8(data.to_vec()).unwrap(),
        };
        d.insert(f.to_string(), json!(value));
    }
    Value::Object(d)
}

fn typed_messages() -> Vec<Message> {
    let at = datetime!(2026-11-30 16:05:09 UTC);
    let card = CardNumber::parse("6222000000000017").unwrap();
    let id = IdNumber::parse("11010519491231002X").unwrap();
    let cvn2 = Cvn2::parse("123").unwrap();
    let mut purchase = Message::new(Mti::FINANCIAL_REQUEST);
    purchase
        .set_pan(&card)
        .unwrap()
        .set_processing_code(ProcessingCode::Purchase)
        .unwrap()
        .set_amount(Amount::parse(12_345, 1_000_000).unwrap())
        .unwrap()
        .set_transmission_time(at)
        .unwrap()
        .set_stan(Stan::new(42).unwrap())
        .unwrap()
        .set_local_time(at)
        .unwrap()
        .set_expiry(&Expiry::parse("1228").unwrap())
        .unwrap()
        .set_entry_mode(EntryMode::KeyedNoPin)
        .unwrap()
        .set_telephone_order()
        .unwrap()
        .set_acquirer_id("12345678")
        .unwrap()
        .set_terminal_id("VP000001")
        .unwrap()
        .set_acceptor_id("MERCHANT1")
        .unwrap()
        .set_currency_cny()
        .unwrap()
        .set_pin_block(&[0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0])
        .unwrap()
        .set_security_control("2000000000000000")
        .unwrap()
        .set_cardholder_auth(&CardholderAuth {
            id_number: &id,
            cvn2: Some(&cvn2),
        })
        .unwrap();
    let mut refund = purchase.clone();
    refund.set_processing_code(ProcessingCode::Refund).unwrap();
    let original = OriginalRequest {
        mti: "0200".into(),
        stan: Stan::new(42).unwrap(),
        transmitted_at: "1130160509".into(),
        acquirer_id: "12345678".into(),
    };
    refund.set_original(&original).unwrap();
    let mut response = Message::new(Mti::FINANCIAL_RESPONSE);
    response
        .set_processing_code(ProcessingCode::Purchase)
        .unwrap()
        .set_amount(Amount::parse(12_345, 1_000_000).unwrap())
        .unwrap()
        .set_transmission_time(at)
        .unwrap()
        .set_stan(Stan::new(42).unwrap())
        .unwrap()
        .set_acquirer_id("12345678")
        .unwrap()
        .set_rrn("633416000042")
        .unwrap()
        .set_approval_code("A1B2C3")
        .unwrap()
        .set_response_code(ResponseCode::APPROVED)
        .unwrap()
        .set_terminal_id("VP000001")
        .unwrap();
    let mut out = vec![purchase, refund, response];
    for mti in [
        Mti::REVERSAL_ADVICE,
        Mti::REVERSAL_ADVICE_REPEAT,
        Mti::REVERSAL_RESPONSE,
    ] {
        let mut m = Message::new(mti);
        m.set_amount(Amount::parse(12_345, 1_000_000).unwrap())
            .unwrap()
            .set_transmission_time(at)
            .unwrap()
            .set_stan(Stan::new(43).unwrap())
            .unwrap()
            .set_acquirer_id("12345678")
            .unwrap()
            .set_terminal_id("VP000001")
            .unwrap()
            .set_original(&original)
            .unwrap();
        if mti.is_response() {
            m.set_response_code(ResponseCode::APPROVED).unwrap();
        }
        out.push(m);
    }
    for (mti, code) in [
        (Mti::NETWORK_REQUEST, NetworkCode::SignOn),
        (Mti::NETWORK_RESPONSE, NetworkCode::SignOn),
        (Mti::NETWORK_REQUEST, NetworkCode::Echo),
    ] {
        let mut m = Message::new(mti);
        m.set_transmission_time(at)
            .unwrap()
            .set_stan(Stan::new(999_999).unwrap())
            .unwrap()
            .set_network_code(code)
            .unwrap();
        if mti.is_response() {
            m.set_response_code(ResponseCode::parse("96").unwrap())
                .unwrap();
        }
        out.push(m);
    }
    out
}

/// One message per data element, at its longest and (for a variable field)
/// at lengths 0 and 1: every field type, both bitmaps.
fn one_field_messages() -> Vec<Message> {
    let mut out = vec![];
    for field in (2..=128u8).filter(|&f| f != 65) {
        let s = spec::spec(field).unwrap();
        let lengths: &[usize] = match s.len_type {
            LenType::Fixed => &[s.max_len],
            _ => &[0, 1, s.max_len],
        };
        for &len in lengths {
            let data = value(field, len, u64::from(field));
            let mut m = Message::new(Mti::FINANCIAL_REQUEST);
            m.set_stan(Stan::new(1).unwrap()).unwrap();
            m.set(field, &data)
                .unwrap_or_else(|e| panic!("field {field}: {e}"));
            out.push(m);
        }
    }
    out
}

/// `len` bytes fit for `field`, varied by `seed`.
fn value(field: u8, len: usize, seed: u64) -> Vec<u8> {
    let s = spec::spec(field).unwrap();
    (0..len)
        .map(|i| {
            let n = (i as u64).wrapping_mul(37).wrapping_add(seed) as usize;
            match (s.encoding, s.numeric) {
                (Encoding::Binary, _) => n as u8,
                (_, true) => b'0' + (n % 10) as u8,
                // Printable ASCII, space included.
                (_, false) => b' ' + (n % 95) as u8,
            }
        })
        .collect()
}

/// Messages with a random set of fields (about one in eight, so most have
/// both bitmaps) at random lengths: fields next to each other in every
/// combination of types. A fixed seed keeps a failure reproducible.
fn random_messages() -> Vec<Message> {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mtis = [
        Mti::FINANCIAL_REQUEST,
        Mti::FINANCIAL_RESPONSE,
        Mti::REVERSAL_ADVICE,
        Mti::NETWORK_RESPONSE,
    ];
    (0..200)
        .map(|_| {
            let mut m = Message::new(mtis[(next() % 4) as usize]);
            for field in (2..=128u8).filter(|&f| f != 65) {
                if next() % 8 != 0 {
                    continue;
                }
                let s = spec::spec(field).unwrap();
                let len = match s.len_type {
                    LenType::Fixed => s.max_len,
                    _ => (next() % (s.max_len as u64 + 1)) as usize,
                };
                m.set(field, &value(field, len, next())).unwrap();
            }
            m
        })
        .collect()
}

#[test]
fn pyiso8583_reads_and_writes_the_same_bytes_as_voicepay() {
    let Some(python) = python() else { return };
    let messages: Vec<Message> = typed_messages()
        .into_iter()
        .chain(one_field_messages())
        .chain(random_messages())
        .collect();
    let cases: Vec<Value> = messages
        .iter()
        .map(|m| json!({"hex": hex::encode(m.encode()), "doc": doc(m)}))
        .collect();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/iso8583_peer/pyiso_crosscheck.py"
    );
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json!({ "cases": cases }).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the Python side failed");
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();

    // The field table is pyiso8583's default spec.
    for field in 2..=128u8 {
        let s = spec::spec(field).unwrap();
        let want = json!([
            s.len_type.prefix_digits(),
            s.max_len,
            if s.encoding == Encoding::Binary {
                "b"
            } else {
                "ascii"
            }
        ]);
        assert_eq!(
            reply["spec"][field.to_string()],
            want,
            "field {field} of the spec table"
        );
    }

    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), messages.len());
    for (m, r) in messages.iter().zip(results) {
        let fields: Vec<u8> = m.field_numbers().collect();
        let what = format!("{} with fields {fields:?}", m.mti());
        assert_eq!(
            r["decode_error"],
            Value::Null,
            "pyiso8583 cannot decode {what}"
        );
        assert_eq!(
            r["mismatch"],
            Value::Null,
            "pyiso8583 reads other values in {what}"
        );
        assert_eq!(
            r["encode_error"],
            Value::Null,
            "pyiso8583 cannot encode {what}"
        );
        let theirs = hex::decode(r["encoded"].as_str().unwrap()).unwrap();
        assert_eq!(
            theirs,
            m.encode(),
            "pyiso8583 encodes {what} to other bytes"
        );
        assert_eq!(
            &Message::decode(&theirs).unwrap(),
            m,
            "{what} from pyiso8583"
        );
    }
    eprintln!(
        "{} messages agree with pyiso8583 {PYISO_VERSION} both ways",
        messages.len()
    );
}
