#!/usr/bin/env python3
"""The database drills of the cells lab, run by `scripts/cells drill
db-loss|split-brain` on a lab it started (README "Cells behind Kamailio",
"Database drills"). Python 3's standard library only; the lab, the orders,
the handsets and the global checks come from tests/cells/drill.py.

  db-loss      stops the cells' own PostgreSQL cluster (`scripts/postgres
               down` with VOICEPAY_PG_DIR/VOICEPAY_PG_PORT of the cells) for
               --outage-secs (20) while callbacks and inbound calls run on
               both cells, then starts it again.
  split-brain  cuts daemon A off from PostgreSQL only, for --cut-secs (30):
               daemon A reaches the database through `dbdrills.py proxy`
               (below), which the drill stops (SIGUSR1: every connection
               closed, the port refused) and starts again (SIGUSR2). Its
               Asterisk, the issuer host and daemon B keep running.
  proxy        the TCP proxy of split-brain: --listen HOST:PORT to --target
               HOST:PORT, its pid in --pidfile.

Both: N callback payments (default 20) created alternately on the two
daemons' APIs, answered by one SIPp process as the handsets (which logs
every message: the carrier's INVITEs per handset), and one more order a
second (--probes, alternately inbound through Kamailio and callback) from
before the cut until after it, each POSTed to one daemon and, when it is
refused, to the other. A POST answered 201 is an acknowledged order. The cut
comes once --kill-after calls are up (on both cells for db-loss, on cell A
for split-brain). Checks, after the cut, within --seconds:
  - no acknowledged order lost: each one read back from the API;
  - every order final; the calls up at the cut finished (succeeded) or
    failed cleanly (a final status and a result code);
  - no call placed twice: no handset got more INVITEs (distinct Call-IDs)
    than its order has call attempts recorded;
  - split-brain: cell A started no new callback channel from 2 s after the
    cut to the restore (without the database it cannot claim an order);
  - drill.py's global checks: no double debit in the issuer's ledger,
    every final order's webhook once, no event id twice, none lost.
Prints its figures; exits 1 when a check fails, 2 on a usage error.
"""

import argparse
import asyncio
import collections
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
import drill as base  # noqa: E402
from drill import FINAL, Drill, Hooks, add_lab_args, http_json, log, run_drill  # noqa: E402

A_HOST, B_HOST = "127.0.0.2", "127.0.0.3"


# --- the split-brain proxy -----------------------------------------------------
def proxy_main(listen, target, pidfile):
    """Forwards TCP from `listen` to `target` until SIGTERM. SIGUSR1 cuts:
    the listening socket is closed (new connections refused) and every
    forwarded connection is closed; SIGUSR2 listens again."""
    lhost, lport = listen.rsplit(":", 1)
    thost, tport = target.rsplit(":", 1)
    conns = set()
    state = {"server": None}

    async def pipe(r, w):
        try:
            while True:
                data = await r.read(65536)
                if not data:
                    break
                w.write(data)
                await w.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    async def handle(cr, cw):
        try:
            tr, tw = await asyncio.open_connection(thost, int(tport))
        except OSError:
            cw.close()
            return
        pair = (cw, tw)
        conns.add(pair)
        try:
            await asyncio.gather(pipe(cr, tw), pipe(tr, cw))
        finally:
            conns.discard(pair)

    async def start():
        state["server"] = await asyncio.start_server(handle, lhost, int(lport), reuse_address=True)

    def cut():
        if state["server"] is not None:
            state["server"].close()
            state["server"] = None
        for cw, tw in list(conns):
            for w in (cw, tw):
                try:
                    w.transport.abort()
                except Exception:  # noqa: BLE001 — already closed
                    pass
        conns.clear()
        print(f"[{time.strftime('%H:%M:%S')}] cut", flush=True)

    def restore():
        if state["server"] is None:
            asyncio.ensure_future(start())
        print(f"[{time.strftime('%H:%M:%S')}] restored", flush=True)

    async def main():
        await start()
        with open(pidfile, "w") as f:
            f.write(str(os.getpid()))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, cut)
        loop.add_signal_handler(signal.SIGUSR2, restore)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    asyncio.run(main())


