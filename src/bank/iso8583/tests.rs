//! Unit tests: every field type both ways, the bitmaps, each message type
//! round-tripped, the response-code table, and hostile input.

use time::macros::datetime;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use super::*;
use crate::domain::{
    Amount, CardNumber, Cvn2, Expiry, IdNumber, OriginalRequest, ResultCode, Stan,
};

const PAN: &str = "6222000000000017";

fn purchase() -> Message {
    let card = CardNumber::parse(PAN).unwrap();
    let id = IdNumber::parse("11010519491231002X").unwrap();
    let cvn2 = Cvn2::parse("123").unwrap();
    let at = datetime!(2026-11-30 16:05:09 UTC);
    let mut m = Message::new(Mti::FINANCIAL_REQUEST);
    m.set_pan(&card).unwrap();
    m.set_processing_code(ProcessingCode::Purchase).unwrap();
    m.set_amount(Amount::parse(12_345, 1_000_000).unwrap())
        .unwrap();
    m.set_transmission_time(at).unwrap();
    m.set_stan(Stan::new(42).unwrap()).unwrap();
    m.set_local_time(at).unwrap();
    m.set_expiry(&Expiry::parse("1228").unwrap()).unwrap();
    m.set_entry_mode(EntryMode::KeyedWithPin).unwrap();
    m.set_telephone_order().unwrap();
    m.set_acquirer_id("12345678").unwrap();
    m.set_terminal_id("VP000001").unwrap();
    m.set_acceptor_id("MERCHANT1").unwrap();
    m.set_currency_cny().unwrap();
    m.set_pin_block(&[0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0])
        .unwrap();
    m.set_security_control("2000000000000000").unwrap();
    m.set_cardholder_auth(&CardholderAuth {
        id_number: &id,
        cvn2: Some(&cvn2),
    })
    .unwrap();
    m
}

#[test]
fn typed_fields_have_their_wire_form() {
    let m = purchase();
    assert_eq!(m.text(2), Some(PAN));
    assert_eq!(m.text(4), Some("000000012345"));
    assert_eq!(m.amount_fen(), Some(12_345));
    assert_eq!(m.transmission_time(), Some("1130160509"));
    assert_eq!(m.text(11), Some("000042"));
    // 16:05 UTC is 00:05 the next day in Shanghai.
    assert_eq!(m.text(12), Some("000509"));
    assert_eq!(m.text(13), Some("1201"));
    assert_eq!(m.text(14), Some("2812"), "F14 is YYMM");
    assert_eq!(m.text(22), Some("011"));
    assert_eq!(m.text(25), Some("08"));
    assert_eq!(m.text(41), Some("VP000001"));
    assert_eq!(m.text(42), Some("MERCHANT1      "));
    assert_eq!(m.acceptor_id(), Some("MERCHANT1"));
    assert_eq!(m.text(49), Some("156"));
    assert_eq!(m.text(61), Some("0111010519491231002X123"));
    assert_eq!(m.pan_masked().as_deref(), Some("622200******0017"));
}

#[test]
fn purchase_encodes_to_the_expected_bytes_and_back() {
    let m = purchase();
    let raw = m.encode();
    assert_eq!(&raw[..4], b"0200");
    // Fields 2,3,4,7,11,12,13,14 | 22,25 | 32 | 41,42 | 49,52,53 | 61: no
    // secondary bitmap.
    assert_eq!(
        &raw[4..12],
        &[0x72, 0x3C, 0x04, 0x81, 0x00, 0xC0, 0x98, 0x08]
    );
    assert_eq!(&raw[12..30], b"166222000000000017", "F2 is LLVAR");
    let back = Message::decode(&raw).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.stan(), Stan::new(42).ok());
    assert_eq!(
        back.pin_block(),
        Some(&[0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0][..])
    );
}

#[test]
fn secondary_bitmap_only_when_a_field_above_64_is_present() {
    let mut m = Message::new(Mti::NETWORK_REQUEST);
    m.set_stan(Stan::new(1).unwrap()).unwrap();
    let raw = m.encode();
    assert_eq!(raw.len(), 4 + 8 + 6);
    assert_eq!(raw[4] & 0x80, 0);
    m.set_network_code(NetworkCode::SignOn).unwrap();
    let raw = m.encode();
    assert_eq!(raw.len(), 4 + 16 + 6 + 3);
    assert_eq!(raw[4] & 0x80, 0x80, "bit 1 announces the secondary bitmap");
    // Field 70 is bit 6 of the secondary bitmap: byte 0, mask 0x04.
    assert_eq!(&raw[12..20], &[0x04, 0, 0, 0, 0, 0, 0, 0]);
    let back = Message::decode(&raw).unwrap();
    assert_eq!(back.network_code(), Some(NetworkCode::SignOn));
    assert_eq!(back, m);
}

