#!/usr/bin/env python3
"""The cells drills, run by `scripts/cells drill NAME` on a lab it started
(README "Cells behind Kamailio"). Python 3's standard library only.

  cell-loss    SIGKILL cell B's Asterisk while N payments run; B's Asterisk is
               started again --b-down-secs later (as a supervisor would).
  daemon-loss  SIGKILL cell A's daemon while N payments run; it stays down.

Both: N debit callback payments (card 6222000000000017, each with its own
amount so the issuer's ledger ties every debit to its order), created
alternately on the two daemons' APIs and answered by one SIPp process as the
carrier's handsets (tests/sipp/uas_answer.xml, keys 1 and PIN 805137 as RFC
4733 events); the kill comes once --kill-after calls are up. From the kill on,
one inbound call a second (--probes) dials the access number through
Kamailio, each for an inbound order of its own. Then it waits for every
order to be final (at most the claim window plus retries) and checks, from
the merchant API, the issuer host's ledger (its state file) and a webhook
receiver of its own:
  - every order final; the victim's in-flight orders retried or call_failed;
  - no double debit: at most one approved, unreversed debit per order, one
    for each succeeded order and none for any other;
  - every final order's webhook received once, no event id received twice,
    none of the daemons' events undelivered.
Prints its figures; exits 1 when a check fails, 2 on a usage error.
"""

import argparse
import base64
import collections
import datetime
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

CARD = "6222000000000017"
ID_NUMBER = "11010519491231002X"
KEYS = "1WW805137"
FINAL = {"succeeded", "failed", "cancelled", "expired"}
ARI_AUTH = "Basic " + base64.b64encode(
    (os.environ.get("VOICEPAY__ARI__USERNAME", "voicepay") + ":"
     + os.environ.get("VOICEPAY__ARI__PASSWORD", "lab-ari-secret-not-for-production")).encode()
).decode()


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def http_json(method, url, body=None, headers=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class Hooks:
    """The merchant's webhook receiver: every delivery, in order."""

    def __init__(self, listen):
        self.lock = threading.Lock()
        self.got = []
        hooks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    ev = json.loads(body)
                except ValueError:
                    ev = {}
                with hooks.lock:
                    hooks.got.append(ev)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        host, port = listen.rsplit(":", 1)
        self.server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self):
        with self.lock:
            return list(self.got)