# --- the drills ----------------------------------------------------------------
class DbDrill(Drill):
    def __init__(self, a):
        super().__init__(a)
        self.refused = collections.Counter()  # refusals of POST /v1/orders, by reason
        self.acked = []  # order ids answered 201
        self.created_at = {}  # order id -> monotonic time of its 201
        self.probes = []  # (order id, mode)

    def create_soft(self, i, mode, phone, first):
        """POST one order to daemon `first` (0 = A, 1 = B), then to the other
        when it is refused. Returns its id, or None when both refused."""
        self.seq += 1
        amount = 100 + self.seq % 90000
        body = {"merchant_order_id": f"D{os.getpid()}{mode[0]}{i}N{self.seq}", "amount": amount,
                "currency": "CNY", "phone": phone, "card_number": base.CARD,
                "id_number": base.ID_NUMBER, "mode": mode}
        for n in (first, 1 - first):
            api = self.apis[n]
            try:
                st, o = http_json("POST", f"{api}/v1/orders", body, self.auth, timeout=8)
            except OSError as e:
                self.refused[f"{'AB'[n]}: {type(e).__name__}"] += 1
                continue
            if st in (200, 201):
                self.orders[o["id"]] = {"amount": amount, "phone": phone, "kind": mode}
                self.acked.append(o["id"])
                self.created_at[o["id"]] = time.monotonic()
                return o["id"]
            code = (o or {}).get("error", {}).get("code") if isinstance(o, dict) else None
            self.refused[f"{'AB'[n]}: {st} {code}"] += 1
        return None

    def inbound_call(self, k, phone):
        self.sipp("uac_inbound.xml", 5070 + 2 * k, 17000 + 10 * k, 1, 60,
                  ["-set", "caller", "86" + phone, "-s", "95516", self.a.kamailio],
                  os.path.join(self.work, f"probe{k}"))

    def probe_loop(self, first_of):
        """One order a second, --probes of them: even ones inbound (called
        through Kamailio), odd ones callbacks."""
        for k in range(self.a.probes):
            mode = "inbound" if k % 2 == 0 else "callback"
            phone = f"13{8 if mode == 'inbound' else 7}1{self.seq % 1000:03d}{k:04d}"
            oid = self.create_soft(k, mode, phone, first_of(k))
            if oid is not None:
                self.probes.append((oid, mode))
                if mode == "inbound":
                    self.inbound_call(k, phone)
            time.sleep(1.0)

    def channels(self, host):
        """(callback channel ids `vp-<order>-<n>` up or ringing, inbound
        order ids whose caller is on a channel) on that Asterisk."""
        req = urllib.request.Request(f"http://{host}:8088/ari/channels",
                                     headers={"Authorization": base.ARI_AUTH})
        try:
            with urllib.request.urlopen(req, timeout=3) as r:
                chans = json.loads(r.read())
        except OSError:
            return set(), set()
        cb, inb = set(), set()
        phones = {o["phone"]: oid for oid, o in list(self.orders.items()) if o["kind"] == "inbound"}
        for c in chans:
            cid = c.get("id", "")
            if cid.startswith("vp-"):
                cb.add(cid)
            num = (c.get("caller") or {}).get("number", "")
            for p, oid in phones.items():
                if num.endswith(p):
                    inb.add(oid)
        return cb, inb

    def up_orders(self, hosts):
        """Orders with a call up on those Asterisks (callbacks answered, inbound)."""
        out = set()
        for h in hosts:
            cb, inb = self.channels(h)
            out |= {c[3:].rsplit("-", 1)[0] for c in cb} | inb
        return out

    def ready(self):
        out = []
        for api in self.apis:
            try:
                st, _ = http_json("GET", f"{api}/readyz", None, None, timeout=2)
            except OSError:
                st = None
            out.append(st == 200)
        return out

    def invites(self):
        """Distinct INVITE Call-IDs the handsets received, per dialled number."""
        per = collections.defaultdict(set)
        folder = os.path.join(self.work, "handsets")
        for name in os.listdir(folder):
            if not name.endswith("_messages.log"):
                continue
            text = open(os.path.join(folder, name), errors="replace").read()
            for m in re.finditer(r"^INVITE sip:([^@;> ]+)@.*?^Call-ID:\s*(\S+)", text, re.M | re.S | re.I):
                per[m.group(1)].add(m.group(2))
        return per

    def start_handsets(self, calls):
        self.sipp("uas_answer.xml", 5060, 16000, calls, self.a.seconds + 60,
                  ["-trace_msg"], os.path.join(self.work, "handsets"))
        time.sleep(0.5)

    def wait_for_calls(self, hosts, n):
        t0 = time.monotonic()
        while time.monotonic() < t0 + 60:
            if len(self.up_orders(hosts)) >= n:
                break
            time.sleep(0.2)
        time.sleep(self.a.kill_delay)
        return self.up_orders(hosts)

    def wait_final(self, deadline):
        st = {}
        while time.monotonic() < deadline:
            st = self.statuses(self.acked)
            if all(s in FINAL for s in st.values()):
                break
            time.sleep(2)
        return st

    def start_payments(self):
        """Starts the handsets and creates --payments callback orders, one
        on each daemon in turn; returns (the webhook receiver's log, the
        start time)."""
        a = self.a
        hooks = Hooks(a.webhook)
        t0 = time.monotonic()
        self.start_handsets((a.payments + a.probes) * 4)
        pays = [self.create_soft(i, "callback", f"1370{self.seq % 1000:03d}{i:04d}", i % 2)
                for i in range(a.payments)]
        log(f"{len(pays)} callback payments created on both daemons")
        return hooks, t0

    def settle(self, probes, t0, up_at):
        """Waits for the probe thread and for every order to end (by
        --seconds from t0); returns the seconds since up_at."""
        probes.join(timeout=self.a.probes + 30)
        self.wait_final(t0 + self.a.seconds)
        return time.monotonic() - up_at

    # --- db-loss -----------------------------------------------------------------
    def db_loss(self):
        a = self.a
        hooks, t0 = self.start_payments()
        probes = threading.Thread(target=self.probe_loop, args=(lambda k: k % 2,), daemon=True)
        probes.start()
        inflight = self.wait_for_calls((A_HOST, B_HOST), a.kill_after)
        stop = subprocess.run(a.pg_down, shell=True, capture_output=True, text=True)
        down_at = time.monotonic()
        log(f"PostgreSQL stopped ({a.pg_down!r}, rc {stop.returncode}) with {len(inflight)} calls up "
            f"on the cells")
        not_ready = [0, 0]
        samples = 0
        while time.monotonic() < down_at + a.outage_secs:
            r = self.ready()
            samples += 1
            for i in (0, 1):
                not_ready[i] += not r[i]
            time.sleep(1.0)
        start = subprocess.run(a.pg_up, shell=True, capture_output=True, text=True)
        up_at = time.monotonic()
        log(f"PostgreSQL started again {up_at - down_at:.1f} s after the stop (rc {start.returncode})")
        if stop.returncode or start.returncode:
            self.fail(f"scripts/postgres: {stop.stderr.strip()[-200:]} {start.stderr.strip()[-200:]}")
        back = [None, None]
        while None in back and time.monotonic() < up_at + 60:
            r = self.ready()
            for i in (0, 1):
                if back[i] is None and r[i]:
                    back[i] = time.monotonic() - up_at
            time.sleep(0.5)
        final_at = self.settle(probes, t0, up_at)
        log(f"/readyz during the outage ({samples} looks): not ready A {not_ready[0]}, B {not_ready[1]}; "
            f"ready again after the start: A {fmt(back[0])} s, B {fmt(back[1])} s")
        self.report(inflight, final_at, "the start", hooks)

    # --- split-brain ---------------------------------------------------------------
    def split_brain(self):
        a = self.a
        hooks, t0 = self.start_payments()
        probes = threading.Thread(target=self.probe_loop, args=(lambda k: 0,), daemon=True)
        inflight = self.wait_for_calls((A_HOST,), a.kill_after)
        before, _ = self.channels(A_HOST)
        proxy = int(open(a.proxy_pid).read().strip())
        os.kill(proxy, signal.SIGUSR1)
        cut_at = time.monotonic()
        log(f"daemon A cut off from PostgreSQL (proxy pid {proxy} stopped) with {len(inflight)} calls up "
            f"on cell A")
        probes.start()
        new_a, late_a = set(), set()
        a_ready = a_notready = 0
        while time.monotonic() < cut_at + a.cut_secs:
            cb, _ = self.channels(A_HOST)
            fresh = cb - before
            new_a |= fresh
            if time.monotonic() > cut_at + 2:
                late_a |= fresh
            before |= cb
            r = self.ready()
            a_ready += r[0]
            a_notready += not r[0]
            time.sleep(0.3)
        os.kill(proxy, signal.SIGUSR2)
        up_at = time.monotonic()
        log(f"daemon A's database link restored {up_at - cut_at:.1f} s after the cut")
        final_at = self.settle(probes, t0, up_at)
        log(f"cell A during the cut: new callback channels {len(new_a)} (from 2 s after the cut: "
            f"{len(late_a)}), /readyz of A ready {a_ready} / not ready {a_notready} looks")
        if late_a:
            self.fail(f"cell A placed calls while cut off from the database: {sorted(late_a)[:5]}")
        self.report(inflight, final_at, "the restore", hooks)

    def keep_logs(self):
        """The lab's logs, kept with the drill's (the lab folder is wiped by
        the next `scripts/cells up`)."""
        for name in ("daemon-a.log", "daemon-b.log", "kamailio.log", "issuer-host.log", "pg-proxy.log"):
            src = os.path.join(self.a.run, name)
            if os.path.exists(src):
                shutil.copy(src, self.work)
        log(f"logs kept in {self.work}")

    # --- figures and checks ------------------------------------------------------
    def report(self, inflight, final_at, after, hooks):
        a = self.a
        orders = {oid: self.get(oid) or {} for oid in self.acked}
        lost = [oid for oid, o in orders.items() if not o]
        results = collections.Counter(
            f"{o.get('status')}:{(o.get('result') or {}).get('code', '')}" for o in orders.values())
        log(f"{a.drill}: orders acknowledged {len(self.acked)} (payments {a.payments}, probes "
            f"{len(self.probes)} of {a.probes}: {dict(collections.Counter(m for _, m in self.probes))}), "
            f"refused {sum(self.refused.values())} {dict(self.refused)}")
        log(f"{a.drill}: results {dict(sorted(results.items()))}")
        if lost:
            self.fail(f"acknowledged orders lost: {lost[:5]}")
        else:
            log(f"acknowledged orders lost: 0 of {len(self.acked)}")
        nonfinal = [oid for oid, o in orders.items() if o and o.get("status") not in FINAL]
        if nonfinal:
            self.fail(f"{len(nonfinal)} orders not final {final_at:.0f} s after {after}: {nonfinal[:5]}")
        else:
            log(f"every order final {final_at:.0f} s after {after}")
        fin = collections.Counter()
        for oid in inflight:
            o = orders.get(oid) or {}
            code = (o.get("result") or {}).get("code")
            if o.get("status") == "succeeded":
                fin["succeeded"] += 1
            elif o.get("status") in FINAL and code:
                fin[f"{o.get('status')}:{code}"] += 1
            else:
                fin["not clean"] += 1
                self.fail(f"call up at the cut ended unclean: {oid} {o.get('status')} {code}")
        log(f"calls up at the cut: {len(inflight)}: {dict(fin)}")
        # Calls placed twice: INVITEs per handset against recorded attempts.
        inv = self.invites()
        twice = []
        att_hist, inv_hist = collections.Counter(), collections.Counter()
        for oid, o in orders.items():
            if self.orders[oid]["kind"] != "callback":
                continue
            phone = self.orders[oid]["phone"]
            n_inv = sum(len(ids) for num, ids in inv.items() if num.endswith(phone))
            n_att = len(o.get("attempts") or [])
            att_hist[n_att] += 1
            inv_hist[n_inv] += 1
            if n_inv > n_att:
                twice.append((oid, n_inv, n_att))
        log(f"callbacks: call attempts recorded per order {dict(sorted(att_hist.items()))}, INVITEs per "
            f"handset {dict(sorted(inv_hist.items()))}, handsets called more often than recorded {len(twice)}")
        if twice:
            self.fail(f"calls placed twice or unrecorded (order, INVITEs, attempts): {twice[:5]}")
        # Webhooks: a moment for the last events.
        self.wait_final_hooks(orders, hooks)
        self.check_money_and_hooks({k: v for k, v in orders.items() if v}, hooks)


