"""Self-test of the ISO 8583 issuer peer (peer.py): starts it, drives it with
frames built by pyiso8583 (PIN blocks by psec) through every scenario, and
asserts the answers, the ledger file and the peer's log. Exit status 0 on
success; an AssertionError (and status 1) names the first failure.

    /var/cache/voicepay/venv/bin/python tests/iso8583_peer/selftest.py
    /var/cache/voicepay/venv/bin/python tests/iso8583_peer/selftest.py \
        --against 127.0.0.1:PORT

The second form drives another host speaking the same wire format (e.g.
`voicepay bank serve`, fresh, with the same test cards and the lab ZPK
below) through the scenarios that need no control channel, asserting its
answers only (its ledger is its own).

Run by the Rust test `iso8583_peer::the_python_issuer_peer_passes_its_selftest`
(tests/api/iso8583_peer.rs), so `scripts/test` covers it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")

import iso8583  # noqa: E402
import iso8583.specs  # noqa: E402
from psec import des as psec_des  # noqa: E402
from psec import pinblock as psec_pinblock  # noqa: E402

SPEC = iso8583.specs.default
HERE = os.path.dirname(os.path.abspath(__file__))
# Lab-only zone PIN key (published; never use it anywhere real).
ZPK = "0123456789ABCDEFFEDCBA9876543210"
ACQ = "12345678"
HOLDER = "11010519491231002X"
OTHER_ID = "310115198506154322"  # the holder of DEBIT2
DEBIT, DEBIT2, POOR, LOST, DOWN = (
    "6222000000000017", "6217000000000014", "6222000000000025",
    "6222000000000033", "6222000000000066")
SLOW = "6222000000000041"
CREDIT, CREDIT_EXPIRED = "6250000000000012", "6250000000000020"
PIN, PIN2, WRONG_PIN = "805137", "246810", "111111"
IO_TIMEOUT = 30  # a guard against hanging forever, not a timed assertion

_stan = 0


def next_stan() -> str:
    global _stan
    _stan += 1
    return f"{_stan:06d}"


def f7_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%m%d%H%M%S")


def pin_block(pin: str, pan: str) -> str:
    clear = psec_pinblock.encode_pinblock_iso_0(pin, pan)
    return psec_des.encrypt_tdes_ecb(bytes.fromhex(ZPK), clear).hex().upper()


def f61(id_number: str, cvn2: str | None = None) -> str:
    return "01" + id_number.ljust(18) + (cvn2 or "")


class Link:
    """One acquirer connection to the peer."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.unmatched: list[dict] = []

    def send_raw(self, raw: bytes) -> None:
        self.sock.sendall(len(raw).to_bytes(2, "big") + raw)

    def send(self, doc: dict) -> None:
        raw, _ = iso8583.encode(dict(doc), SPEC)
        self.send_raw(bytes(raw))

    def _read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("link closed")
            buf += chunk
        return buf

    def read(self) -> dict:
        n = int.from_bytes(self._read_exact(2), "big")
        doc, _ = iso8583.decode(self._read_exact(n), SPEC)
        return doc

    def answer(self, mti: str, stan: str) -> dict:
        """Reads until the answer with this MTI and STAN; others are kept."""
        for i, d in enumerate(self.unmatched):
            if d["t"] == mti and d.get("11") == stan:
                return self.unmatched.pop(i)
        while True:
            d = self.read()
            if d["t"] == mti and d.get("11") == stan:
                return d
            self.unmatched.append(d)

    def request(self, doc: dict) -> dict:
        self.send(doc)
        return self.answer({"0200": "0210", "0800": "0810", "0420": "0430",
                            "0421": "0430"}[doc["t"]], doc["11"])


class Control:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.file = self.sock.makefile("rwb")

    def __call__(self, cmd: str) -> dict:
        self.file.write((cmd + "\n").encode())
        self.file.flush()
        reply = json.loads(self.file.readline())
        assert reply["ok"], (cmd, reply)
        return reply


def purchase(pan: str, amount: int, *, pin: str | None = None, id_number=None,
             expiry: str | None = None, cvn2: str | None = None, stan=None, f7=None):
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8)))
    id_number = id_number or (OTHER_ID if pan == DEBIT2 else HOLDER)
    doc = {"t": "0200", "2": pan, "3": "000000", "4": f"{amount:012d}",
           "7": f7 or f7_now(), "11": stan or next_stan(),
           "12": now.strftime("%H%M%S"), "13": now.strftime("%m%d"),
           "22": "011" if pin else "012", "25": "08", "32": ACQ,
           "37": "000000000001", "41": "VPTERM01", "42": "VOICEPAYSHOP001",
           "49": "156", "61": f61(id_number, cvn2)}
    if pin is not None:
        doc["52"] = pin_block(pin, pan)
        doc["53"] = "1600000000000000"
    if expiry is not None:
        doc["14"] = expiry
    return doc


