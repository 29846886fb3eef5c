# shellcheck shell=bash
# scripts/lib.sh — what the scripts in scripts/ share. Sourced, never run:
#     HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
#     # shellcheck source=lib.sh
#     . "$HERE/lib.sh"

# Messages go to stderr, named after the script ("scripts/asterisk: …"), so
# stdout stays what a caller captures (a URL, a path).
say() { printf 'scripts/%s: %s\n' "${0##*/}" "$*" >&2; }
die() { say "$@"; exit 1; }

# apt_install [APT-GET OPTION…] PACKAGE…: install Debian packages without a
# question. A fresh machine may have no package lists yet: when the install
# fails, update them and try once more. The caller redirects the output.
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"; }
}

# ensure_sipp: SIPp (Debian's `sip-tester`: `sipp` with PCAP playback and
# RFC 2833 key-press recordings in /usr/share/sip-tester/), installed from
# Debian's packages when missing (as root). The tests use it as the lab
# carrier on 127.0.0.3:5060 (tests/sipp/, README "The SIPp carrier").
ensure_sipp() {
  command -v sipp >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || { say "SIPp is missing: apt-get install sip-tester (as root)"; return 1; }
  apt_install -qq --no-install-recommends sip-tester >&2 && command -v sipp >/dev/null 2>&1
}

# lab_env: export scripts/lab.env's settings (a variable already set wins).
lab_env() {
  set -a
  # shellcheck source=lab.env
  . "$(dirname "${BASH_SOURCE[0]}")/lab.env"
  set +a
}

# cargo_cache: the Cargo build lives outside the clone, so a second run (or a
# second worktree) reuses it.
cargo_cache() {
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/voicepay/target}
}

# ensure_venv: the Python virtual environment the test peers and tools live
# in, $VOICEPAY_VENV or /var/cache/voicepay/venv, created when missing
# (Debian's python3-venv is installed first, as root, when `python3 -m venv`
# cannot run). Prints nothing on stdout.
ensure_venv() {
  local venv=${VOICEPAY_VENV:-/var/cache/voicepay/venv}
  [ -x "$venv/bin/pip" ] && return 0
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    [ "$(id -u)" = 0 ] || { say "python3-venv is missing (install it as root)"; return 1; }
    apt_install -qq --no-install-recommends python3-venv python3-pip >&2 || return 1
  fi
  say "creating the Python virtual environment $venv"
  python3 -m venv "$venv" >&2
}

# ensure_iso8583_peers: pyiso8583 and psec (pinned in
# tests/iso8583/requirements.txt) in the venv, for the ISO 8583 peer tests
# (tests/bank_iso8583.rs). pip only runs when a pin is not yet satisfied.
ensure_iso8583_peers() {
  local venv=${VOICEPAY_VENV:-/var/cache/voicepay/venv}
  local req
  req="$(dirname "${BASH_SOURCE[0]}")/../tests/iso8583/requirements.txt"
  ensure_venv || return 1
  if "$venv/bin/python" - "$req" <<'PY' 2>/dev/null; then return 0; fi
import sys, importlib.metadata as m
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, want = line.split("==")
        if m.version(name) != want:
            sys.exit(1)
PY
  say "installing $(grep -v '^#' "$req" | tr '\n' ' ')in $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
}