#[test]
fn every_message_type_round_trips() {
    let at = datetime!(2026-01-02 03:04:05 UTC);
    let original = OriginalRequest {
        mti: "0200".into(),
        stan: Stan::new(7).unwrap(),
        transmitted_at: "0102030405".into(),
        acquirer_id: "12345678".into(),
    };
    for mti in [
        Mti::FINANCIAL_REQUEST,
        Mti::FINANCIAL_RESPONSE,
        Mti::REVERSAL_ADVICE,
        Mti::REVERSAL_ADVICE_REPEAT,
        Mti::REVERSAL_RESPONSE,
        Mti::NETWORK_REQUEST,
        Mti::NETWORK_RESPONSE,
    ] {
        let mut m = Message::new(mti);
        m.set_transmission_time(at)
            .unwrap()
            .set_stan(Stan::new(999_999).unwrap())
            .unwrap();
        m.set_terminal_id("T1").unwrap();
        if mti.is_response() {
            m.set_response_code(ResponseCode::APPROVED).unwrap();
            m.set_rrn("000000000001")
                .unwrap()
                .set_approval_code("A1B2C3")
                .unwrap();
        }
        if mti.as_str().starts_with("04") {
            m.set_original(&original).unwrap();
        }
        let back = Message::decode(&m.encode()).unwrap();
        assert_eq!(back, m, "{mti:?}");
        assert!(mti.name().is_some());
    }
    assert_eq!(
        Mti::FINANCIAL_REQUEST.response(),
        Some(Mti::FINANCIAL_RESPONSE)
    );
    assert_eq!(
        Mti::REVERSAL_ADVICE_REPEAT.response(),
        Some(Mti::REVERSAL_RESPONSE)
    );
    assert_eq!(Mti::NETWORK_REQUEST.response(), Some(Mti::NETWORK_RESPONSE));
    assert_eq!(Mti::FINANCIAL_RESPONSE.response(), None);
}

#[test]
fn f90_names_the_original_in_42_digits() {
    let original = OriginalRequest {
        mti: "0200".into(),
        stan: Stan::new(123).unwrap(),
        transmitted_at: "1130160509".into(),
        acquirer_id: "12345678".into(),
    };
    let s = original.to_f90().unwrap();
    assert_eq!(
        s,
        "0200000123113016050900012345678000000000000"[..42].to_owned()
    );
    assert_eq!(s.len(), 42);
    assert_eq!(OriginalRequest::from_f90(&s), Some(original.clone()));
    let bad = OriginalRequest {
        acquirer_id: "123456789012".into(),
        ..original
    };
    assert!(bad.to_f90().is_err());
    let mut m = Message::new(Mti::REVERSAL_ADVICE);
    assert_eq!(
        m.set_original(&bad).unwrap_err(),
        CodecError::OutOfRange { field: 90 }
    );
    assert_eq!(OriginalRequest::from_f90("02000001"), None);
}