def f90(orig: dict) -> str:
    return orig["t"] + orig["11"] + orig["7"] + orig["32"].zfill(11) + "0" * 11


def refund(orig: dict, amount: int, pan: str | None = None) -> dict:
    return {"t": "0200", "2": pan or orig["2"], "3": "200000",
            "4": f"{amount:012d}", "7": f7_now(), "11": next_stan(), "32": ACQ,
            "41": "VPTERM01", "49": "156", "90": f90(orig)}


def reversal(orig: dict, mti: str = "0420") -> dict:
    return {"t": mti, "2": orig["2"], "3": orig["3"], "4": orig["4"],
            "7": f7_now(), "11": next_stan(), "32": ACQ, "41": "VPTERM01",
            "90": f90(orig)}


def netmgmt(code: str) -> dict:
    return {"t": "0800", "7": f7_now(), "11": next_stan(), "41": "VPTERM01", "70": code}


def ledger_of(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def net(ledger: list[dict], masked: str) -> int:
    """Money taken from a card: debits - credits - reversals."""
    sign = {"debit": 1, "credit": -1, "reversal": -1}
    return sum(sign[e["kind"]] * e["amount"] for e in ledger if e["pan"] == masked)


def run(tmp: str) -> None:
    ledger_path = os.path.join(tmp, "ledger.jsonl")
    log_path = os.path.join(tmp, "peer.log")
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "peer.py"), "--port", "0",
         "--control-port", "0", "--slow-secs", "0.2", "--zpk", ZPK, "--ledger", ledger_path],
        stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        ready = json.loads(proc.stdout.readline())
        scenarios(ready["port"], Control(ready["control_port"]), ledger_path)
    except BaseException:
        log.flush()
        tail = open(log_path).read().splitlines()[-30:]
        print("peer log (last lines):", *tail, sep="\n", file=sys.stderr)
        raise
    finally:
        proc.terminate()
        proc.wait()
        log.close()
    check_log(open(log_path).read())