class Drill:
    def __init__(self, a):
        self.a = a
        m = json.load(open(os.path.join(a.run, "merchant.json")))
        self.auth = {"Authorization": "Bearer " + m["api_key"]}
        self.apis = [f"http://{a.api_a}", f"http://{a.api_b}"]
        self.work = tempfile.mkdtemp(prefix="cells-drill-")
        self.procs = []
        self.orders = {}  # id -> {"amount", "phone", "kind"}
        self.seq = int(time.time()) % 100000
        self.failures = []

    # --- processes ---------------------------------------------------------
    def sipp(self, scenario, port, media_port, calls, timeout_s, extra, folder):
        os.makedirs(folder, exist_ok=True)
        src = os.path.join(self.a.sipp_xml, scenario)
        if scenario.startswith("uas_"):
            # A carrier behind a proxy copies its Record-Route into the answer
            # (RFC 3261 12.1.1), so the cell's ACK and BYE come back through
            # Kamailio; the lab's own scenarios have no proxy to copy.
            xml = open(src).read().replace("[last_Call-ID:]", "[last_Record-Route:]\n      [last_Call-ID:]")
            src = os.path.join(folder, scenario)
            with open(src, "w") as f:
                f.write(xml)
        subprocess.run([sys.executable, self.a.keys_pcap, KEYS, folder], check=True,
                       stdout=subprocess.DEVNULL)
        cmd = ["sipp", "-sf", src,
               "-i", self.a.carrier, "-p", str(port), "-mi", self.a.carrier, "-mp", str(media_port),
               "-m", str(calls), "-nostdin", "-timeout", f"{timeout_s}s",
               "-trace_err", "-error_file", os.path.join(folder, "errors.log")] + extra
        p = subprocess.Popen(cmd, cwd=folder, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    # --- orders ---------------------------------------------------------------
    def create(self, i, mode, phone):
        self.seq += 1
        amount = 100 + self.seq % 90000  # fen: each order its own amount
        body = {"merchant_order_id": f"C{os.getpid()}{mode[0]}{i}N{self.seq}", "amount": amount,
                "currency": "CNY", "phone": phone, "card_number": CARD, "id_number": ID_NUMBER,
                "mode": mode}
        # Either daemon takes it; a dead one (daemon-loss) is skipped.
        for api in (self.apis[i % 2], self.apis[1 - i % 2]):
            try:
                st, o = http_json("POST", f"{api}/v1/orders", body, self.auth)
                break
            except OSError:
                continue
        else:
            raise SystemExit("no daemon took POST /v1/orders")
        if st not in (200, 201):
            raise SystemExit(f"POST /v1/orders on {api}: {st} {o}")
        self.orders[o["id"]] = {"amount": amount, "phone": phone, "kind": mode}
        return o["id"]

    def get(self, oid):
        for api in self.apis:
            try:
                st, o = http_json("GET", f"{api}/v1/orders/{oid}", None, self.auth, timeout=5)
                if st == 200:
                    return o
            except OSError:
                continue
        return None

    def statuses(self, ids):
        return {oid: (self.get(oid) or {}).get("status") for oid in ids}

    def ari_order_ids(self, ari_host):
        """Orders whose callback channels (`vp-<order>-<n>`) are up on that Asterisk."""
        req = urllib.request.Request(f"http://{ari_host}:8088/ari/channels",
                                     headers={"Authorization": ARI_AUTH})
        with urllib.request.urlopen(req, timeout=5) as r:
            chans = json.loads(r.read())
        out = set()
        for c in chans:
            cid = c.get("id", "")
            if cid.startswith("vp-") and c.get("state") == "Up":
                out.add(cid[3:].rsplit("-", 1)[0])
        return out

    def watch_rotation(self, kill_at):
        """When Kamailio takes cell B out of rotation (dispatcher flags I or D)."""
        while time.monotonic() - kill_at < 30:
            r = subprocess.run(["kamcmd", "-s", self.a.kamcmd_socket, "dispatcher.list"],
                               capture_output=True, text=True)
            flags, uri = None, ""
            for line in r.stdout.splitlines():
                line = line.strip()
                if line.startswith("URI:"):
                    uri = line.split(":", 1)[1].strip()
                elif line.startswith("FLAGS:") and uri.startswith("sip:127.0.0.3"):
                    flags = line.split(":", 1)[1].strip()
            if flags and flags[0] in "ID":
                self.out_of_rotation = time.monotonic() - kill_at
                return
            time.sleep(0.1)

    def answered_after_kill(self, o):
        """Seconds from the kill to the first attempt's answer, or None."""
        for att in o.get("attempts") or []:
            t = att.get("answered_at")
            if t:
                return datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() - self.kill_wall
        return None

    def watch_cells(self, stop, seen):
        """Which cell carried which order: callback channel ids (`vp-<order>-<n>`)
        and inbound callers' numbers, sampled from both Asterisks' ARI."""
        while not stop.is_set():
            for cell, host in (("A", "127.0.0.2"), ("B", "127.0.0.3")):
                try:
                    req = urllib.request.Request(f"http://{host}:8088/ari/channels",
                                                 headers={"Authorization": ARI_AUTH})
                    with urllib.request.urlopen(req, timeout=2) as r:
                        for c in json.loads(r.read()):
                            cid = c.get("id", "")
                            if cid.startswith("vp-"):
                                seen.setdefault(cid[3:].rsplit("-", 1)[0], cell)
                            num = (c.get("caller") or {}).get("number", "")
                            for oid, o in self.orders.items():
                                if o["kind"] == "inbound" and num.endswith(o["phone"]):
                                    seen.setdefault(oid, cell)
                except OSError:
                    pass
            time.sleep(0.2)

    def smoke(self):
        """One callback and one inbound payment through each cell."""
        a = self.a
        hooks = Hooks(a.webhook)
        seen, stop = {}, threading.Event()
        threading.Thread(target=self.watch_cells, args=(stop, seen), daemon=True).start()
        self.sipp("uas_answer.xml", 5060, 16000, 20, 170, [], os.path.join(self.work, "handsets"))
        time.sleep(0.5)
        paid = {"callback": set(), "inbound": set()}
        deadline = time.monotonic() + 150
        k = 0
        while time.monotonic() < deadline and not all(len(v) == 2 for v in paid.values()):
            for mode in ("callback", "inbound"):
                if len(paid[mode]) == 2:
                    continue
                phone = f"13{6 if mode == 'callback' else 5}0{self.seq % 1000:03d}{k:04d}"
                oid = self.create(k, mode, phone)
                if mode == "inbound":
                    self.sipp("uac_inbound.xml", 5070 + 2 * k, 17000 + 10 * k, 1, 60,
                              ["-set", "caller", "86" + phone, "-s", "95516", a.kamailio],
                              os.path.join(self.work, f"probe{k}"))
                k += 1
            end = time.monotonic() + 40
            while time.monotonic() < end:
                st = self.statuses(list(self.orders))
                if all(v in FINAL for v in st.values()):
                    break
                time.sleep(1)
            for oid, o in self.orders.items():
                if st.get(oid) == "succeeded" and oid in seen:
                    paid[o["kind"]].add(seen[oid])
            log(f"paid so far: callbacks through cells {sorted(paid['callback'])}, "
                f"inbound through cells {sorted(paid['inbound'])}")
        stop.set()
        for oid, o in self.orders.items():
            oo = self.get(oid) or {}
            log(f"  {o['kind']:8} {oid} cell {seen.get(oid, '?')}: {oo.get('status')} "
                f"{(oo.get('result') or {}).get('code')}")
        for mode, cells in paid.items():
            if cells != {"A", "B"}:
                self.fail(f"{mode}: a payment succeeded only through cells {sorted(cells)}")
        orders = {oid: self.get(oid) or {} for oid in self.orders}
        time.sleep(2)
        self.check_money_and_hooks(orders, hooks)

    def fail(self, msg):
        self.failures.append(msg)
        log("FAIL: " + msg)

    # --- the run -----------------------------------------------------------------
    def run(self):
        a = self.a
        hooks = Hooks(a.webhook)
        t0 = time.monotonic()
        deadline = t0 + a.seconds
        self.sipp("uas_answer.xml", 5060, 16000, a.payments * 4, a.seconds,
                  [], os.path.join(self.work, "handsets"))
        time.sleep(0.5)
        pays = [self.create(i, "callback", f"1370{self.seq % 1000:03d}{i:04d}") for i in range(a.payments)]
        log(f"{len(pays)} callback payments created on both daemons")
        # The kill: once enough calls are up.
        victim_ari = "127.0.0.3" if a.drill == "cell-loss" else "127.0.0.2"
        inflight = set()
        while time.monotonic() < t0 + 60:
            inflight = self.ari_order_ids(victim_ari)
            if len(inflight) >= a.kill_after:
                break
            time.sleep(0.2)
        # Later, so that calls are at every step (confirm, PIN, authorizing).
        time.sleep(a.kill_delay)
        inflight = self.ari_order_ids(victim_ari) & set(pays)
        if a.drill == "cell-loss":
            pid = int(open(a.asterisk_pid_b).read().strip())
            what = f"Asterisk B (pid {pid})"
        else:
            pid = int(open(os.path.join(a.run, "daemon-a.pid")).read().strip())
            what = f"daemon A (pid {pid})"
        os.kill(pid, signal.SIGKILL)
        kill_at = time.monotonic()
        self.kill_wall = time.time()
        log(f"SIGKILL {what} with {len(inflight)} of its calls up")
        self.out_of_rotation = None
        if a.drill == "cell-loss":
            threading.Thread(target=self.watch_rotation, args=(kill_at,), daemon=True).start()
        # Inbound calls through Kamailio, one a second from the kill on.
        probes = []  # (order id, launched after kill)
        restarted = None
        for k in range(a.probes):
            phone = f"1390{self.seq % 1000:03d}{k:04d}"
            oid = self.create(k, "inbound", phone)
            self.sipp("uac_inbound.xml", 5070 + 2 * k, 17000 + 10 * k, 1, 60,
                      ["-set", "caller", "86" + phone, "-s", "95516", a.kamailio],
                      os.path.join(self.work, f"probe{k}"))
            probes.append((oid, time.monotonic() - kill_at))
            if a.drill == "cell-loss" and restarted is None and time.monotonic() - kill_at >= a.b_down_secs:
                subprocess.run(a.restart_b, shell=True, check=True)
                restarted = time.monotonic() - kill_at
                log(f"Asterisk B started again {restarted:.1f} s after the kill")
            time.sleep(1.0)
        if a.drill == "cell-loss" and restarted is None:
            while time.monotonic() - kill_at < a.b_down_secs:
                time.sleep(0.2)
            subprocess.run(a.restart_b, shell=True, check=True)
            restarted = time.monotonic() - kill_at
            log(f"Asterisk B started again {restarted:.1f} s after the kill")
        # Every order final, within the bound.
        ids = pays + [p[0] for p in probes]
        st = {}
        while time.monotonic() < deadline:
            st = self.statuses(ids)
            left = [i for i, s in st.items() if s not in FINAL]
            if not left:
                break
            time.sleep(2)
        final_at = time.monotonic() - kill_at
        orders = {oid: self.get(oid) or {} for oid in ids}
        # Webhooks: give the workers a moment for the last events.
        self.wait_final_hooks(orders, hooks)
        self.report(orders, pays, probes, inflight, hooks, final_at, restarted)

    def wait_final_hooks(self, orders, hooks):
        """Waits (30 s at the most) until the receiver `hooks` has a final
        event for each order of `orders` (id -> order) that is final."""
        want = {oid for oid, o in orders.items() if o.get("status") in FINAL}
        for _ in range(30):
            got = {e.get("data", {}).get("id") for e in hooks.events()
                   if e.get("type") in ("order.succeeded", "order.failed", "order.cancelled", "order.expired")}
            if want <= got:
                break
            time.sleep(1)

    def report(self, orders, pays, probes, inflight, hooks, final_at, restarted):
        a = self.a
        results = collections.Counter()
        for oid in pays:
            o = orders[oid]
            res = (o.get("result") or {}).get("code", "")
            results[f"{o.get('status')}:{res}"] += 1
        nonfinal = [oid for oid, o in orders.items() if o.get("status") not in FINAL]
        log(f"{a.drill}: payments {len(pays)}, results {dict(sorted(results.items()))}")
        if nonfinal:
            self.fail(f"{len(nonfinal)} orders not final {final_at:.0f} s after the kill: {nonfinal[:5]}")
        else:
            log(f"every order final {final_at:.0f} s after the kill")
        # The victim's in-flight orders: retried (more than one attempt) or call_failed.
        retried = failed = other = 0
        for oid in inflight:
            o = orders[oid]
            n = len(o.get("attempts") or [])
            code = (o.get("result") or {}).get("code")
            if n > 1:
                retried += 1
            elif code == "call_failed":
                failed += 1
            else:
                other += 1
        log(f"the victim's calls up at the kill: {len(inflight)}: retried {retried}, call_failed {failed}, "
            f"finished on the first attempt {other}")
        # Inbound calls after the kill.
        ok = [(oid, after) for oid, after in probes if orders[oid].get("status") == "succeeded"]
        pr = collections.Counter((orders[oid].get("status"), (orders[oid].get("result") or {}).get("code"))
                                 for oid, _ in probes)
        log(f"inbound calls after the kill: {len(probes)} ({dict(pr)})")
        if ok:
            first = ok[0]
            answered = [self.answered_after_kill(orders[o]) for o, _ in probes]
            log(f"first inbound call that paid: placed {first[1]:.1f} s after the kill, answered "
                f"{self.answered_after_kill(orders[first[0]]):.1f} s after it ({len(ok)} of {len(probes)} paid; "
                f"each call answered, s after the kill: {[round(x, 1) if x is not None else None for x in answered]})")
        else:
            self.fail("no inbound call placed after the kill paid")
        if restarted is not None:
            log(f"Asterisk B down for {restarted:.1f} s")
        with open(os.path.join(a.run, "kamailio.log"), errors="replace") as f:
            klog = f.read()
        log(f"Kamailio: INVITEs re-sent to the other cell {klog.count('re-sending')}, "
            f"cells marked inactive after a timeout {klog.count('marked inactive')}")
        if a.drill == "cell-loss":
            oor = self.out_of_rotation
            log("Kamailio took cell B out of rotation "
                + (f"{oor:.1f} s after the kill" if oor is not None else "never (within 30 s)"))
        self.check_money_and_hooks(orders, hooks)

    def check_money_and_hooks(self, orders, hooks):
        """Checks the issuer's ledger and the webhooks; returns how many orders were debited twice."""
        a = self.a
        # The issuer's ledger.
        approved = collections.defaultdict(list)
        reversed_keys = set()
        with open(os.path.join(a.run, "issuer-host.stub-bank.jsonl")) as f:
            for line in f:
                e = json.loads(line)
                if e.get("kind") == "answer" and "approved" in (e.get("outcome") or {}):
                    approved[e["amount_fen"]].append(e["key"])
                elif e.get("kind") == "reverse":
                    reversed_keys.add(e["key"])
        doubles = 0
        for oid, o in orders.items():
            amt = self.orders[oid]["amount"]
            debits = [k for k in approved.get(amt, []) if k not in reversed_keys]
            if len(debits) > 1:
                doubles += 1
                self.fail(f"order {oid} debited {len(debits)} times")
            if o.get("status") == "succeeded" and len(debits) != 1:
                self.fail(f"succeeded order {oid} has {len(debits)} debits at the issuer")
            if o.get("status") != "succeeded" and debits:
                self.fail(f"{o.get('status')} order {oid} was debited")
        log(f"issuer ledger: approved debits {sum(len(v) for v in approved.values())}, "
            f"reversed {len(reversed_keys)}, double debits {doubles}")
        # Webhooks.
        evs = hooks.events()
        per_id = collections.Counter(e.get("id") for e in evs)
        dup = {k: n for k, n in per_id.items() if n > 1}
        finals = collections.Counter(e.get("data", {}).get("id") for e in evs
                                     if e.get("type") in ("order.succeeded", "order.failed",
                                                          "order.cancelled", "order.expired"))
        missing = [oid for oid, o in orders.items() if o.get("status") in FINAL and finals[oid] != 1]
        listed = subprocess.run([a.bin, "webhooks", "list", "--json", "--limit", "10000"],
                                capture_output=True, text=True, env=self.db_env())
        known = [json.loads(l) for l in listed.stdout.splitlines() if l.strip()]
        lost = [e for e in known if e.get("id") not in per_id]
        log(f"webhooks: received {len(evs)}, event ids twice {len(dup)}, final orders without exactly one "
            f"final event {len(missing)}, events at voicepay never received {len(lost)}")
        if dup:
            self.fail(f"event ids received twice: {list(dup)[:5]}")
        if missing:
            self.fail(f"final orders without exactly one final webhook: {missing[:5]}")
        if lost:
            self.fail(f"events never received: {[e.get('id') for e in lost[:5]]}")
        if listed.returncode != 0:
            self.fail(f"voicepay webhooks list failed: {listed.stderr.strip()[:200]}")
        return doubles

    def db_env(self):
        env = dict(os.environ)
        env["VOICEPAY__DATABASE__URL"] = self.a.database_url
        return env


# The lab's paths and addresses, which scripts/cells passes to every drill.
LAB_ARGS = ("run", "bin", "api-a", "api-b", "asterisk-pid-a", "asterisk-pid-b", "kamailio", "carrier",
            "webhook", "sipp-xml", "keys-pcap", "restart-b", "database-url", "kamcmd-socket")


def add_lab_args(p):
    """Adds LAB_ARGS to the argparse parser p, each as a required --name."""
    for k in LAB_ARGS:
        p.add_argument("--" + k, required=True)


def run_drill(name, drill, body, after=None):
    """Runs body(), then drill.cleanup() and after() (if given) whatever
    happened; logs `name: ok`, or `name: FAILED (n checks)` and exits 1
    when drill.failures holds any failed check."""
    try:
        body()
    finally:
        drill.cleanup()
        if after:
            after()
    if drill.failures:
        log(f"{name}: FAILED ({len(drill.failures)} checks)")
        sys.exit(1)
    log(f"{name}: ok")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("drill", choices=["smoke", "cell-loss", "daemon-loss"])
    p.add_argument("--payments", type=int, default=40)
    p.add_argument("--kill-after", type=int, default=0,
                   help="calls up on the victim before the kill (default: a quarter of --payments)")
    p.add_argument("--kill-delay", type=float, default=3.0,
                   help="seconds from --kill-after calls up to the kill")
    p.add_argument("--probes", type=int, default=8)
    p.add_argument("--b-down-secs", type=float, default=15.0)
    p.add_argument("--seconds", type=int, default=300)
    add_lab_args(p)
    a = p.parse_args()
    if a.kill_after <= 0:
        a.kill_after = max(1, a.payments // 4)
    d = Drill(a)
    run_drill(a.drill, d, d.smoke if a.drill == "smoke" else d.run)


if __name__ == "__main__":
    main()
