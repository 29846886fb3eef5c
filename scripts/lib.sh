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

# ensure_multimon: multimon-ng (Debian's `multimon-ng`), whose DTMF decoder
# the assisted-payment test runs on the agent's recording
# (tests/asterisk/assisted_e2e.rs), installed when missing (as root).
ensure_multimon() {
  command -v multimon-ng >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || { say "multimon-ng is missing: apt-get install multimon-ng (as root)"; return 1; }
  apt_install -qq --no-install-recommends multimon-ng >&2 && command -v multimon-ng >/dev/null 2>&1
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

# ensure_venv: the Python virtual environment the test tools share,
# $VOICEPAY_VENV (default /var/cache/voicepay/venv), created when missing;
# Debian's python3-venv is installed first (as root) when `python3 -m venv`
# cannot work. Prints nothing on stdout.
ensure_venv() {
  VOICEPAY_VENV=${VOICEPAY_VENV:-/var/cache/voicepay/venv}
  [ -x "$VOICEPAY_VENV/bin/pip" ] && return 0
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    [ "$(id -u)" = 0 ] || { say "python3-venv is missing (install it as root)"; return 1; }
    apt_install -qq --no-install-recommends python3-venv python3-pip >&2 || return 1
  fi
  python3 -m venv "$VOICEPAY_VENV" >&2
}

# venv_install ARG…: `pip install ARG…` (a pinned requirement, or -r FILE)
# in the venv of ensure_venv, quietly; already installed pins cost nothing.
venv_install() {
  ensure_venv || return 1
  "$VOICEPAY_VENV/bin/pip" install -q --disable-pip-version-check "$@" >&2
}

# ensure_iso8583_peer: pyiso8583 and psec, pinned in
# tests/iso8583-peer-requirements.txt, in the venv: what the Python ISO 8583
# issuer peer (tests/iso8583_peer/) runs on.
ensure_iso8583_peer() {
  local req
  req="$(dirname "${BASH_SOURCE[0]}")/../tests/iso8583-peer-requirements.txt"
  venv_install -r "$req" || return 1
  "$VOICEPAY_VENV/bin/python" -W ignore -c 'import iso8583, psec' 2>/dev/null
}

# start_issuer_host BIN LISTEN STATE LOG: `BIN bank serve --listen LISTEN`
# (the stub issuer as an ISO 8583 issuer host, README "Shared issuer host")
# in the background, on its own stub state file STATE, its log in LOG; the
# [bank.iso8583] zone PIN key comes from the environment. Returns once it
# printed its ready line (shown on stderr), with ISSUER_HOST_PID set; fails
# when it exits first.
start_issuer_host() {
  local bin=$1 listen=$2 state=$3 log=$4 ready pid
  ready=$(mktemp)
  # Owner-only, as the rest of the run folder (umask 077), also when an
  # older run left it readable.
  (umask 077 && : >"$log") && chmod 600 "$log"
  VOICEPAY__BANK__STUB_STATE=$state "$bin" bank serve --listen "$listen" >"$ready" 2>>"$log" &
  pid=$!
  until grep -q 'listening on' "$ready"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      grep -q 'listening on' "$ready" && break
      say "voicepay bank serve did not start (log: $log):"
      tail -n 5 "$log" >&2
      rm -f "$ready"
      return 1
    fi
    sleep 0.2
  done
  say "$(cat "$ready")"
  rm -f "$ready"
  # shellcheck disable=SC2034 # read by the caller
  ISSUER_HOST_PID=$pid
}
