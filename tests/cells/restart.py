#!/usr/bin/env python3
"""The daemon-restart drill, run by `scripts/cells drill daemon-restart` on
a lab it started (README "Daemon restarts that drop no call"). Python 3's
standard library only; the lab helpers come from tests/cells/drill.py.

N debit callback payments (default 50; card 6222000000000017, each with its
own amount so that the issuer's ledger ties each debit to its order) are
created alternately on the two daemons over --spread seconds (default 6)
and answered by one SIPp process as the carrier's handsets (keys 1 and PIN
805137, RFC 4733). Once --kill-after of daemon A's calls (default a fifth
of N) are mid-payment (channel up on Asterisk A, order in_call or
authorizing; or, failing that, past the most seen), daemon A gets SIGTERM
(--signal term: it exits when it is done) or SIGKILL (--signal kill), and
is started again as soon as it is gone, as a supervisor would
(`scripts/cells restart-daemon-a`, same node, same app). The drill waits
(at most --seconds from the start) for every order to be
final and prints:

  completed       orders succeeded
  retried         orders with more than one call attempt
  lost            orders not final at the end, or ended call_failed
  charged twice   orders with more than one approved, unreversed debit in
                  the issuer host's ledger (its state file)
  restart gap     signal -> old daemon gone -> new daemon ready (/readyz 200:
                  database, ARI and the acquirer link up)

and the split of daemon A's mid-payment calls (finished on their first
attempt, retried, call_failed, other), with the load (`uptime`) at the
start and the end (scripts/cells prints the command). It also runs
drill.py's money and webhook checks. Exits 1 on a double charge, an order
not final, or a failed check; 2 on a usage error.
"""

import argparse
import collections
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import drill  # noqa: E402  (the lab helpers: SIPp, orders, ledger, webhooks)
from drill import FINAL, Hooks, log  # noqa: E402

