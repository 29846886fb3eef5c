use super::*;

/// The double-length key of countless TDES examples (odd parity throughout).
const K: &str = "0123456789ABCDEFFEDCBA9876543210";

fn zpk() -> Zpk {
    Zpk::from_hex("zpk1", K).unwrap()
}

fn aes_key() -> ZonePinKey {
    ZonePinKey::from_bytes(&[9u8; 32]).unwrap()
}

/// ISO 9564-1 format 0, the worked example of Wikipedia's "ISO 9564" article
/// (PIN 1234, PAN 43219876543210987: PIN field 041234FFFFFFFFFF, PAN field
/// 0000987654321098, block 0412AC89ABCDEF67) and the docstring example of
/// psec 1.3.0 `encode_pinblock_iso_0` (PAN 5544332211009966 → 041277CDDEEFF669).
#[test]
fn format0_clear_blocks_match_published_examples() {
    let clear = |pin: &[u8], pan: &str| {
        let mut b = pin_field0(pin).unwrap();
        xor_into(&mut b, &pan_field0(pan).unwrap());
        hex::encode_upper(*b)
    };
    assert_eq!(
        hex::encode_upper(*pin_field0(b"1234").unwrap()),
        "041234FFFFFFFFFF"
    );
    assert_eq!(
        hex::encode_upper(pan_field0("43219876543210987").unwrap()),
        "0000987654321098"
    );
    assert_eq!(clear(b"1234", "43219876543210987"), "0412AC89ABCDEF67");
    assert_eq!(clear(b"1234", "5544332211009966"), "041277CDDEEFF669");
    assert_eq!(
        hex::encode_upper(*pin_field0(b"123456789012").unwrap()),
        "0C123456789012FF"
    );
}

/// KCVs: TDES K = 0123456789ABCDEF FEDCBA9876543210 → 08D7B4, and
/// 0123456789ABCDEF twice (single DES in TDES form, refused as a ZPK) →
/// D5D44F, the classic single-DES KCV of 0123456789ABCDEF. Same values from
/// psec 1.3.0 `psec.des.generate_kcv(key, 3)`.
#[test]
fn kcv_is_tdes_of_a_zero_block() {
    let k = zpk();
    assert_eq!(k.kcv(), "08D7B4");
    assert_eq!(k.id(), "zpk1");
    let single =
        TdesEde2::new_from_slice(&hex::decode("0123456789ABCDEF0123456789ABCDEF").unwrap())
            .unwrap();
    let mut block = GenericArray::from([0u8; 8]);
    single.encrypt_block(&mut block);
    assert_eq!(hex::encode_upper(&block[..3]), "D5D44F");
}

/// Enciphered format 0 blocks under K, as computed by psec 1.3.0
/// (`encrypt_tdes_ecb(K, encode_pinblock_iso_0(pin, pan))`, on the
/// `cryptography` package's TDES), and back.
#[test]
fn format0_enciphers_like_psec_and_deciphers() {
    let k = zpk();
    for (pin, pan, want) in [
        ("1234", "4111111111111111", "2A3D408A1977DDE9"),
        ("805137", "6222000000000017", "11DDD3B6FFEB9925"),
    ] {
        let b = PinBlock0::encipher(pin.as_bytes(), pan, &k).unwrap();
        assert_eq!(hex::encode_upper(b.as_bytes()), want);
        assert_eq!(&**b.decipher(pan, &k).unwrap(), pin.as_bytes());
        assert!(b.verify(pan, &k, pin.as_bytes()));
        assert!(!b.verify(pan, &k, b"805138"));
    }
}

#[test]
fn translation_keeps_the_pin_and_changes_the_key() {
    let aes = aes_key();
    let k = zpk();
    let pan = "6222000000000017";
    let b4 = PinBlock::encipher(b"805137", pan, &aes).unwrap();
    let b0 = translate_format4_to_format0(&b4, &aes, pan, &k).unwrap();
    assert_eq!(hex::encode_upper(b0.as_bytes()), "11DDD3B6FFEB9925");
    assert_eq!(&**b0.decipher(pan, &k).unwrap(), b"805137");
    // a fresh format 4 block of the same PIN gives the same format 0 block
    let again = PinBlock::encipher(b"805137", pan, &aes).unwrap();
    assert_ne!(again, b4);
    assert_eq!(
        translate_format4_to_format0(&again, &aes, pan, &k).unwrap(),
        b0
    );
    for pin in ["1234", "123456789012"] {
        let b4 = PinBlock::encipher(pin.as_bytes(), "6217000000000014", &aes).unwrap();
        let b0 = translate_format4_to_format0(&b4, &aes, "6217000000000014", &k).unwrap();
        assert_eq!(
            &**b0.decipher("6217000000000014", &k).unwrap(),
            pin.as_bytes()
        );
    }
}

