"""A stateful ISO 8583 issuer host that voicepay did not write (issue #13).

Built only on two public libraries, so that it checks voicepay's acquirer
link against an independent reading of the wire format:

- ``pyiso8583`` 4.0.1 (MIT): every frame is decoded with
  ``iso8583.decode(raw, iso8583.specs.default)`` and every answer encoded with
  ``iso8583.encode(doc, iso8583.specs.default)``;
- ``psec`` 1.3.0 (MIT): F52 is deciphered with ``psec.des.decrypt_tdes_ecb``
  under the zone PIN key and decoded as an ISO 9564 format 0 block with
  ``psec.pinblock.decode_pinblock_iso_0``.

Run (from the venv that ``scripts/test`` creates, /var/cache/voicepay/venv)::

    python tests/iso8583_peer/peer.py --port 8583 --control-port 8584 \
        --zpk 0123456789ABCDEFFEDCBA9876543210 \
        --cards src/bank/test_cards.toml --ledger /tmp/peer-ledger.jsonl

``--port 0`` / ``--control-port 0`` pick free ports; the first line on stdout
is JSON ``{"ready": true, "port": P, "control_port": C}``. With
``--exit-with-stdin`` the peer exits when its stdin closes (the Rust harness,
voicepay_testkit::iso8583, holds it open, so a test that dies takes its
peer along). The log (stderr)
shows the masked PAN, MTI, STAN and F39 only: never a PIN, PIN block, CVN2,
expiry or ID number.

Wire format (voicepay's interface, README "Acquirer link (ISO 8583)")
---------------------------------------------------------------------
Persistent TCP. Each message is preceded by a 2-byte big-endian length of
the message alone; no TPDU. ISO 8583:1987, binary bitmap(s), ASCII fields:
pyiso8583's ``default`` spec.

Field layout this host expects (the Rust side must build the same):

======  ===================================================================
F2      PAN, LLVAR
F3      processing code: ``000000`` purchase, ``200000`` refund
F4      amount in fen, n12 zero-padded
F7      transmission date-time MMDDhhmmss (UTC)
F11     STAN, n6
F12/13  local time hhmmss / date MMDD (Asia/Shanghai)
F14     expiry YYMM (credit cards only)
F22     POS entry mode n3: ``011`` (keyed, PIN capable: debit) or ``012``
        (keyed, no PIN: credit); any 3 digits are accepted
F25     POS condition code: ``08`` (mail/telephone order); anything else
        is a protocol error
F32     acquirer institution id, LLVAR n..11
F37     RRN an12 (echoed; one is made up when absent)
F38     approval code an6 (in approved answers)
F39     response code (answers)
F41     terminal id ans8
F42     card acceptor id ans15
F49     currency ``156``
F52     PIN block, 8 bytes binary (16 hex digits in pyiso8583's dict):
        ISO 9564 format 0 under the double-length TDES zone PIN key
F53     security control info n16, ``1600000000000000`` (UnionPay's
        convention: 1 = ANSI X9.8 block with the PAN, i.e. ISO format 0;
        6 = double-length TDES; rest zeros). Mandatory with F52.
F61     cardholder authentication data, ans LLLVAR, positional:
        ID type (2 digits, ``01`` = resident identity card) + ID number
        (18 characters, space-padded on the right when shorter) +, for a
        credit card only, CVN2 (3 digits). So 20 characters for a debit
        purchase, 23 for a credit purchase. The real network's subfield
        positions must be confirmed against its specification.
F70     network management code: ``001`` sign-on, ``002`` sign-off,
        ``301`` echo
F90     original data elements n42: original MTI (4) + original STAN (6) +
        original F7 (10) + original acquirer id F32 (11, zero-padded on the
        left) + original forwarding institution id (11, zeros)
======  ===================================================================

Mandatory fields (a frame without them is a protocol error, logged and
counted in ``stats``):

- 0800: F7, F11, F70 (001, 002 or 301).
- 0200 purchase (F3 000000): F2, F3, F4, F7, F11, F12, F13, F22, F25, F32,
  F41, F42, F49, F61, and either F52 + F53 (debit) or F14 (credit).
- 0200 refund (F3 200000): F2, F3, F4, F7, F11, F32, F41, F49, F90.
- 0420 / 0421: F2, F3, F4, F7, F11, F32, F41, F90.

Answers:

- 0800 → 0810 F39 ``00`` (echoing F7, F11, F70, and F41 when sent).

Every answer echoes F11 and F41 (voicepay matches answers by STAN and
terminal id); a 0210 echoes F3, F4, F7, F11, F12, F13, F32, F37, F41, F42,
F49 and adds F38 (approved) and F39, never F2, F14, F52 or F61; a 0430
echoes F3, F4, F7, F11, F32, F41, F90.
- 0200 purchase → 0210. F39: ``00`` approved (F38 set), ``14`` unknown card,
  ``62`` restricted card, ``63`` ID number mismatch (checked before the
  secret and never counted as a try), ``55`` wrong PIN or wrong
  expiry/CVN2, ``75`` the card's 3rd wrong secret of the Asia/Shanghai day
  and every try after it that day, ``54`` expired card, ``61`` amount over
  the single payment limit (¥50,000.00), ``51`` insufficient funds, ``91``
  issuer unavailable (a card with ``behaviour = "unavailable"``). The order
  of checks is the stub issuer's (src/bank/stub/rules.rs).
- 0200 refund → 0210: ``00`` (the amount credited back), ``25`` the
  original is unknown or was not approved or was reversed, ``13`` more than
  what is left of the original.
- 0420/0421 → 0430 F39 ``00``, always (an unknown original is acknowledged
  too, and logged); an approved original is undone once.
- A 0200 whose (F7, F11, F32) was seen before gets the first answer again
  and changes nothing. A 0200 whose key an earlier 0420 already named (the
  reversal overtook it) gets ``25`` and moves no money.

Card behaviours (the ``behaviour`` key of the card table): ``unavailable``
answers ``91``; ``slow`` answers after ``--slow-secs`` (default 5);
``no_answer`` processes every purchase but never sends its 0210 (as
``hold-next-0210`` does for one purchase).

Card table: ``--cards`` names a TOML file (read with ``tomllib``; the
default is voicepay's own src/bank/test_cards.toml, so the cards are the
same) or a JSON file of the same shape (``{"cards": [...]}``). A card's
secret is checked against its ``secret_hash``: HMAC-SHA256 keyed with the
salt over the PIN digits (debit) or MMYY followed by the CVN2 (credit).

Ledger: ``--ledger`` is a JSONL file (truncated at start) with one line
per money movement: ``{"kind": "debit"|"credit"|"reversal", "pan":
masked, "amount": fen, "key": "F7/F11/F32", "original": key|null,
"rrn": F37, "terminal": F41, "acceptor": F42, "auth_code": F38, "time"}``
(a reversal line has ``key``, ``original``, ``mti``, no F37/F41/F42).
A reversal line names the original it undid and carries the signed
``amount`` it moved back (positive: money returned to the card).

Control channel (``--control-port``, 127.0.0.1, one line in, one JSON line
out): ``hold-next-0210`` (the next purchase is processed but its answer
kept: the "no answer" case), ``release-held`` (send the kept answers now:
a late 0210), ``send-unsolicited`` (a 0210 for a STAN nobody sent),
``send-duplicate-0210`` (the last 0210 again), ``drop-link`` (close every
acquirer connection), ``stats`` (protocol errors, message counts,
balances, the ledger), and for the daemon scenarios (tests/iso8583_scenarios.rs,
tests/exactly_once.rs):

- ``fail-next F39`` (e.g. ``fail-next 51``): the next new purchase is
  answered with that F39 (any two characters; ``00`` is refused) and changes
  nothing: no money moves, no PIN try is counted. Repeatable (a queue).
- ``drop-next-0430`` (``drop-next-0430 N``, default 1): the next N
  reversals are processed but their 0430 is never sent (the acquirer then
  repeats them as 0421).
- ``delay-0210 MS``: from now on every 0210 goes out MS milliseconds after
  its 0200 arrived, without holding up the link (0: at once again): a
  purchase stays in flight long enough for a kill to land inside it.
- ``ledger``: ``{"ok": true, "ledger": [...]}``, the ledger alone.

``stats`` also counts financial requests by processing code
(``financial``: ``{"000000": n, "200000": m}``), network management
requests by F70 (``network``: ``{"001": n, "301": m}``), and lists what
each connection sent first (``first_on_link``: ``"0800/001"`` for a
sign-on).

The zone PIN key used by the tests, ``0123456789ABCDEFFEDCBA9876543210``,
is a published lab-only key: never use it anywhere real.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import random
import re
import sys
import tomllib
import warnings

warnings.filterwarnings("ignore")  # cryptography's TripleDES deprecation

import iso8583  # noqa: E402
import iso8583.specs  # noqa: E402
from psec import des as psec_des  # noqa: E402
from psec import pinblock as psec_pinblock  # noqa: E402

SPEC = iso8583.specs.default
LOG = logging.getLogger("iso8583-peer")

PIN_TRIES_PER_DAY = 3
SINGLE_PAYMENT_LIMIT_FEN = 5_000_000
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
F53_FORMAT0_TDES = "1600000000000000"
ID_TYPE_LEN, ID_NUMBER_LEN, CVN2_LEN = 2, 18, 3

MANDATORY = {
    "0800": ["7", "11", "70"],
    "purchase": ["2", "3", "4", "7", "11", "12", "13", "22", "25", "32",
                 "41", "42", "49", "61"],
    "refund": ["2", "3", "4", "7", "11", "32", "41", "49", "90"],
    "0420": ["2", "3", "4", "7", "11", "32", "41", "90"],
}
MANDATORY["0421"] = MANDATORY["0420"]


class ProtocolError(Exception):
    """A frame that does not decode or breaks the field layout above."""


def mask(pan: str) -> str:
    """``622200******0017``: first 6 and last 4 digits."""
    if len(pan) < 11:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def txn_key(f7: str, f11: str, f32: str) -> str:
    """The duplicate-detection key (F7, F11, F32), F32 zero-padded to 11."""
    return f"{f7}/{f11}/{f32.zfill(11)}"


def parse_f90(f90: str) -> tuple[str, str]:
    """(original MTI, original key) from F90's n42."""
    if len(f90) != 42 or not f90.isdigit():
        raise ProtocolError("F90 is not n42")
    mti, stan, f7, acq = f90[0:4], f90[4:10], f90[10:20], f90[20:31]
    return mti, txn_key(f7, stan, acq)


