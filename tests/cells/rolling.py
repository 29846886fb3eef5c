#!/usr/bin/env python3
"""Drill rolling-restart, run by `scripts/cells drill rolling-restart` on a lab
it started (README "Cells behind Kamailio", "Rolling restarts"). Python 3's
standard library only; the checks and helpers are drill.py's.

A stream of payments (--payments N, default 60, alternately a debit callback
order and an inbound call through Kamailio, one every --interval s, default
1; each order its own amount; long enough to outlast both cells' restarts) runs while each cell in turn, A then B, is:
  1. drained: Kamailio's dispatcher state of the cell set to disabled over
     its RPC (`dispatcher.set_state d 1 sip:<cell>:5060`): no new inbound
     call goes there;
  2. its daemon sent SIGTERM: it stops claiming callback orders, turns new
     inbound calls away (503: Kamailio re-sends them to the other cell),
     reports `draining` on /readyz and waits for its calls to end
     (`telephony.drain_secs`), then exits;
  3. restarted: `scripts/cells restart-cell C` (PJSIP maintenance mode on,
     `core stop gracefully`, Asterisk and the daemon started again);
  4. undrained: dispatcher state active again, once the daemon is ready.
Then every order must be final, and:
  - zero calls dropped: every payment succeeded (approved) on its first
    attempt: none call_failed, no retry caused by the restarts;
  - no double debit in the issuer's ledger, every final order's webhook
    received once, no event id twice, none undelivered (drill.py's checks).
Prints the figures (calls up at each SIGTERM, drain time, time out of
rotation, payments during each drain, totals); exits 1 when a check fails.
"""

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from drill import ARI_AUTH, FINAL, Drill, Hooks, http_json, log, run_drill  # noqa: E402