# The handsets' keys again (see Restart.handsets): 1, 6 s, the PIN.
REKEYS = "1WWWWWW805137"


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def alive(pid):
    """The process runs (a zombie waiting for its reaper does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Restart(drill.Drill):
    def ready(self, api):
        try:
            with urllib.request.urlopen(f"http://{api}/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def handsets(self):
        """SIPp as the handsets (tests/sipp/uas_answer.xml): after the
        answer, keys 1 and the PIN; then, like a person who hears the
        question again, 1 and the PIN again at about 14 s and 30 s: 1, a
        pause longer than ivr.inter_digit_timeout_secs (so that a 1 at the
        PIN step is a short entry the IVR asks again, never a wrong PIN
        sent to the bank), then the PIN. A call that is not restarted has
        ended by the first repeat; a resumed call re-prompts its step and
        drops the digits keyed before that. One recording with one RTP
        timeline: a second recording would reuse the first one's RTP
        timestamps, and Asterisk takes a key event with a timestamp it has
        seen for a repeat of it (RFC 4733 2.5) and drops it."""
        a = self.a
        keys = drill.KEYS
        drill.KEYS = keys + "W" * 9 + REKEYS + "W" * 7 + REKEYS
        try:
            return self.sipp("uas_answer.xml", 5060, 16000, a.payments * 4, a.seconds, [],
                             os.path.join(self.work, "handsets"))
        finally:
            drill.KEYS = keys

    def resumes(self, orders, pays):
        """What daemon A's log says about the hand-over and the resume
        (outbound mode): calls handed over, resumed per step (and how the
        order ended), digits discarded."""
        path = os.path.join(self.a.run, "daemon-a.log")
        if not os.path.exists(path):
            return 0
        handed = discarded = 0
        resumed = {}
        first = None
        with open(path, errors="replace") as f:
            for line in f:
                m = re.search(r"order=(ord_[0-9a-f]+)", line)
                if "handed over to the next run" in line:
                    handed += 1
                elif "discarded" in line and "digit" in line:
                    discarded += 1
                elif "resuming the call after a restart" in line and m:
                    step = re.search(r'step="?([a-z_]+)', line)
                    resumed[m.group(1)] = step.group(1) if step else "?"
                    ts = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
                    first = ts if first is None else min(first, ts)
        ends = collections.Counter()
        for oid, step in resumed.items():
            o = orders.get(oid) or {}
            ends[(step, f"{o.get('status')}:{(o.get('result') or {}).get('code')}")] += 1
        log(f"daemon A's log: calls handed over {handed}, resumed {len(resumed)} "
            f"(step -> end: {dict(sorted(ends.items()))}), digits keyed before a resumed prompt discarded {discarded}")
        if first is not None:
            log(f"first call resumed {first - self.signal_wall:.1f} s after the signal")
        return len(resumed)

    def run(self):
        a = self.a
        hooks = Hooks(a.webhook)
        t0 = time.monotonic()
        deadline = t0 + a.seconds
        handsets = self.handsets()
        time.sleep(1.0)
        if handsets.poll() is not None:
            errors = open(os.path.join(self.work, "handsets", "errors.log"), errors="replace").read()
            raise SystemExit(f"SIPp (the handsets, {a.carrier}:5060) exited at once: {errors.strip()[-300:]}")
        # Created over --spread seconds (in the background), so that the
        # calls are at different steps at the signal.
        pays = []

        def create_all():
            for i in range(a.payments):
                pays.append(self.create(i, "callback", f"1371{self.seq % 1000:03d}{i:04d}"))
                time.sleep(a.spread / a.payments)

        creator = threading.Thread(target=create_all, daemon=True)
        creator.start()
        # The signal: once --kill-after of daemon A's calls are mid-payment
        # (channel up on Asterisk A, order in_call or authorizing), or the
        # most seen within 60 s.
        best, inflight, steps = 0, set(), collections.Counter()
        while time.monotonic() < t0 + 60:
            up = self.ari_order_ids("127.0.0.2") & set(pays)
            st = {oid: (self.get(oid) or {}).get("status") for oid in up}
            mid = {oid for oid, v in st.items() if v in ("in_call", "authorizing")}
            if len(mid) >= best:
                best, inflight, steps = len(mid), mid, collections.Counter(st[o] for o in mid)
            if len(mid) >= a.kill_after or (best and len(mid) < best * 3 // 4 and not creator.is_alive()):
                inflight, steps = mid, collections.Counter(st[o] for o in mid)
                break
            time.sleep(0.1)
        up_at_signal = len(up)
        pidfile = os.path.join(a.run, "daemon-a.pid")
        pid = int(open(pidfile).read().strip())
        sig = signal.SIGTERM if a.signal == "term" else signal.SIGKILL
        os.kill(pid, sig)
        at = time.monotonic()
        self.signal_wall = time.time()
        log(f"SIG{a.signal.upper()} daemon A (pid {pid}, ari.websocket = {a.websocket}) with "
            f"{up_at_signal} of its calls up, {len(inflight)} of them mid-payment {dict(steps)}")
        # Gone: a SIGTERM'd daemon finishes its shutdown first (bounded).
        gone = None
        while time.monotonic() - at < a.term_wait:
            if not alive(pid):
                gone = time.monotonic() - at
                break
            time.sleep(0.05)
        if gone is None:
            self.fail(f"daemon A still ran {a.term_wait:.0f} s after SIG{a.signal.upper()}; SIGKILL")
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            gone = time.monotonic() - at
        up_during_stop = self.ari_order_ids("127.0.0.2") & inflight
        log(f"daemon A gone {gone:.1f} s after the signal; {len(up_during_stop)} of its "
            f"{len(inflight)} calls still up on Asterisk A then")
        subprocess.run(a.restart_a, shell=True, check=True)
        creator.join()
        log(f"{len(pays)} callback payments created on both daemons over {a.spread:.0f} s")
        ready = None
        while time.monotonic() - at < a.term_wait + 60:
            if self.ready(a.api_a):
                ready = time.monotonic() - at
                break
            time.sleep(0.1)
        if ready is None:
            self.fail("daemon A did not become ready again within 60 s of its start")
        else:
            log(f"daemon A ready again {ready:.1f} s after the signal ({ready - gone:.1f} s after it was gone)")
        st = {}
        while time.monotonic() < deadline:
            st = self.statuses(pays)
            if all(s in FINAL for s in st.values()):
                break
            time.sleep(2)
        final_at = time.monotonic() - at
        orders = {oid: self.get(oid) or {} for oid in pays}
        self.wait_final_hooks(orders, hooks)
        self.report(orders, pays, inflight, hooks, final_at, gone, ready)

    def report(self, orders, pays, inflight, hooks, final_at, gone, ready):
        a = self.a
        results = collections.Counter()
        retried = completed = call_failed = 0
        nonfinal = []
        for oid in pays:
            o = orders[oid]
            code = (o.get("result") or {}).get("code", "")
            results[f"{o.get('status')}:{code}"] += 1
            completed += o.get("status") == "succeeded"
            retried += len(o.get("attempts") or []) > 1
            call_failed += code == "call_failed"
            if o.get("status") not in FINAL:
                nonfinal.append(oid)
        log(f"daemon-restart: payments {len(pays)}, results {dict(sorted(results.items()))}")
        if nonfinal:
            self.fail(f"{len(nonfinal)} orders not final {final_at:.0f} s after the signal: {nonfinal[:5]}")
        else:
            log(f"every order final {final_at:.0f} s after the signal")
        split = collections.Counter()
        for oid in inflight:
            o = orders[oid]
            code = (o.get("result") or {}).get("code")
            if len(o.get("attempts") or []) > 1:
                split["retried"] += 1
            elif code == "call_failed":
                split["call_failed"] += 1
            elif o.get("status") == "succeeded":
                split["finished on the first attempt"] += 1
            else:
                split[f"other ({o.get('status')}:{code})"] += 1
        log(f"daemon A's calls mid-payment at the signal: {len(inflight)}: {dict(split)}")
        resumed = self.resumes(orders, pays)
        # The aims: a SIGTERM (drain, or hand-over) and any restart in
        # outbound mode (resume) cost none of A's calls a second call or
        # the payment; outbound mode resumes at least one of them.
        if a.signal == "term" or a.websocket == "outbound":
            again = split["retried"] + split["call_failed"]
            if again:
                self.fail(f"{again} of daemon A's {len(inflight)} calls mid-payment were called again or lost")
        if a.websocket == "outbound" and inflight and not resumed:
            self.fail("outbound mode, and daemon A resumed none of its calls")
        doubles = self.check_money_and_hooks(orders, hooks)
        # The lab carried the payments: the calls the restart did not touch pay.
        untouched = [oid for oid in pays if oid not in inflight]
        unpaid = [oid for oid in untouched if orders[oid].get("status") != "succeeded"]
        if len(unpaid) > len(untouched) // 10:
            self.fail(f"{len(unpaid)} of the {len(untouched)} payments the restart did not touch did not pay "
                      f"(the lab did not carry them)")
        failed_otherwise = collections.Counter(
            (orders[o].get("result") or {}).get("code") for o in pays
            if orders[o].get("status") in FINAL and orders[o].get("status") != "succeeded"
            and (orders[o].get("result") or {}).get("code") != "call_failed")
        lost = len(nonfinal) + call_failed
        summary = (f"completed {completed}, retried {retried}, lost {lost} "
                   f"(not final {len(nonfinal)}, call_failed {call_failed}), charged twice {doubles}, "
                   f"failed otherwise {sum(failed_otherwise.values())} {dict(failed_otherwise)}")
        gap = (f"restart gap: gone {gone:.1f} s after the signal, ready "
               + (f"{ready:.1f} s after it" if ready is not None else "never"))
        log(f"daemon-restart --signal {a.signal} --websocket {a.websocket}: {summary}; {gap}")
        log(f"load at the end: {uptime()}")
        # The daemons' logs outlive the lab (scripts/cells up clears its folder).
        for c in ("a", "b"):
            src = os.path.join(a.run, f"daemon-{c}.log")
            if os.path.exists(src):
                shutil.copy(src, self.work)
        log(f"daemon logs kept in {self.work}")


def main():
    p = argparse.ArgumentParser(prog="scripts/cells drill daemon-restart")
    p.add_argument("drill", choices=["daemon-restart"])
    p.add_argument("--payments", type=int, default=50)
    p.add_argument("--signal", choices=["term", "kill"], default="term")
    p.add_argument("--websocket", choices=["inbound", "outbound"], default="inbound",
                   help="what the lab was started with (scripts/cells sets it)")
    p.add_argument("--kill-after", type=int, default=0,
                   help="daemon A's calls mid-payment at the signal (default: a fifth of --payments)")
    p.add_argument("--spread", type=float, default=6.0,
                   help="seconds over which the payments are created")
    p.add_argument("--term-wait", type=float, default=60.0,
                   help="seconds a SIGTERM'd daemon may take to exit before it is SIGKILLed")
    p.add_argument("--seconds", type=int, default=300, help="bound on the whole run")
    p.add_argument("--probes", type=int, default=0, help=argparse.SUPPRESS)
    drill.add_lab_args(p)
    p.add_argument("--restart-a", required=True)
    a = p.parse_args()
    if not 1 <= a.payments <= 200:
        p.error("--payments must be 1 to 200")
    if a.kill_after <= 0:
        a.kill_after = max(1, a.payments // 5)
    log(f"load at the start: {uptime()}")
    d = Restart(a)
    drill.run_drill("daemon-restart", d, d.run)


if __name__ == "__main__":
    main()