#[test]
fn fixed_llvar_lllvar_and_binary_fields_are_checked_on_set() {
    let mut m = Message::new(Mti::FINANCIAL_REQUEST);
    // Fixed ASCII numeric.
    assert_eq!(
        m.set_text(3, "00000"),
        Err(CodecError::WrongLength {
            field: 3,
            len: 5,
            expected: 6
        })
    );
    assert_eq!(
        m.set_text(3, "00000A"),
        Err(CodecError::NotNumeric { field: 3 })
    );
    // LLVAR: 0 to 19.
    assert!(m.set_text(2, "").is_ok());
    assert_eq!(
        m.set_text(2, "12345678901234567890"),
        Err(CodecError::TooLong {
            field: 2,
            len: 20,
            max: 19
        })
    );
    // LLLVAR: up to 999, any ASCII.
    assert!(m.set_text(61, &"x".repeat(999)).is_ok());
    assert_eq!(
        m.set_text(61, &"x".repeat(1000)),
        Err(CodecError::TooLong {
            field: 61,
            len: 1000,
            max: 999
        })
    );
    assert_eq!(m.set_text(61, "é"), Err(CodecError::NotAscii { field: 61 }));
    // Fixed binary: exactly 8 bytes, any value.
    assert!(m.set(52, &[0xFF; 8]).is_ok());
    assert!(m.set(64, &[0x00; 8]).is_ok());
    assert!(m.set(128, &[0x80; 8]).is_ok());
    assert_eq!(
        m.set(52, &[0; 7]),
        Err(CodecError::WrongLength {
            field: 52,
            len: 7,
            expected: 8
        })
    );
    // Not data elements.
    for field in [0, 1, 65, 129, 255] {
        assert_eq!(m.set(field, b"1"), Err(CodecError::NoSuchField { field }));
    }
    // Typed range checks.
    assert_eq!(
        m.set_terminal_id("123456789"),
        Err(CodecError::TooLong {
            field: 41,
            len: 9,
            max: 8
        })
    );
    assert_eq!(
        m.set_acquirer_id("12A"),
        Err(CodecError::NotNumeric { field: 32 })
    );
    assert!(Stan::new(0).is_err());
    assert!(Stan::new(1_000_000).is_err());
    let raw = m.encode();
    assert_eq!(Message::decode(&raw).unwrap(), m);
}

#[test]
fn lllvar_and_llvar_prefixes_on_the_wire() {
    let mut m = Message::new(Mti::FINANCIAL_REQUEST);
    m.set_text(61, "abc").unwrap().set_text(32, "7").unwrap();
    let raw = m.encode();
    assert!(
        raw.ends_with(b"017003abc"),
        "F32 then F61: {:?}",
        String::from_utf8_lossy(&raw[12..])
    );
}

#[test]
fn response_code_table() {
    use F39Outcome::*;
    let cases = [
        ("00", Approved),
        ("55", WrongSecret),
        ("51", Declined(ResultCode::InsufficientFunds)),
        ("75", Declined(ResultCode::PinTriesExceeded)),
        ("54", Declined(ResultCode::CardExpired)),
        ("14", Declined(ResultCode::InvalidCard)),
        ("62", Declined(ResultCode::CardRestricted)),
        ("61", Declined(ResultCode::OverLimit)),
        ("91", Declined(ResultCode::IssuerUnavailable)),
        ("96", Declined(ResultCode::IssuerUnavailable)),
        ("63", Declined(ResultCode::IdMismatch)),
    ];
    for (code, want) in cases {
        let rc = ResponseCode::parse(code).unwrap();
        assert_eq!(rc.outcome(), want, "{code}");
        let result = match want {
            Approved => ResultCode::Approved,
            WrongSecret => ResultCode::WrongSecret,
            Declined(r) => r,
            UnknownDecline(_) => unreachable!(),
        };
        // The inverse, for voicepay's own host (91 is its single
        // "unavailable").
        let back = ResponseCode::for_result(result).unwrap();
        assert_eq!(back.outcome(), want, "{code}");
    }
    let raw = ResponseCode::parse("05").unwrap();
    assert_eq!(raw.outcome(), UnknownDecline(raw));
    assert_eq!(raw.as_str(), "05");
    assert_eq!(ResponseCode::parse("0"), None);
    assert_eq!(ResponseCode::for_result(ResultCode::NoAnswer), None);
}

#[test]
fn debug_and_errors_never_show_pan_pin_block_expiry_or_f61() {
    let m = purchase();
    let shown = format!("{m:?}");
    for secret in [
        PAN,
        "123456789ABCDEF0",
        "2812",
        "11010519491231002X",
        "X123",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("622200******0017"), "{shown}");
    assert!(shown.contains("<8 bytes redacted>"), "{shown}");
    // An error about a secret field names the field only.
    let mut raw = m.encode();
    let at = raw.windows(3).position(|w| w == b"023").unwrap();
    raw[at + 3] = 0xFF; // a non-ASCII byte in F61's data
    let err = Message::decode(&raw).unwrap_err();
    assert_eq!(err, CodecError::NotAscii { field: 61 });
    let text = format!("{err} {err:?}");
    assert!(!text.contains("1101051949"), "{text}");
}