class Rolling(Drill):
    def __init__(self, a):
        super().__init__(a)
        self.sip = {"a": a.sip_a, "b": a.sip_b}
        self.api = {"a": a.api_a, "b": a.api_b}
        self.created_at = {}  # order id -> monotonic time created
        self.figures = {}

    # --- the cell's parts ------------------------------------------------------
    def kamcmd(self, *args):
        r = subprocess.run(["kamcmd", "-s", self.a.kamcmd_socket, *args],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise SystemExit(f"kamcmd {' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
        return r.stdout

    def dispatcher_flags(self, cell):
        uri, flags = "", {}
        for line in self.kamcmd("dispatcher.list").splitlines():
            line = line.strip()
            if line.startswith("URI:"):
                uri = line.split(":", 1)[1].strip()
            elif line.startswith("FLAGS:"):
                flags[uri] = line.split(":", 1)[1].strip()
        return flags.get(f"sip:{self.sip[cell]}:5060", "")

    def calls_up(self, cell):
        """Channels up on the cell's Asterisk (one per call: callback legs and inbound callers)."""
        req = urllib.request.Request(f"http://{self.sip[cell]}:8088/ari/channels",
                                     headers={"Authorization": ARI_AUTH})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return sum(1 for c in json.loads(r.read()) if c.get("state") == "Up")
        except OSError:
            return None

    def daemon_pid(self, cell):
        return int(open(os.path.join(self.a.run, f"daemon-{cell}.pid")).read().strip())

    def roll(self, cell):
        """Drain, restart and undrain one cell; records its figures."""
        uri = f"sip:{self.sip[cell]}:5060"
        t0 = time.monotonic()
        self.kamcmd("dispatcher.set_state", "d", "1", uri)
        log(f"cell {cell.upper()}: dispatcher state {self.dispatcher_flags(cell)} (out of rotation)")
        up = self.calls_up(cell)
        pid = self.daemon_pid(cell)
        os.kill(pid, signal.SIGTERM)
        term = time.monotonic()
        log(f"cell {cell.upper()}: SIGTERM daemon (pid {pid}) with {up} calls up on its Asterisk")
        saw_draining = False
        while time.monotonic() - term < self.a.drain_wait:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            if not saw_draining:
                try:
                    st, body = http_json("GET", f"http://{self.api[cell]}/readyz", timeout=2)
                    saw_draining = st == 503 and (body or {}).get("draining") is True
                except OSError:
                    pass
            time.sleep(0.2)
        else:
            self.fail(f"daemon {cell.upper()} still running {self.a.drain_wait} s after SIGTERM")
            os.kill(pid, signal.SIGKILL)
        drained = time.monotonic() - term
        log(f"cell {cell.upper()}: daemon drained and stopped in {drained:.1f} s "
            f"(/readyz reported draining: {saw_draining})")
        subprocess.run(self.a.restart_cell + " " + cell, shell=True, check=True)
        restarted = time.monotonic() - term
        # Active and probed again (`a` alone would stop the OPTIONS probes).
        self.kamcmd("dispatcher.set_state", "ap", "1", uri)
        while time.monotonic() - t0 < 120 and not self.dispatcher_flags(cell).startswith("A"):
            time.sleep(0.2)
        back = time.monotonic() - t0
        log(f"cell {cell.upper()}: Asterisk and daemon restarted {restarted:.1f} s after the SIGTERM; "
            f"back in rotation ({self.dispatcher_flags(cell)}) {back:.1f} s after the drain began")
        self.figures[cell] = {"calls_up_at_sigterm": up, "drain_s": drained, "restart_s": restarted,
                              "out_of_rotation_s": back, "window": (t0, t0 + back),
                              "saw_draining": saw_draining}

    # --- the stream -------------------------------------------------------------
    def stream(self, stop):
        a = self.a
        for k in range(a.payments):
            if stop.is_set():
                break
            mode = "callback" if k % 2 == 0 else "inbound"
            phone = f"13{8 if mode == 'callback' else 9}1{self.seq % 1000:03d}{k:04d}"
            oid = self.create(k, mode, phone)
            self.created_at[oid] = time.monotonic()
            if mode == "inbound":
                self.sipp("uac_inbound.xml", 5070 + 2 * k, 17000 + 10 * k, 1, 90,
                          ["-set", "caller", "86" + phone, "-s", "95516", a.kamailio],
                          os.path.join(self.work, f"inbound{k}"))
            time.sleep(a.interval)

    def run(self):
        a = self.a
        hooks = Hooks(a.webhook)
        t_start = time.monotonic()
        self.sipp("uas_answer.xml", 5060, 16000, a.payments * 4, a.seconds, [],
                  os.path.join(self.work, "handsets"))
        time.sleep(0.5)
        stop = threading.Event()
        streamer = threading.Thread(target=self.stream, args=(stop,), daemon=True)
        streamer.start()
        # Calls up on both cells before the first drain.
        time.sleep(a.warmup)
        for cell in ("a", "b"):
            self.roll(cell)
            time.sleep(a.between)
        # The stream runs to its end (N payments), then stops.
        streamer.join(timeout=a.payments * a.interval + 60)
        stop.set()
        ids = list(self.orders)
        log(f"{len(ids)} payments created; waiting for every order to be final")
        deadline = t_start + a.seconds
        while time.monotonic() < deadline:
            st = self.statuses(ids)
            if all(s in FINAL for s in st.values()):
                break
            time.sleep(2)
        orders = {oid: self.get(oid) or {} for oid in ids}
        want = {oid for oid, o in orders.items() if o.get("status") in FINAL}
        for _ in range(30):
            got = {e.get("data", {}).get("id") for e in hooks.events()
                   if e.get("type") in ("order.succeeded", "order.failed", "order.cancelled",
                                        "order.expired")}
            if want <= got:
                break
            time.sleep(1)
        self.report(orders, hooks, time.monotonic() - t_start)

    def report(self, orders, hooks, total_s):
        results = collections.Counter()
        for oid, o in orders.items():
            kind = self.orders[oid]["kind"]
            n = len(o.get("attempts") or [])
            code = (o.get("result") or {}).get("code")
            results[f"{kind}:{o.get('status')}:{code}:attempts={n}"] += 1
            if o.get("status") not in FINAL:
                self.fail(f"{kind} order {oid} not final: {o.get('status')}")
            elif o.get("status") != "succeeded" or code != "approved":
                self.fail(f"{kind} order {oid} dropped: {o.get('status')} {code}")
            if code == "call_failed":
                self.fail(f"{kind} order {oid} ended call_failed")
            if n > 1:
                self.fail(f"{kind} order {oid} needed {n} attempts (a retry)")
        log(f"rolling-restart: payments {len(orders)}, results {dict(sorted(results.items()))}")
        for cell, f in self.figures.items():
            t0, t1 = f["window"]
            during = sum(1 for oid, t in self.created_at.items() if t0 <= t <= t1)
            log(f"cell {cell.upper()}: calls up at SIGTERM {f['calls_up_at_sigterm']}, "
                f"drain {f['drain_s']:.1f} s, Asterisk+daemon restarted {f['restart_s']:.1f} s after "
                f"SIGTERM, out of rotation {f['out_of_rotation_s']:.1f} s, "
                f"payments created meanwhile {during}, /readyz draining seen {f['saw_draining']}")
        with open(os.path.join(self.a.run, "kamailio.log"), errors="replace") as fh:
            klog = fh.read()
        log(f"Kamailio: INVITEs re-sent to the other cell {klog.count('re-sending')}")
        log(f"total {total_s:.0f} s")
        self.check_money_and_hooks(orders, hooks)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--payments", type=int, default=60)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between two payments")
    p.add_argument("--warmup", type=float, default=15.0, help="seconds of payments before cell A drains")
    p.add_argument("--between", type=float, default=3.0, help="seconds between cell A back and cell B's drain")
    p.add_argument("--drain-wait", type=float, default=90.0,
                   help="the longest wait for a daemon to exit after SIGTERM")
    p.add_argument("--seconds", type=int, default=420, help="the whole drill's bound")
    for k in ("run", "bin", "api-a", "api-b", "sip-a", "sip-b", "kamailio", "carrier", "webhook",
              "sipp-xml", "keys-pcap", "restart-cell", "database-url", "kamcmd-socket"):
        p.add_argument("--" + k, required=True)
    a = p.parse_args()
    # SIGTERM (a timeout, scripts/cells' caller): still stop our SIPp processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    d = Rolling(a)
    run_drill("rolling-restart", d, d.run)


if __name__ == "__main__":
    main()
