"""The do-it-yourself peer of voicepay's callback payment, and its load driver.

What an Asterisk shop would build instead of voicepay: the dialplan context
``peer-callback`` (benches/peer/peer-callback.conf) plays the prompts and
reads the keys with Playback()/Read(); this process is the application:

- an order book in memory (the orders this run places);
- a FastAGI server on ``panoramisk`` 1.4 (routes ``order``, ``pay``,
  ``ended``) that the dialplan calls;
- an ISO 8583 acquirer link (``pyiso8583`` 4.0.1 frames, ``psec`` 1.3.0
  PIN blocks, the wire format of README "Acquirer link (ISO 8583)") to the
  same issuer as voicepay, ``voicepay bank serve``;
- the load driver: N callbacks, M at a time, each an ARI ``POST
  /ari/channels`` originate of ``PJSIP/{phone}@carrier`` into
  ``peer-callback,s,1`` (the shop's own REST call; AMI is off in the lab).

Run by benches/peer/run, which starts the issuer host and SIPp and passes:

    python benches/peer/peer.py --calls N --concurrent M --issuer HOST:PORT \
        --agi-port 4573 --asterisk-pid PID

Environment: VOICEPAY__ARI__URL, VOICEPAY__ARI__USERNAME,
VOICEPAY__ARI__PASSWORD (scripts/lab.env), VOICEPAY__BANK__ISO8583__ZONE_PIN_KEY.

Output (stdout): one line per finished call, then a summary block of
``key: value`` lines (README "The do-it-yourself peer") with the same figures
as ``scripts/bench sip``. Nothing secret is printed: no PIN, PIN block or
PAN (the PIN is read from the channel and goes straight into F52).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import datetime as dt
import json
import math
import os
import sys
import time
import urllib.parse
import urllib.request
import warnings

warnings.filterwarnings("ignore")

import iso8583  # noqa: E402
import iso8583.specs  # noqa: E402
from panoramisk import fast_agi  # noqa: E402
from psec import des as psec_des  # noqa: E402
from psec import pinblock as psec_pinblock  # noqa: E402

SPEC = iso8583.specs.default
# The lab's published test card (src/bank/test_cards.toml): debit, PIN 805137.
CARD = "6222000000000017"
HOLDER_ID = "11010519491231002X"
ACQUIRER = "12345678"
TERMINAL = "PEERTERM"
ACCEPTOR = "PEERSHOP0000001"
# F39 -> voicepay's result code (DESIGN.md), as voicepay's ISO 8583 link maps it.
F39_RESULT = {
    "00": "success", "55": "wrong_secret", "75": "pin_tries_exceeded",
    "51": "insufficient_funds", "54": "card_expired", "14": "invalid_card",
    "62": "card_restricted", "61": "over_limit", "63": "id_mismatch",
    "91": "issuer_unavailable",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def zh_amount(fen: int) -> list[str]:
    """Mandarin amount as voicepay's digits/* and units/* prompts (yuan < 10,000)."""
    yuan, jiao, f = fen // 100, fen // 10 % 10, fen % 10
    out: list[str] = []
    if yuan:
        places = [(1000, "qian"), (100, "bai"), (10, "shi"), (1, None)]
        zero = False
        for value, unit in places:
            d = yuan // value % 10
            if d == 0:
                zero = bool(out)
                continue
            if zero:
                out.append("digits/0")
                zero = False
            if not (d == 1 and unit == "shi" and not out):
                out.append("digits/liang" if d == 2 and unit in ("bai", "qian") else f"digits/{d}")
            if unit:
                out.append(f"units/{unit}")
        out.append("units/yuan")
    if jiao:
        out += [f"digits/{jiao}", "units/jiao"]
    if f:
        out += (["digits/0"] if out and not jiao else []) + [f"digits/{f}", "units/fen"]
    if not jiao and not f:
        out.append("units/zheng")
    return ["voicepay/" + p for p in out]


class Call:
    def __init__(self, n: int, amount: int):
        self.id = f"peer{n:06d}"
        self.phone = f"1390000{n:04d}"
        self.amount = amount
        self.originated = self.placed = self.answered = self.result_at = None
        self.result: str | None = None
        self.done = asyncio.Event()