#[test]
fn translation_refuses_a_wrong_key_pan_or_block() {
    let aes = aes_key();
    let k = zpk();
    let pan = "6222000000000017";
    let b4 = PinBlock::encipher(b"805137", pan, &aes).unwrap();
    let other = ZonePinKey::from_bytes(&[8u8; 32]).unwrap();
    assert_eq!(
        translate_format4_to_format0(&b4, &other, pan, &k),
        Err(PinBlockError::Invalid)
    );
    assert_eq!(
        translate_format4_to_format0(&b4, &aes, "6222000000000025", &k),
        Err(PinBlockError::Invalid)
    );
    let mut bytes = *b4.as_bytes();
    bytes[3] ^= 0x40;
    assert_eq!(
        translate_format4_to_format0(&PinBlock::from_bytes(bytes), &aes, pan, &k),
        Err(PinBlockError::Invalid)
    );
    // format 0 needs 13-19 digits (12 before the check digit)
    let short = PinBlock::encipher(b"805137", "622200000017", &aes).unwrap();
    assert_eq!(
        translate_format4_to_format0(&short, &aes, "622200000017", &k),
        Err(PinBlockError::BadPan)
    );
    assert_eq!(
        pan_field0("62220000000000171234"),
        Err(PinBlockError::BadPan)
    );
    assert_eq!(pan_field0("622200000000001x"), Err(PinBlockError::BadPan));
}

#[test]
fn format0_decipher_refuses_wrong_key_pan_or_shape() {
    let k = zpk();
    let pan = "6222000000000017";
    let b = PinBlock0::encipher(b"805137", pan, &k).unwrap();
    assert_eq!(
        b.decipher("6222000000000025", &k),
        Err(PinBlockError::Invalid)
    );
    let other = Zpk::from_hex("zpk2", "89ABCDEF0123456776543210FEDCBA98").unwrap();
    assert_eq!(b.decipher(pan, &other), Err(PinBlockError::Invalid));
    assert!(!b.verify(pan, &other, b"805137"));
    // well enciphered but not format 0: control 1, length 3, fill E, a digit A
    let raw = |clear: &str| {
        let mut f: [u8; 8] = hex::decode(clear).unwrap().try_into().unwrap();
        xor_into(&mut f, &pan_field0(pan).unwrap());
        k.encrypt(&mut f);
        PinBlock0::from_bytes(f)
    };
    assert!(raw("06805137FFFFFFFF").decipher(pan, &k).is_ok());
    for bad in [
        "16805137FFFFFFFF",
        "03805FFFFFFFFFFF",
        "06805137FFFFFFFE",
        "068051A7FFFFFFFF",
    ] {
        assert_eq!(
            raw(bad).decipher(pan, &k),
            Err(PinBlockError::Invalid),
            "{bad}"
        );
    }
    for pin in [&b"123"[..], b"1234567890123", b"12a4"] {
        assert_eq!(
            PinBlock0::encipher(pin, pan, &k),
            Err(PinBlockError::BadPin)
        );
    }
}

#[test]
fn zpk_shapes_are_checked() {
    assert_eq!(
        Zpk::from_hex("z", "0123456789ABCDEF").unwrap_err(),
        ZpkError::Length(16)
    );
    assert_eq!(
        Zpk::from_hex("z", "0123456789ABCDEFFEDCBA98765432100123456789ABCDEF").unwrap_err(),
        ZpkError::Length(48)
    );
    assert_eq!(
        Zpk::from_hex("z", "0123456789ABCDEFFEDCBA987654321G").unwrap_err(),
        ZpkError::NotHex
    );
    assert_eq!(
        Zpk::from_hex("z", "0123456789ABCDEF0123456789ABCDEF").unwrap_err(),
        ZpkError::EqualHalves
    );
    // one mistyped digit (…3210 → …3211) breaks the last byte's parity
    assert_eq!(
        Zpk::from_hex("z", "0123456789ABCDEFFEDCBA9876543211").unwrap_err(),
        ZpkError::Parity(15)
    );
    assert_eq!(
        Zpk::from_hex("z", "0023456789ABCDEFFEDCBA9876543210").unwrap_err(),
        ZpkError::Parity(0)
    );
    for id in ["", "has space", &"x".repeat(33)] {
        assert_eq!(Zpk::from_hex(id, K).unwrap_err(), ZpkError::BadId, "{id:?}");
    }
    // lower case and surrounding blanks are fine
    let k = Zpk::from_hex("zpk-2026_1", &format!(" {} ", K.to_lowercase())).unwrap();
    assert_eq!(k.kcv(), "08D7B4");
}

#[test]
fn debug_hides_keys_and_pins() {
    let k = zpk();
    let shown = format!("{k:?}");
    assert_eq!(shown, "Zpk(id=zpk1, kcv=08D7B4)");
    assert!(!shown.contains("0123456789"));
    let b = PinBlock0::from_bytes(hex::decode("2A3D408A1977DDE9").unwrap().try_into().unwrap());
    assert_eq!(format!("{b:?}"), "PinBlock0(2a3d…)");
    for e in [
        ZpkError::Parity(3),
        ZpkError::Length(5),
        ZpkError::EqualHalves,
    ] {
        assert!(!e.to_string().contains("0123"), "{e}");
    }
}