def scenarios(port: int, ctl: Control | None, ledger_path: str | None) -> None:
    """Every scenario against the host on `port`. With `ctl` (this peer's
    control channel) also the held, unsolicited and duplicate answers, the
    dropped link, the protocol-error count and the ledger; without it (any
    other host speaking the wire format, e.g. `voicepay bank serve`) the
    answers alone."""
    link = Link(port)
    sent_secrets: list[str] = []

    def ok(doc, want, note):
        if "52" in doc:
            sent_secrets.append(doc["52"])
        if "61" in doc:
            sent_secrets.append(doc["61"])
        got = link.request(doc)
        assert got["39"] == want, f"{note}: F39 {got['39']}, want {want}"
        assert got.get("41") == doc.get("41"), f"{note}: F41 not echoed"
        print(f"ok  {note}: {doc['t']} -> {got['t']} F39 {got['39']}")
        return got

    # sign-on and echo
    ok(netmgmt("001"), "00", "sign-on (F70 001)")
    ok(netmgmt("301"), "00", "echo (F70 301)")

    # approvals: debit (PIN) and credit (expiry + CVN2)
    d1 = purchase(DEBIT, 12345, pin=PIN)
    a = ok(d1, "00", "debit approval")
    assert len(a["38"]) == 6 and "2" not in a and "52" not in a
    c1 = purchase(CREDIT, 20000, expiry="3012", cvn2="123")
    ok(c1, "00", "credit approval")

    # each mapped decline
    ok(purchase("6222000000000090", 100, pin=PIN), "14", "unknown card")
    ok(purchase(LOST, 100, pin=PIN), "62", "restricted card")
    ok(purchase(DEBIT2, 100, pin=PIN2, id_number=HOLDER), "63", "ID mismatch")
    ok(purchase(CREDIT, 100, expiry="3012", cvn2="999"), "55", "wrong CVN2")
    ok(purchase(CREDIT, 100, expiry="3112", cvn2="123"), "55", "wrong expiry")
    ok(purchase(CREDIT_EXPIRED, 100, expiry="3012", cvn2="123"), "54", "expired card")
    ok(purchase(DEBIT, 5_000_001, pin=PIN), "61", "over the single payment limit")
    ok(purchase(POOR, 100, pin=PIN), "51", "insufficient funds")
    ok(purchase(DOWN, 100, pin=PIN), "91", "issuer unavailable")
    # daily tries: 2 wrong PINs (55), the 3rd ends them (75), a right one too
    ok(purchase(POOR, 100, pin=WRONG_PIN), "55", "wrong PIN 1/3")
    ok(purchase(POOR, 100, pin=WRONG_PIN), "55", "wrong PIN 2/3")
    ok(purchase(POOR, 100, pin=WRONG_PIN), "75", "wrong PIN 3/3: tries exceeded")
    ok(purchase(POOR, 100, pin=PIN), "75", "right PIN after the tries ended")
    # the ID check comes first and never counts a try
    for _ in range(3):
        ok(purchase(DEBIT2, 100, pin=WRONG_PIN, id_number=HOLDER), "63",
           "wrong ID with a wrong PIN (not counted)")

    # wrong then right PIN in one call
    ok(purchase(DEBIT2, 700, pin=WRONG_PIN), "55", "wrong PIN first")
    ok(purchase(DEBIT2, 700, pin=PIN2), "00", "then the right PIN")

    # a slow card's answer does not hold up the link's other requests
    slow = purchase(SLOW, 400, pin=PIN)
    link.send(slow)
    ok(netmgmt("301"), "00", "echo while a slow card's purchase is pending")
    got = link.answer("0210", slow["11"])
    assert got["39"] == "00", got
    print("ok  the slow card's 0210 arrived: F39 00")

    # duplicate 0200 (same F7, F11, F32): the first answer, one debit
    dup = purchase(DEBIT, 500, pin=PIN)
    first = ok(dup, "00", "purchase")
    again = ok(dup, "00", "the same purchase again (duplicate)")
    assert again["38"] == first["38"], "a duplicate got a new approval code"

    # no answer: the 0210 is held; 0420 and 0421 are acknowledged; no debit
    held = purchase(DEBIT, 3000, pin=PIN)
    if ctl:
        ctl("hold-next-0210")
        link.send(held)
    else:  # another host cannot hold: reverse an answered purchase
        ok(held, "00", "purchase to be reversed")
    rev = ok(reversal(held), "00", "0420 for the unanswered purchase")
    assert rev["90"] == f90(held)
    ok(reversal(held, "0421"), "00", "0421 repeat")
    if ctl:
        assert ctl("stats")["held"] == 1
        ctl("release-held")  # a late 0210 approval: changes nothing at the peer
        late = link.answer("0210", held["11"])
        print(f"ok  late 0210 for the reversed purchase arrived, F39 {late['39']}")
    ok(refund(held, 3000), "25", "refund of the reversed purchase")
    # a reversal of an original the peer never saw: still acknowledged
    ok(reversal(purchase(DEBIT, 1, pin=PIN)), "00", "0420 for an unknown original")

    # refunds: partial, the rest, more than left, unknown original
    r1 = ok(refund(d1, 2345), "00", "partial refund")
    assert r1["38"]
    ok(refund(d1, 10001), "13", "refund over what is left")
    ok(refund(d1, 10000), "00", "refund of the rest")
    ok(refund(purchase(DEBIT, 1, pin=PIN), 1), "25", "refund of an unknown purchase")
    c_ref = refund(c1, 5000)
    ok(c_ref, "00", "credit card refund")
    ok(reversal(c_ref), "00", "reversal of that refund")
    ok(refund(c1, 20000), "00", "refund of all of it after the refund's reversal")
    if ctl is None:
        ok(netmgmt("301"), "00", "echo at the end")
        return

    # unsolicited and duplicate replies, then the link dropped and redone
    stan = ctl("send-unsolicited")["stan"]
    assert link.answer("0210", stan)["41"] == "UNSOLICI"
    print("ok  unsolicited 0210 delivered")
    stan = ctl("send-duplicate-0210")["stan"]
    link.answer("0210", stan)
    print("ok  duplicate 0210 delivered")
    assert ctl("drop-link")["dropped"] == 1
    try:
        while True:
            link.read()
    except (EOFError, ConnectionError):
        print("ok  drop-link closed the connection")
    link = Link(port)
    ok(netmgmt("001"), "00", "sign-on after reconnecting")
    control_commands(link, ctl, ok)

    stats = ctl("stats")
    assert stats["protocol_errors"] == 0, stats["protocol_error_reasons"]
    assert stats["first_on_link"] == ["0800/001", "0800/001"], stats["first_on_link"]
    assert stats["network"]["001"] == 2 and stats["network"]["301"] >= 3, stats["network"]
    assert stats["financial"]["200000"] == 7, stats["financial"]
    assert ctl("ledger")["ledger"] == stats["ledger"]

    # protocol errors are counted (so a test asserting zero can fail)
    link.send_raw(b"\x00\x01garbage")
    bad = purchase(DEBIT, 100, pin=PIN)
    del bad["61"]
    link.send(bad)
    ok(netmgmt("301"), "00", "echo after two bad frames (the link survives)")
    stats = ctl("stats")
    assert stats["protocol_errors"] == 2, stats
    assert "lacks F61" in stats["protocol_error_reasons"][1], stats

    check_ledger(ledger_of(ledger_path), stats)
    secrets_sent.extend(sent_secrets)