class IssuerLink:
    """One persistent ISO 8583 connection; answers matched by STAN."""

    def __init__(self, host: str, port: int, zpk: bytes):
        self.host, self.port, self.zpk = host, port, zpk
        self.stan = 0
        self.waiting: dict[str, asyncio.Future] = {}
        self.writer = None

    async def connect(self) -> None:
        reader, self.writer = await asyncio.open_connection(self.host, self.port)
        asyncio.create_task(self.read_loop(reader))

    async def read_loop(self, reader) -> None:
        while True:
            n = int.from_bytes(await reader.readexactly(2), "big")
            doc, _ = iso8583.decode(bytearray(await reader.readexactly(n)), SPEC)
            fut = self.waiting.pop(doc.get("11", ""), None)
            if fut and not fut.done():
                fut.set_result(doc)

    async def purchase(self, amount: int, pin: str) -> str:
        self.stan = self.stan % 999999 + 1
        stan = f"{self.stan:06d}"
        utc = dt.datetime.now(dt.timezone.utc)
        local = utc.astimezone(dt.timezone(dt.timedelta(hours=8)))
        block = psec_des.encrypt_tdes_ecb(self.zpk, psec_pinblock.encode_pinblock_iso_0(pin, CARD))
        doc = {"t": "0200", "2": CARD, "3": "000000", "4": f"{amount:012d}",
               "7": utc.strftime("%m%d%H%M%S"), "11": stan,
               "12": local.strftime("%H%M%S"), "13": local.strftime("%m%d"),
               "22": "011", "25": "08", "32": ACQUIRER, "41": TERMINAL, "42": ACCEPTOR,
               "49": "156", "52": block.hex().upper(), "53": "1600000000000000",
               "61": "01" + HOLDER_ID.ljust(18)}
        raw, _ = iso8583.encode(doc, SPEC)
        fut = asyncio.get_running_loop().create_future()
        self.waiting[stan] = fut
        self.writer.write(len(raw).to_bytes(2, "big") + bytes(raw))
        await self.writer.drain()
        try:
            answer = await asyncio.wait_for(fut, 30)
        except asyncio.TimeoutError:
            self.waiting.pop(stan, None)
            return "issuer_unavailable"
        return F39_RESULT.get(answer.get("39", ""), "issuer_unavailable")