/// Every clear intermediate of a translation is wiped: the scratch space
/// holds the PIN digits and the clear format 0 block while the translation
/// runs, and nothing afterwards, on success and on failure.
#[test]
fn translation_wipes_its_scratch() {
    let aes = aes_key();
    let k = zpk();
    let pan = "6222000000000017";
    let b4 = PinBlock::encipher(b"805137", pan, &aes).unwrap();
    // a scratch left dirty by someone else is wiped too
    let mut s = Scratch {
        pin: *b"999999999999",
        len: 12,
        clear0: [0xAB; 8],
    };
    let b0 = translate_with(&mut s, &b4, &aes, pan, &k).unwrap();
    assert_eq!((s.pin, s.len, s.clear0), ([0u8; 12], 0, [0u8; 8]));
    assert_eq!(&**b0.decipher(pan, &k).unwrap(), b"805137");

    s.pin = *b"999999999999";
    s.clear0 = [0xAB; 8];
    let other = ZonePinKey::from_bytes(&[8u8; 32]).unwrap();
    assert!(translate_with(&mut s, &b4, &other, pan, &k).is_err());
    assert_eq!((s.pin, s.len, s.clear0), ([0u8; 12], 0, [0u8; 8]));
}

/// Cross-check with an implementation voicepay did not write: psec 1.3.0
/// (tests/iso8583-peer-requirements.txt) in the virtual environment at
/// `$VOICEPAY_VENV` (default /var/cache/voicepay/venv). psec enciphers a
/// format 4 block, voicepay translates it to format 0, psec deciphers that
/// with `decrypt_tdes_ecb` + `decode_pinblock_iso_0` and must recover the
/// PIN; and voicepay deciphers a format 0 block psec made. Skipped (with a
/// message) when the venv or psec is missing, unless `CI=true`.
#[test]
fn psec_recovers_the_translated_pin() {
    let venv = std::env::var("VOICEPAY_VENV").unwrap_or_else(|_| "/var/cache/voicepay/venv".into());
    let python = std::path::Path::new(&venv).join("bin/python");
    let has_psec = std::process::Command::new(&python)
        .args(["-c", "import psec"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_psec {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but psec is missing in {venv}: pip install -r tests/iso8583-peer-requirements.txt"
        );
        eprintln!("SKIPPED: psec is not installed in {venv} (pip install -r tests/iso8583-peer-requirements.txt)");
        return;
    }
    let aes_hex = "00112233445566778899AABBCCDDEEFF";
    let aes = ZonePinKey::from_bytes(&hex::decode(aes_hex).unwrap()).unwrap();
    let zpk_hex = "89ABCDEF0123456776543210FEDCBA98";
    let k = Zpk::from_hex("zpk2", zpk_hex).unwrap();
    let script = r#"
import sys, warnings
warnings.simplefilter("ignore")
from psec import des, pinblock
aes, zpk = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
for line in sys.stdin:
    op, pin, pan, block = (line.split() + ["", "", ""])[:4]
    if op == "enc4":
        print(pinblock.encipher_pinblock_iso_4(aes, pin, pan).hex())
    elif op == "dec0":
        print(pinblock.decode_pinblock_iso_0(des.decrypt_tdes_ecb(zpk, bytes.fromhex(block)), pan))
    elif op == "enc0":
        print(des.encrypt_tdes_ecb(zpk, pinblock.encode_pinblock_iso_0(pin, pan)).hex())
    elif op == "kcv":
        print(des.generate_kcv(zpk, 3).hex().upper())
"#;
    let run = |input: String| -> Vec<String> {
        use std::io::Write;
        let mut child = std::process::Command::new(&python)
            .args(["-c", script, aes_hex, zpk_hex])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "psec failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let cases = [
        ("1234", "4111111111111111"),
        ("805137", "6222000000000017"),
        ("123456789012", "6217000000000014123"),
        ("0000", "6222021234567890128"),
    ];
    let mut input = "kcv\n".to_string();
    for (pin, pan) in cases {
        input += &format!("enc4 {pin} {pan}\nenc0 {pin} {pan}\n");
    }
    let out = run(input);
    assert_eq!(out[0], k.kcv());
    let mut dec = String::new();
    for (i, (pin, pan)) in cases.iter().enumerate() {
        let b4 = PinBlock::from_bytes(hex::decode(&out[1 + 2 * i]).unwrap().try_into().unwrap());
        let b0 = translate_format4_to_format0(&b4, &aes, pan, &k).unwrap();
        dec += &format!("dec0 - {pan} {}\n", hex::encode(b0.as_bytes()));
        let theirs =
            PinBlock0::from_bytes(hex::decode(&out[2 + 2 * i]).unwrap().try_into().unwrap());
        assert_eq!(
            theirs, b0,
            "voicepay's format 0 block equals psec's for {pan}"
        );
        assert_eq!(&**theirs.decipher(pan, &k).unwrap(), pin.as_bytes());
    }
    let pins: Vec<&str> = cases.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        run(dec),
        pins,
        "psec recovers every PIN from voicepay's format 0 blocks"
    );
}