#[test]
fn hostile_input_gets_a_typed_error() {
    let good = purchase().encode();
    let cases: Vec<(Vec<u8>, CodecError)> = vec![
        (
            vec![],
            CodecError::Truncated {
                part: Part::Mti,
                needed: 4,
                available: 0,
            },
        ),
        (b"02A0".to_vec(), CodecError::BadMti),
        (
            b"0200\x72".to_vec(),
            CodecError::Truncated {
                part: Part::PrimaryBitmap,
                needed: 8,
                available: 1,
            },
        ),
        (
            [b"0200\x80\0\0\0\0\0\0\0".as_slice(), &[0; 3]].concat(),
            CodecError::Truncated {
                part: Part::SecondaryBitmap,
                needed: 8,
                available: 3,
            },
        ),
        (
            [
                b"0800\x80\0\0\0\0\0\0\0\x80\0\0\0\0\0\0\0".as_slice(),
                &[0; 8],
            ]
            .concat(),
            CodecError::UnknownBitmapBit { bit: 65 },
        ),
        (
            b"0200\x40\0\0\0\0\0\0\0".to_vec(),
            CodecError::Truncated {
                part: Part::Field(2),
                needed: 2,
                available: 0,
            },
        ),
        (
            b"0200\x40\0\0\0\0\0\0\0\x31\x3A".to_vec(),
            CodecError::BadLengthPrefix { field: 2 },
        ),
        (
            b"0200\x40\0\0\0\0\0\0\0 9".to_vec(),
            CodecError::BadLengthPrefix { field: 2 },
        ),
        (
            b"0200\x40\0\0\0\0\0\0\x0020".to_vec(),
            CodecError::TooLong {
                field: 2,
                len: 20,
                max: 19,
            },
        ),
        (
            b"0200\x40\0\0\0\0\0\0\x0016123".to_vec(),
            CodecError::Truncated {
                part: Part::Field(2),
                needed: 16,
                available: 3,
            },
        ),
        (
            b"0200\x20\0\0\0\0\0\0\x0000A000".to_vec(),
            CodecError::NotNumeric { field: 3 },
        ),
        (
            [good.as_slice(), b"xy"].concat(),
            CodecError::TrailingBytes { count: 2 },
        ),
        (
            good[..good.len() - 1].to_vec(),
            CodecError::Truncated {
                part: Part::Field(61),
                needed: 23,
                available: 22,
            },
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(Message::decode(&raw), Err(want.clone()), "{want}");
    }
}

#[test]
fn every_prefix_and_every_byte_flip_of_a_message_decodes_or_errs_without_panic() {
    let good = purchase().encode();
    for n in 0..good.len() {
        assert!(Message::decode(&good[..n]).is_err(), "prefix of {n} bytes");
    }
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..good.len() {
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut raw = good.clone();
            raw[i] = seed as u8;
            if let Ok(m) = Message::decode(&raw) {
                // Whatever decodes re-encodes to a message that decodes
                // the same.
                assert_eq!(Message::decode(&m.encode()).as_ref(), Ok(&m));
            }
        }
    }
}

#[test]
fn frame_codec_splits_joins_and_refuses_oversize() {
    let mut codec = FrameCodec::new(64);
    let mut m = Message::new(Mti::NETWORK_REQUEST);
    m.set_stan(Stan::new(5).unwrap())
        .unwrap()
        .set_network_code(NetworkCode::Echo)
        .unwrap();
    let mut buf = BytesMut::new();
    codec.encode(&m, &mut buf).unwrap();
    codec.encode(m.clone(), &mut buf).unwrap();
    let len = m.encode().len();
    assert_eq!(&buf[..2], &(len as u16).to_be_bytes());
    // Byte by byte: nothing until a frame is complete.
    let mut rx = BytesMut::new();
    let mut got = vec![];
    for b in buf.iter() {
        rx.extend_from_slice(&[*b]);
        while let Some(item) = codec.decode(&mut rx).unwrap() {
            got.push(item.unwrap());
        }
    }
    assert_eq!(got, vec![m.clone(), m.clone()]);
    assert!(rx.is_empty());

    // A bad message is an item error; the next frame still decodes.
    let mut rx = BytesMut::from(&[0, 4, b'0', b'2', b'X', b'0'][..]);
    codec.encode(&m, &mut rx).unwrap();
    assert_eq!(
        codec.decode(&mut rx).unwrap(),
        Some(Err(CodecError::BadMti))
    );
    assert_eq!(codec.decode(&mut rx).unwrap(), Some(Ok(m.clone())));

    let mut rx = BytesMut::from(&[0, 65][..]);
    assert!(matches!(
        codec.decode(&mut rx),
        Err(FrameError::TooLarge { len: 65, max: 64 })
    ));
    let mut rx = BytesMut::from(&[0, 0][..]);
    assert!(matches!(codec.decode(&mut rx), Err(FrameError::Empty)));
    let mut big = Message::new(Mti::FINANCIAL_REQUEST);
    big.set_text(48, &"x".repeat(100)).unwrap();
    let mut out = BytesMut::new();
    assert!(matches!(
        codec.encode(&big, &mut out),
        Err(FrameError::TooLarge { max: 64, .. })
    ));
    assert!(out.is_empty());
    assert_eq!(FrameCodec::new(1 << 20).max_frame(), 65_535);
}