class Peer:
    def __init__(self, args, issuer: IssuerLink):
        self.args, self.issuer = args, issuer
        self.calls: dict[str, Call] = {}

    # --- FastAGI routes (panoramisk) ---------------------------------------

    def call_of(self, request) -> Call | None:
        return self.calls.get(request.headers.get("agi_arg_1", ""))

    async def agi_order(self, request) -> None:
        call = self.call_of(request)
        if call is None:
            return
        call.answered = time.monotonic()
        amount = "&".join(zh_amount(call.amount))
        last4 = "&".join(f"voicepay/digits/{d}" for d in CARD[-4:])
        await request.send_command(f'SET VARIABLE PEER_AMOUNT_PROMPTS "{amount}"')
        await request.send_command(f'SET VARIABLE PEER_LAST4_PROMPTS "{last4}"')

    async def agi_pay(self, request) -> None:
        call = self.call_of(request)
        if call is None:
            return
        got = await request.send_command("GET VARIABLE PEER_PIN")
        # panoramisk: {'status_code': 200, 'result': ('1', '805137'), ...}
        res = got.get("result") or ("0", "")
        pin = res[1] if isinstance(res, tuple) and len(res) > 1 else ""
        if len(pin) != 6 or not pin.isdigit():
            result = "input_timeout"
        else:
            result = await self.issuer.purchase(call.amount, pin)
        pin = ""
        call.result, call.result_at = result, time.monotonic()
        await request.send_command(f"SET VARIABLE PEER_RESULT {result}")

    async def agi_ended(self, request) -> None:
        call = self.call_of(request)
        if call is None:
            return
        if call.result is None:
            call.result = request.headers.get("agi_arg_2") or "hung_up_before_result"
        call.done.set()

    # --- the load driver ---------------------------------------------------

    def originate(self, call: Call) -> None:
        url = os.environ["VOICEPAY__ARI__URL"].rstrip("/") + "/ari/channels?" + urllib.parse.urlencode({
            "endpoint": f"PJSIP/{call.phone}@carrier", "context": "peer-callback",
            "extension": "s", "priority": "1", "timeout": "30",
            "callerId": "voicepay peer"})
        body = json.dumps({"variables": {"PEER_ORDER": call.id,
                                         "PEER_AGI": f"127.0.0.1:{self.args.agi_port}"}})
        auth = base64.b64encode(
            f'{os.environ["VOICEPAY__ARI__USERNAME"]}:{os.environ["VOICEPAY__ARI__PASSWORD"]}'.encode())
        req = urllib.request.Request(url, data=body.encode(), method="POST", headers={
            "Content-Type": "application/json", "Authorization": "Basic " + auth.decode()})
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()

    async def one(self, call: Call, slots: asyncio.Semaphore) -> None:
        async with slots:
            call.originated = time.monotonic()
            try:
                await asyncio.to_thread(self.originate, call)
                call.placed = time.monotonic()
            except Exception as e:  # noqa: BLE001 - reported as the call's cause
                call.result = f"originate_failed({type(e).__name__})"
                return
            try:
                await asyncio.wait_for(call.done.wait(), self.args.call_timeout)
            except asyncio.TimeoutError:
                call.result = call.result or ("no_answer" if call.answered is None else "timeout")
        print(f"call {call.id} {call.result}"
              + (f" answer->result {1000 * (call.result_at - call.answered):.0f} ms"
                 if call.result_at and call.answered else ""), flush=True)

    async def run(self) -> list[Call]:
        slots = asyncio.Semaphore(self.args.concurrent)
        calls = [Call(i + 1, self.args.amount) for i in range(self.args.calls)]
        self.calls = {c.id: c for c in calls}
        await asyncio.gather(*(self.one(c, slots) for c in calls))
        return calls


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


async def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=3)
    ap.add_argument("--amount", type=int, default=100, help="fen per payment")
    ap.add_argument("--issuer", default="127.0.0.1:8583")
    ap.add_argument("--agi-port", type=int, default=4573)
    ap.add_argument("--asterisk-pid", type=int, required=True)
    ap.add_argument("--call-timeout", type=float, default=90)
    ap.add_argument("--keys", default="Ww1WW805137", help="the SIPp key script (shown only)")
    ap.add_argument("--originates", type=int, default=0,
                    help="originates in flight at most (default: min(64, --concurrent))")
    args = ap.parse_args(argv)
    host, port = args.issuer.rsplit(":", 1)
    issuer = IssuerLink(host, int(port), bytes.fromhex(os.environ["VOICEPAY__BANK__ISO8583__ZONE_PIN_KEY"]))
    # Originates are blocking urllib calls in threads: enough of them that
    # --concurrent callbacks are placed at once, not 6 at a time.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=args.originates or min(64, args.concurrent)))
    await issuer.connect()
    peer = Peer(args, issuer)
    app = fast_agi.Application(loop=asyncio.get_running_loop())
    app.add_route("order", peer.agi_order)
    app.add_route("pay", peer.agi_pay)
    app.add_route("ended", peer.agi_ended)
    server = await asyncio.start_server(app.handler, "127.0.0.1", args.agi_port)
    ast, me = args.asterisk_pid, os.getpid()
    ast0, app0 = cpu_seconds(ast), cpu_seconds(me)
    peak = {"ast": 0, "app": 0, "up": 0}

    async def sample() -> None:  # peak RSS and calls up, every 0.5 s
        while True:
            peak["ast"] = max(peak["ast"], status_kib(ast, "VmRSS"))
            peak["app"] = max(peak["app"], status_kib(me, "VmRSS"))
            up = sum(1 for c in peer.calls.values() if c.answered and not c.done.is_set())
            peak["up"] = max(peak["up"], up)
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    t0 = time.monotonic()
    calls = await peer.run()
    wall = time.monotonic() - t0
    sampler.cancel()
    ast_cpu, app_cpu = cpu_seconds(ast) - ast0, cpu_seconds(me) - app0
    server.close()
    report(args, calls, wall, ast_cpu, app_cpu, peak)
    return 0 if all(c.result == "success" for c in calls) else 1