def control_commands(link: Link, ctl: Control, ok) -> None:
    """The control commands the daemon scenarios use: fail-next,
    drop-next-0430, delay-0210 (none of them moves money)."""
    before = len(ctl("ledger")["ledger"])
    ctl("fail-next 51")
    ctl("fail-next N7")
    ok(purchase(DEBIT, 100, pin=PIN), "51", "fail-next 51 (a good purchase declined)")
    ok(purchase(DEBIT, 100, pin=PIN), "N7", "fail-next N7 (an unknown code)")
    assert len(ctl("ledger")["ledger"]) == before, "fail-next moved money"
    lost = reversal(purchase(DEBIT, 2, pin=PIN))
    ctl("drop-next-0430")
    link.send(lost)
    ok(netmgmt("301"), "00", "echo after a 0420 whose 0430 is dropped")
    assert not [d for d in link.unmatched if d["t"] == "0430"], "the 0430 was sent"
    rep = dict(lost, t="0421")
    ok(rep, "00", "its 0421 is acknowledged")
    ctl("delay-0210 200")
    ctl("fail-next 05")
    late = purchase(DEBIT, 100, pin=PIN)
    link.send(late)
    ok(netmgmt("301"), "00", "echo answered while a delayed 0210 waits")
    assert link.answer("0210", late["11"])["39"] == "05"
    print("ok  delay-0210: the 0210 came after the echo's 0810")
    ctl("delay-0210 0")
    ctl.file.write(b"fail-next 00\n")
    ctl.file.flush()
    assert not json.loads(ctl.file.readline())["ok"], "fail-next 00 accepted"
    print("ok  fail-next refuses 00")


def check_ledger(ledger: list[dict], stats: dict) -> None:
    assert ledger == stats["ledger"], "the ledger file and stats differ"
    kinds = [(e["kind"], e["pan"], e["amount"]) for e in ledger]
    debits = [k for k in kinds if k[0] == "debit"]
    # d1, c1, the right PIN, the slow one, the duplicate once, the held one
    assert debits == [("debit", "622200******0017", 12345),
                      ("debit", "625000******0012", 20000),
                      ("debit", "621700******0014", 700),
                      ("debit", "622200******0041", 400),
                      ("debit", "622200******0017", 500),
                      ("debit", "622200******0017", 3000)], debits
    credits = [(e["pan"], e["amount"]) for e in ledger if e["kind"] == "credit"]
    assert credits == [("622200******0017", 2345), ("622200******0017", 10000),
                       ("625000******0012", 5000), ("625000******0012", 20000)], credits
    reversals = [e for e in ledger if e["kind"] == "reversal"]
    assert [(r["pan"], r["amount"]) for r in reversals] == [
        ("622200******0017", 3000), ("625000******0012", -5000)], reversals
    # money taken per card: d1 fully refunded, the held one reversed
    assert net(ledger, "622200******0017") == 500
    assert net(ledger, "625000******0012") == 0
    assert net(ledger, "621700******0014") == 700
    assert stats["balances"]["622200******0017"] == 10_000_000 - 500
    assert stats["balances"]["625000******0012"] == 10_000_000
    print(f"ok  ledger: {len(ledger)} entries, one debit per purchase")


secrets_sent: list[str] = []


def check_log(text: str) -> None:
    """No PIN, PIN block, CVN2+ID (F61), expiry or ID number in the log."""
    forbidden = [PIN, PIN2, WRONG_PIN, HOLDER, OTHER_ID, *secrets_sent]
    leaked = [s for s in forbidden if s in text]
    assert not leaked, f"the peer's log holds secrets: {len(leaked)} of them"
    assert "622200******0017" in text and "STAN" in text, "the log says too little"
    print(f"ok  peer log ({len(text.splitlines())} lines) holds no secret")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--against":
        # Another host on the wire format, with the same test cards (fresh:
        # no wrong PIN yet today) and the lab ZPK above.
        scenarios(int(sys.argv[2].rsplit(":", 1)[1]), None, None)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(tmp)
    print("selftest passed")