def fmt(x):
    return "never" if x is None else f"{x:.1f}"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "proxy":
        p = argparse.ArgumentParser()
        p.add_argument("cmd")
        for k in ("listen", "target", "pidfile"):
            p.add_argument("--" + k, required=True)
        a = p.parse_args()
        proxy_main(a.listen, a.target, a.pidfile)
        return
    p = argparse.ArgumentParser()
    p.add_argument("drill", choices=["db-loss", "split-brain"])
    p.add_argument("--payments", type=int, default=20)
    p.add_argument("--probes", type=int, default=24,
                   help="orders created one a second from the cut on (alternately inbound and callback)")
    p.add_argument("--kill-after", type=int, default=0,
                   help="calls up before the cut (default: a third of --payments)")
    p.add_argument("--kill-delay", type=float, default=3.0)
    p.add_argument("--outage-secs", type=float, default=20.0, help="db-loss: PostgreSQL down this long")
    p.add_argument("--cut-secs", type=float, default=30.0, help="split-brain: daemon A cut off this long")
    p.add_argument("--seconds", type=int, default=330, help="bound on the whole run")
    p.add_argument("--pg-down", default="")
    p.add_argument("--pg-up", default="")
    p.add_argument("--proxy-pid", default="")
    add_lab_args(p)
    a = p.parse_args()
    if a.kill_after <= 0:
        a.kill_after = max(1, a.payments // 3)
    if a.drill == "db-loss" and not (a.pg_down and a.pg_up):
        p.error("db-loss needs --pg-down and --pg-up")
    if a.drill == "split-brain" and not a.proxy_pid:
        p.error("split-brain needs --proxy-pid")
    d = DbDrill(a)
    run_drill(a.drill, d, d.db_loss if a.drill == "db-loss" else d.split_brain, after=d.keep_logs)


if __name__ == "__main__":
    main()