def parse_f61(f61: str, credit: bool) -> tuple[str, str, str | None]:
    """(ID type, ID number, CVN2 or None) from F61 (layout above)."""
    want = ID_TYPE_LEN + ID_NUMBER_LEN + (CVN2_LEN if credit else 0)
    if len(f61) != want:
        raise ProtocolError(f"F61 is {len(f61)} characters, not {want}")
    id_type = f61[:ID_TYPE_LEN]
    id_number = f61[ID_TYPE_LEN:ID_TYPE_LEN + ID_NUMBER_LEN].rstrip(" ")
    cvn2 = f61[ID_TYPE_LEN + ID_NUMBER_LEN:] if credit else None
    if not id_type.isdigit() or (cvn2 is not None and not cvn2.isdigit()):
        raise ProtocolError("F61 subfields are malformed")
    return id_type, id_number, cvn2


def load_cards(path: str) -> list[dict]:
    """The card table from TOML (tomllib) or JSON of the same shape."""
    with open(path, "rb") as f:
        data = tomllib.load(f) if path.endswith(".toml") else json.load(f)
    return data["cards"]


class Issuer:
    """Cards, balances, daily PIN tries, answers by key, and the ledger."""

    def __init__(self, cards: list[dict], zpk: bytes, ledger_path: str):
        self.cards = {c["pan"]: c for c in cards}
        self.available = {c["pan"]: int(c["available_fen"]) for c in cards}
        self.failures: dict[str, tuple[dt.date, int]] = {}
        self.zpk = zpk
        self.answers: dict[str, dict] = {}   # key -> 0210 document
        self.txns: dict[str, dict] = {}      # key -> what it moved
        self.reversed: set[str] = set()
        self.ledger: list[dict] = []
        self.ledger_path = ledger_path
        open(ledger_path, "w").close()
        self.auth_codes = 0
        self.rrns = 0
        self.forced: list[str] = []  # F39s of `fail-next`, in order

    # -- ledger ---------------------------------------------------------
    def record(self, entry: dict) -> None:
        entry = {"time": dt.datetime.now(dt.timezone.utc).isoformat(), **entry}
        self.ledger.append(entry)
        with open(self.ledger_path, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    # -- checks ---------------------------------------------------------
    def pin_right(self, card: dict, f52: str, pan: str) -> bool:
        """Deciphers F52 (format 0 under the ZPK) and checks the PIN; a
        block that does not decipher or decode is wrong (fail closed)."""
        try:
            clear = psec_des.decrypt_tdes_ecb(self.zpk, bytes.fromhex(f52))
            pin = psec_pinblock.decode_pinblock_iso_0(clear, pan)
        except Exception:  # noqa: BLE001 - any failure is a wrong PIN
            return False
        return self.secret_matches(card, pin)

    @staticmethod
    def secret_matches(card: dict, secret: str) -> bool:
        mac = hmac.new(bytes.fromhex(card["salt"]), secret.encode(), hashlib.sha256)
        return hmac.compare_digest(mac.hexdigest(), card["secret_hash"].lower())

    def decide_purchase(self, doc: dict) -> dict:
        """The F39 (and F38) of a new purchase, with its effects applied."""
        pan, amount = doc["2"], int(doc["4"])
        card = self.cards.get(pan)
        if card is None:
            return {"39": "14"}
        if card.get("behaviour") == "unavailable":
            return {"39": "91"}
        credit = card["kind"] == "credit"
        if credit and "14" not in doc:
            return {"39": "55"}
        if not credit and "52" not in doc:
            return {"39": "55"}
        _, id_number, cvn2 = parse_f61(doc["61"], credit)
        if card["status"] == "restricted":
            return {"39": "62"}
        if id_number != card["holder_id"]:
            return {"39": "63"}
        today = dt.datetime.now(SHANGHAI).date()
        day, n = self.failures.get(pan, (today, 0))
        failures = n if day == today else 0
        if failures >= PIN_TRIES_PER_DAY:
            return {"39": "75"}
        if credit:
            yymm = doc["14"]
            right = self.secret_matches(card, yymm[2:] + yymm[:2] + cvn2)
        else:
            right = self.pin_right(card, doc["52"], pan)
        if not right:
            failures += 1
            self.failures[pan] = (today, failures)
            return {"39": "75" if failures >= PIN_TRIES_PER_DAY else "55"}
        if card["status"] == "expired":
            return {"39": "54"}
        if amount > SINGLE_PAYMENT_LIMIT_FEN:
            return {"39": "61"}
        if self.available[pan] < amount:
            return {"39": "51"}
        self.available[pan] -= amount
        self.auth_codes += 1
        code = f"{self.auth_codes % 1_000_000:06d}"
        return {"39": "00", "38": code, "_debit": amount}

    def decide_refund(self, doc: dict, key: str) -> dict:
        pan, amount = doc["2"], int(doc["4"])
        omti, okey = parse_f90(doc["90"])
        orig = self.txns.get(okey)
        if (orig is None or orig["kind"] != "debit" or okey in self.reversed
                or orig["pan"] != pan):
            return {"39": "25"}
        left = orig["amount"] - orig["refunded"]
        if amount > left:
            return {"39": "13"}
        orig["refunded"] += amount
        self.available[pan] += amount
        self.auth_codes += 1
        return {"39": "00", "38": f"{self.auth_codes % 1_000_000:06d}",
                "_credit": amount, "_original": okey}

    def reverse(self, doc: dict) -> None:
        """Undoes the original named by F90 once (nothing for an unknown,
        declined or already reversed original)."""
        _, okey = parse_f90(doc["90"])
        orig = self.txns.get(okey)
        stan = doc["11"]
        if orig is None:
            LOG.info("0420 STAN %s: original unknown, acknowledged", stan)
            self.reversed.add(okey)
            return
        if okey in self.reversed:
            LOG.info("0420 STAN %s: original already reversed", stan)
            return
        self.reversed.add(okey)
        if orig["kind"] == "debit":
            back = orig["amount"] - orig["refunded"]
        else:  # a refund reversed: the credit is taken back
            back = -orig["amount"]
            self.txns[orig["original"]]["refunded"] -= orig["amount"]
        self.available[orig["pan"]] += back
        self.record({"kind": "reversal", "pan": mask(orig["pan"]), "amount": back,
                     "key": txn_key(doc["7"], doc["11"], doc["32"]),
                     "original": okey, "mti": doc["t"]})

    def handle_financial(self, doc: dict) -> tuple[dict, bool]:
        """The 0210 for a 0200, and whether it is a duplicate."""
        key = txn_key(doc["7"], doc["11"], doc["32"])
        if key in self.answers:
            return self.answers[key], True
        if key in self.reversed:
            # reversed before it arrived: never debit
            out = {"39": "25"}
        elif doc["3"] == "000000" and self.forced:
            out = {"39": self.forced.pop(0)}
            LOG.info("0200 STAN %s: answered %s as told (fail-next)", doc["11"], out["39"])
        elif doc["3"] == "000000":
            out = self.decide_purchase(doc)
        else:
            out = self.decide_refund(doc, key)
        pan = doc["2"]
        where = {"rrn": doc.get("37"), "terminal": doc["41"], "acceptor": doc.get("42")}
        if "_debit" in out:
            self.txns[key] = {"kind": "debit", "pan": pan, "amount": out["_debit"],
                              "refunded": 0}
            self.record({"kind": "debit", "pan": mask(pan), "amount": out["_debit"],
                         "key": key, "original": None, "auth_code": out["38"],
                         **where})
        if "_credit" in out:
            self.txns[key] = {"kind": "credit", "pan": pan, "amount": out["_credit"],
                              "original": out["_original"]}
            self.record({"kind": "credit", "pan": mask(pan), "amount": out["_credit"],
                         "key": key, "original": out["_original"],
                         "auth_code": out["38"], **where})
        self.rrns += 1
        answer = {"t": "0210"}
        for f in ("3", "4", "7", "11", "12", "13", "32", "41", "42", "49"):
            if f in doc:
                answer[f] = doc[f]
        answer["37"] = doc.get("37") or f"{self.rrns:012d}"
        answer.update({k: v for k, v in out.items() if not k.startswith("_")})
        self.answers[key] = answer
        return answer, False


def validate(doc: dict) -> str:
    """The kind of a decoded request, or ProtocolError naming what is wrong."""
    mti = doc["t"]
    if mti == "0800":
        kind = "0800"
    elif mti == "0200":
        kind = {"000000": "purchase", "200000": "refund"}.get(doc.get("3", ""))
        if kind is None:
            raise ProtocolError(f"0200 with processing code {doc.get('3')!r}")
    elif mti in ("0420", "0421"):
        kind = mti
    else:
        raise ProtocolError(f"unexpected MTI {mti}")
    missing = [f for f in MANDATORY[kind] if f not in doc]
    if kind == "purchase" and "52" not in doc and "14" not in doc:
        missing.append("52 or 14")
    if kind == "purchase" and "52" in doc and doc.get("53") != F53_FORMAT0_TDES:
        missing.append(f"53 = {F53_FORMAT0_TDES}")
    if missing:
        raise ProtocolError(f"{mti} lacks F{', F'.join(missing)}")
    if kind == "0800" and doc["70"] not in ("001", "002", "301"):
        raise ProtocolError(f"0800 with F70 {doc['70']}")
    if kind in ("purchase", "refund") and doc["49"] != "156":
        raise ProtocolError("F49 is not 156")
    if kind == "purchase" and doc["25"] != "08":
        raise ProtocolError("F25 is not 08")
    if kind == "purchase" and not (len(doc["22"]) == 3 and doc["22"].isdigit()):
        raise ProtocolError("F22 is not n3")
    for f in ("4", "7", "11"):
        if f in doc and not doc[f].isdigit():
            raise ProtocolError(f"F{f} is not numeric")
    if "90" in doc:
        parse_f90(doc["90"])
    return kind


class Peer:
    """The TCP host, its control channel and its counters."""

    def __init__(self, issuer: Issuer, slow_secs: float):
        self.issuer = issuer
        self.slow_secs = slow_secs
        self.protocol_errors: list[str] = []
        self.received: dict[str, int] = {}
        self.sent: dict[str, int] = {}
        self.writers: set[asyncio.StreamWriter] = set()
        self.hold_next = 0
        self.held: list[dict] = []
        self.last_0210: dict | None = None
        self.connections = 0
        self.later: set[asyncio.Task] = set()
        self.drop_0430 = 0
        self.delay_0210 = 0.0  # seconds
        self.financial: dict[str, int] = {}
        self.network: dict[str, int] = {}
        self.first_on_link: list[str] = []

    def protocol_error(self, why: str) -> None:
        LOG.warning("protocol error: %s", why)
        self.protocol_errors.append(why)

    async def send(self, writer: asyncio.StreamWriter, doc: dict) -> None:
        raw, _ = iso8583.encode(dict(doc), SPEC)
        writer.write(len(raw).to_bytes(2, "big") + bytes(raw))
        await writer.drain()
        self.sent[doc["t"]] = self.sent.get(doc["t"], 0) + 1
        if doc["t"] == "0210":
            self.last_0210 = doc
        LOG.info("sent %s STAN %s F39 %s", doc["t"], doc.get("11"), doc.get("39"))

    async def serve_link(self, reader, writer) -> None:
        self.connections += 1
        self.writers.add(writer)
        first = True
        try:
            while True:
                try:
                    head = await reader.readexactly(2)
                    raw = await reader.readexactly(int.from_bytes(head, "big"))
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                await self.on_frame(writer, raw, first)
                first = False
        except Exception as e:  # noqa: BLE001 - a bug here must show
            self.protocol_error(f"peer failure: {type(e).__name__}: {e}"[:200])
            raise
        finally:
            self.writers.discard(writer)
            writer.close()

    async def on_frame(self, writer, raw: bytes, first: bool = False) -> None:
        try:
            doc, _ = iso8583.decode(raw, SPEC)
        except Exception as e:  # noqa: BLE001
            # the library's message may quote field data: keep where only
            where = re.search(r"field \S+ pos \d+", str(e))
            self.protocol_error(f"undecodable frame: {type(e).__name__}"
                                f" at {where.group(0) if where else '?'}")
            return
        try:
            kind = validate(doc)
        except ProtocolError as e:
            self.protocol_error(str(e))
            return
        mti = doc["t"]
        self.received[mti] = self.received.get(mti, 0) + 1
        if first:
            self.first_on_link.append(f"{mti}/{doc['70']}" if kind == "0800" else mti)
        if kind == "0800":
            self.network[doc["70"]] = self.network.get(doc["70"], 0) + 1
        if mti == "0200":
            self.financial[doc["3"]] = self.financial.get(doc["3"], 0) + 1
        pan = mask(doc["2"]) if "2" in doc else "-"
        LOG.info("received %s STAN %s card %s", mti, doc.get("11"), pan)
        if kind == "0800":
            answer = {"t": "0810", "7": doc["7"], "11": doc["11"], "39": "00",
                      "70": doc["70"]}
            if "41" in doc:
                answer["41"] = doc["41"]
            await self.send(writer, answer)
        elif kind in ("0420", "0421"):
            self.issuer.reverse(doc)
            answer = {"t": "0430", "39": "00"}
            for f in ("3", "4", "7", "11", "32", "41", "90"):
                answer[f] = doc[f]
            if self.drop_0430 > 0:
                self.drop_0430 -= 1
                LOG.info("%s STAN %s processed, its 0430 not sent (drop-next-0430)",
                         mti, doc["11"])
                return
            await self.send(writer, answer)
        else:
            try:
                answer, dup = self.issuer.handle_financial(doc)
            except ProtocolError as e:
                self.protocol_error(str(e))
                return
            if dup:
                LOG.info("duplicate 0200 STAN %s: first answer again", doc["11"])
            card = self.issuer.cards.get(doc["2"], {})
            if self.hold_next > 0 or (card.get("behaviour") == "no_answer" and not dup):
                self.hold_next = max(0, self.hold_next - 1)
                self.held.append(answer)
                LOG.info("holding 0210 STAN %s", doc["11"])
                return
            slow = card.get("behaviour") == "slow" and not dup
            if slow or self.delay_0210 > 0:
                # later, without holding up the other requests on the link
                wait = max(self.slow_secs if slow else 0.0, self.delay_0210)
                task = asyncio.create_task(self.send_later(writer, answer, wait))
                self.later.add(task)
                task.add_done_callback(self.later.discard)
                return
            await self.send(writer, answer)

    async def send_later(self, writer, answer: dict, wait: float) -> None:
        await asyncio.sleep(wait)
        if not writer.is_closing():
            await self.send(writer, answer)

    # -- control channel ------------------------------------------------
    async def serve_control(self, reader, writer) -> None:
        try:
            while line := await reader.readline():
                reply = await self.command(line.decode().strip())
                writer.write((json.dumps(reply) + "\n").encode())
                await writer.drain()
        finally:
            writer.close()

    async def command(self, cmd: str) -> dict:
        link = next(iter(self.writers), None)
        if cmd == "hold-next-0210":
            self.hold_next += 1
            return {"ok": True}
        if cmd == "release-held":
            if link is None:
                return {"ok": False, "error": "no link"}
            held, self.held = self.held, []
            for doc in held:
                await self.send(link, doc)
            return {"ok": True, "released": len(held)}
        if cmd == "send-unsolicited":
            if link is None:
                return {"ok": False, "error": "no link"}
            now = dt.datetime.now(dt.timezone.utc)
            stan = f"{random.randint(900000, 999999)}"
            await self.send(link, {"t": "0210", "3": "000000", "4": "000000000100",
                                   "7": now.strftime("%m%d%H%M%S"), "11": stan,
                                   "37": "999999999999", "39": "00", "38": "999999",
                                   "41": "UNSOLICI"})
            return {"ok": True, "stan": stan}
        if cmd == "send-duplicate-0210":
            if link is None or self.last_0210 is None:
                return {"ok": False, "error": "no link or no 0210 sent yet"}
            await self.send(link, self.last_0210)
            return {"ok": True, "stan": self.last_0210["11"]}
        if cmd == "drop-link":
            n = len(self.writers)
            for w in list(self.writers):
                w.close()
            return {"ok": True, "dropped": n}
        if cmd == "stats":
            return self.stats()
        if cmd == "ledger":
            return {"ok": True, "ledger": self.issuer.ledger}
        verb, _, arg = cmd.partition(" ")
        if verb == "fail-next":
            if len(arg) != 2 or not arg.isalnum() or arg == "00":
                return {"ok": False, "error": "fail-next takes an F39 (2 characters, not 00)"}
            self.issuer.forced.append(arg)
            return {"ok": True, "queued": len(self.issuer.forced)}
        if verb == "drop-next-0430":
            n = int(arg) if arg.isdigit() else 1
            self.drop_0430 += n
            return {"ok": True, "dropping": self.drop_0430}
        if verb == "delay-0210" and arg.isdigit():
            self.delay_0210 = int(arg) / 1000
            return {"ok": True, "delay_ms": int(arg)}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def stats(self) -> dict:
        iss = self.issuer
        return {
            "ok": True,
            "protocol_errors": len(self.protocol_errors),
            "protocol_error_reasons": self.protocol_errors,
            "received": self.received,
            "sent": self.sent,
            "connections": self.connections,
            "open_links": len(self.writers),
            "held": len(self.held),
            "financial": self.financial,
            "network": self.network,
            "first_on_link": self.first_on_link,
            "balances": {mask(p): v for p, v in iss.available.items()},
            "ledger": iss.ledger,
        }


async def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--zpk", required=True, help="double-length TDES ZPK, 32 hex digits")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--cards", default=os.path.join(here, "..", "..", "src", "bank",
                                                    "test_cards.toml"))
    ap.add_argument("--ledger", required=True)
    ap.add_argument("--slow-secs", type=float, default=5.0)
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--exit-with-stdin", action="store_true",
                    help="exit when stdin closes (a test harness that dies takes the peer along)")
    args = ap.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level,
                        format="%(asctime)s %(levelname)s %(message)s")
    zpk = bytes.fromhex(args.zpk)
    if len(zpk) != 16:
        ap.error("--zpk must be a double-length key (32 hex digits)")
    peer = Peer(Issuer(load_cards(args.cards), zpk, args.ledger), args.slow_secs)
    link = await asyncio.start_server(peer.serve_link, "127.0.0.1", args.port)
    ctl = await asyncio.start_server(peer.serve_control, "127.0.0.1", args.control_port)
    ports = {"ready": True, "port": link.sockets[0].getsockname()[1],
             "control_port": ctl.sockets[0].getsockname()[1]}
    print(json.dumps(ports), flush=True)
    LOG.info("ISO 8583 issuer peer on 127.0.0.1:%d (control %d), %d cards",
             ports["port"], ports["control_port"], len(peer.issuer.cards))
    async with link, ctl:
        tasks = [link.serve_forever(), ctl.serve_forever()]
        if args.exit_with_stdin:
            tasks.append(stdin_closed())
        await asyncio.gather(*tasks)


async def stdin_closed() -> None:
    """Returns when stdin reaches EOF; then the peer exits."""
    await asyncio.to_thread(sys.stdin.read)
    LOG.info("stdin closed: exiting")
    os._exit(0)


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1:]))
    except KeyboardInterrupt:
        pass