def report(args, calls: list[Call], wall: float, ast_cpu: float, app_cpu: float, peak: dict) -> None:
    """The figures of `scripts/bench sip` (benches/sip.rs), same layout, plus
    one JSON line for the side-by-side table."""
    ok = [c for c in calls if c.result == "success"]
    causes: dict[str, int] = {}
    for c in calls:
        if c.result != "success":
            causes[c.result or "unknown"] = causes.get(c.result or "unknown", 0) + 1
    a2r = [c.result_at - c.answered for c in ok if c.result_at and c.answered]
    o2r = [c.result_at - c.originated for c in ok if c.result_at]
    o2a = [c.answered - c.originated for c in calls if c.answered]
    starts = sorted(c.originated for c in calls if c.originated)
    # Placed: ARI answered the originate (the channel exists and is dialling).
    ends = sorted(c.placed for c in calls if c.placed)
    placed = len(ends) / (ends[-1] - starts[0]) if ends and ends[-1] > starts[0] else 0.0
    span = max((c.result_at for c in ok), default=0) - starts[0] if ok else 0.0
    n = max(len(ok), 1)

    def p(v: list[float], q: float) -> float:
        return pct(v, q) if v else float("nan")

    def j(x: float) -> float | None:  # JSON has no NaN
        return None if math.isnan(x) else round(x, 3)

    per = 1000 * (ast_cpu + app_cpu) / len(ok) if ok else float("nan")

    print(f"SIP load (do-it-yourself peer): {len(calls)} debit callbacks, {args.concurrent} at a time, "
          f"dialplan Playback/Read + FastAGI (keys {args.keys}), endpoint PJSIP/{{phone}}@carrier")
    print(f"  completed {len(ok)} / failed {len(calls) - len(ok)} {causes}")
    print(f"  order→result   p50 {p(o2r, 50):.2f} s  p99 {p(o2r, 99):.2f} s")
    print(f"  answer→result  p50 {p(a2r, 50):.2f} s  p99 {p(a2r, 99):.2f} s")
    print(f"  originate→answer p50 {p(o2a, 50):.2f} s  p99 {p(o2a, 99):.2f} s "
          f"({len(o2a)} answered; SIPp rings 1 s; answer = the first AGI request)")
    print(f"  callbacks placed {placed:.2f}/s (ARI POST /channels answered, from the first request); "
          f"most calls up at once {peak['up']}")
    print(f"  payments/s sustained {len(ok) / span if span else 0:.2f} "
          f"(completed ÷ {span:.1f} s, first originate to last result; bench wall {wall:.1f} s)")
    print(f"  CPU s: Asterisk {ast_cpu:.2f}, app {app_cpu:.2f}; per completed payment: "
          f"Asterisk {1000 * ast_cpu / n:.1f} ms, app {1000 * app_cpu / n:.1f} ms, "
          f"total {1000 * (ast_cpu + app_cpu) / n:.1f} ms")
    print(f"  peak RSS MiB: Asterisk {peak['ast'] / 1024:.1f}, app {peak['app'] / 1024:.1f} "
          f"(app VmHWM {status_kib(os.getpid(), 'VmHWM') / 1024:.1f})")
    print(f"  app/Asterisk CPU {100 * app_cpu / max(ast_cpu, 0.001):.1f} %")
    print("table: " + json.dumps({
        "implementation": "peer", "calls": len(calls), "concurrent": args.concurrent,
        "completed": len(ok), "placed_per_s": round(placed, 2),
        "success_rate": round(len(ok) / len(calls), 4), "failed": causes,
        "answer_to_result_p50_s": j(p(a2r, 50)), "answer_to_result_p99_s": j(p(a2r, 99)),
        "cpu_per_payment_ms": j(per),
        "cpu_asterisk_s": round(ast_cpu, 2), "cpu_app_s": round(app_cpu, 2),
        "peak_rss_mib": {"asterisk": round(peak["ast"] / 1024, 1), "app": round(peak["app"] / 1024, 1)},
    }))


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