#[test]
fn the_field_table_matches_pyiso8583_default_spot_checks() {
    use spec::{Encoding, LenType};
    let s = |f| *spec::spec(f).unwrap();
    assert_eq!((s(2).len_type, s(2).max_len), (LenType::LlVar, 19));
    assert_eq!((s(32).len_type, s(32).max_len), (LenType::LlVar, 11));
    assert_eq!((s(61).len_type, s(61).max_len), (LenType::LllVar, 999));
    assert_eq!((s(52).encoding, s(52).max_len), (Encoding::Binary, 8));
    assert_eq!((s(53).len_type, s(53).max_len), (LenType::Fixed, 16));
    assert_eq!((s(90).len_type, s(90).max_len), (LenType::Fixed, 42));
    assert_eq!(s(128).encoding, Encoding::Binary);
    assert!(spec::spec(1).is_none() && spec::spec(129).is_none());
}

#[test]
fn a_reply_echoes_the_request_without_the_pan_and_matches_it() {
    let req = purchase();
    let mut answer = req.reply().unwrap();
    assert_eq!(answer.mti(), Mti::FINANCIAL_RESPONSE);
    assert!(!answer.has(2) && !answer.has(52) && !answer.has(61) && !answer.has(14));
    for f in [3, 4, 7, 11, 12, 13, 32, 41, 42, 49] {
        assert_eq!(answer.get(f), req.get(f), "field {f}");
    }
    answer
        .set_response_code(ResponseCode::parse("51").unwrap())
        .unwrap();
    let answer = Message::decode(&answer.encode()).unwrap();
    assert_eq!(answer.match_key(), req.match_key());
    assert_eq!(
        answer.match_key(),
        Some((Stan::new(42).unwrap(), "VP000001"))
    );
    assert_eq!(
        answer.response_code().map(ResponseCode::outcome),
        Some(F39Outcome::Declined(ResultCode::InsufficientFunds))
    );
    assert!(answer.reply().is_none(), "an answer has no answer");
    let mut echo = Message::new(Mti::REVERSAL_ADVICE_REPEAT);
    echo.set_stan(Stan::new(9).unwrap()).unwrap();
    assert_eq!(echo.reply().unwrap().mti(), Mti::REVERSAL_RESPONSE);
}

#[tokio::test]
async fn framed_stream_keeps_going_after_a_bad_message() {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::{FramedRead, FramedWrite};

    let (client, server) = tokio::io::duplex(256);
    let (server_rx, _server_tx) = tokio::io::split(server);
    let (_client_rx, mut client_tx) = tokio::io::split(client);
    let mut rx = FramedRead::new(server_rx, FrameCodec::default());
    // A garbage frame, then a real one through the encoder.
    client_tx
        .write_all(&[0, 3, b'x', b'y', b'z'])
        .await
        .unwrap();
    let mut tx = FramedWrite::new(client_tx, FrameCodec::default());
    let mut m = Message::new(Mti::NETWORK_REQUEST);
    m.set_stan(Stan::new(2).unwrap())
        .unwrap()
        .set_network_code(NetworkCode::Echo)
        .unwrap();
    tx.send(m.clone()).await.unwrap();
    let first = rx.next().await.unwrap().unwrap();
    assert_eq!(
        first,
        Err(CodecError::Truncated {
            part: Part::Mti,
            needed: 4,
            available: 3
        })
    );
    assert_eq!(rx.next().await.unwrap().unwrap(), Ok(m));
    // Over the maximum: the stream ends with an error.
    let mut raw = tx.into_inner();
    raw.write_all(&[0xFF, 0xFF]).await.unwrap();
    assert!(matches!(
        rx.next().await,
        Some(Err(FrameError::TooLarge {
            len: 65_535,
            max: 8192
        }))
    ));
}
