//! The ISO 8583 issuer host voicepay did not write (issue #13,
//! tests/iso8583_peer/): its self-test drives it with pyiso8583-built frames
//! through every scenario (approvals, each mapped decline, wrong then right
//! PIN, no answer → 0420/0421 → 0430 with no debit left, a duplicate 0200,
//! refunds, unsolicited and duplicate replies, a dropped link, echo and
//! sign-on) and asserts its ledger, its protocol-error count and that its
//! log holds no secret. It runs in the Python virtual environment that
//! `scripts/test` fills from tests/iso8583-peer-requirements.txt
//! (`VOICEPAY_VENV`, default /var/cache/voicepay/venv); without it the test
//! says it skips, except under `CI=true`, where that is a failure.

use std::process::Command;
use voicepay_testkit::iso8583::peer_python;

#[test]
fn the_python_issuer_peer_passes_its_selftest() {
    let Some(python) = peer_python() else { return };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/iso8583_peer/selftest.py"
    );
    let out = Command::new(python)
        .arg(script)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the peer's self-test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("selftest passed"), "{stdout}");
    assert!(stdout.contains("ok  ledger:"), "{stdout}");
}
