#!/usr/bin/env python3
"""Writes DIR/keys.pcap: RFC 4733 key presses for one SIPp carrier call.

Usage: keys_pcap.py SCRIPT DIR   (run it as scripts/sipp-keys SCRIPT DIR)

SCRIPT is a key script in the lab handsets' notation: digits 0-9, * and #,
pauses w (0.5 s) and W (1 s); e.g. 'Ww1WW805137' = wait 1.5 s, key 1
(confirm), wait 2 s, key the PIN 805137. The file is byte for byte what the
test kit writes (tests/support/src/sipp.rs, KeyPresses::write; a testkit
test compares the two): a classic pcap (Ethernet, IPv4, UDP, RTP) that
SIPp's play_pcap_audio sends as RTP payload type 101, each press 160 ms
(eight updates every 20 ms, then three end packets with the E bit) and
240 ms of silence after it, one RTP timestamp per press, and sequence
numbers and timestamps increasing through the whole recording (RFC 4733
section 2.5). Python 3 standard library only.
"""

import os
import struct
import sys

TONE_MS = 160
GAP_MS = 240
PACKET_MS = 20
PAYLOAD_TYPE = 101
SSRC = 0x5A1F0C0A
CARRIER_MEDIA_PORT = 16000
EVENTS = {"*": 10, "#": 11}
PAUSES_MS = {"w": 500, "W": 1000}


def packets(script):
    """The (at_ms, rtp bytes) packets of SCRIPT, in sending order."""
    out = []
    now_ms, seq = 0, 0x1000
    for c in script:
        if c in PAUSES_MS:
            now_ms += PAUSES_MS[c]
            continue
        if c.isdigit() and c.isascii():
            event = int(c)
        elif c in EVENTS:
            event = EVENTS[c]
        else:
            raise ValueError(f"key script {script!r}: {c!r} is not 0-9, *, #, w or W")
        ts = (0x8000 + now_ms * 8) & 0xFFFFFFFF

        def push(at_ms, marker, flags, duration):
            nonlocal seq
            rtp = struct.pack(
                ">BBHII4B",
                0x80,
                PAYLOAD_TYPE | (0x80 if marker else 0),
                seq,
                ts,
                SSRC,
                event,
                flags,
                (duration >> 8) & 0xFF,
                duration & 0xFF,
            )
            seq = (seq + 1) & 0xFFFF
            out.append((at_ms, rtp))

        for i in range(TONE_MS // PACKET_MS):
            push(now_ms + i * PACKET_MS, i == 0, 10, i * PACKET_MS * 8)
        end_at = now_ms + TONE_MS
        for i in range(3):
            push(end_at + i * 2, False, 0x80 | 10, TONE_MS * 8)
        now_ms = end_at + GAP_MS
    return out


def checksum(header):
    total = sum(struct.unpack(">10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(payload, ip_id):
    """One Ethernet/IPv4/UDP frame around PAYLOAD (SIPp replaces the
    addresses: it sends from its media port to the far end's SDP address)."""
    eth = bytes([0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00])
    src, dst = bytes([127, 0, 0, 3]), bytes([127, 0, 0, 1])
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), ip_id, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack(">H", checksum(ip)) + ip[12:]
    udp = struct.pack(">HHHH", CARRIER_MEDIA_PORT, 10000, 8 + len(payload), 0)
    return eth + ip + udp + payload


def pcap(script):
    """The whole file: global header (magic, 2.4, snaplen 65535, Ethernet),
    then one record per packet at 1700000000 s + its time."""
    out = [struct.pack("<IHH8xII", 0xA1B2C3D4, 2, 4, 65535, 1)]
    for n, (at_ms, rtp) in enumerate(packets(script)):
        f = frame(rtp, n & 0xFFFF)
        t_us = at_ms * 1000
        out.append(struct.pack("<IIII", 1_700_000_000 + t_us // 1_000_000, t_us % 1_000_000, len(f), len(f)))
        out.append(f)
    return b"".join(out)


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: scripts/sipp-keys SCRIPT DIR   (e.g. 'Ww1WW805137' /tmp/carrier: writes /tmp/carrier/keys.pcap)")
    script, folder = argv[1], argv[2]
    try:
        data = pcap(script)
    except ValueError as e:
        sys.exit(f"sipp-keys: {e}")
    if not os.path.isdir(folder):
        sys.exit(f"sipp-keys: {folder} is not a folder")
    path = os.path.join(folder, "keys.pcap")
    with open(path, "wb") as f:
        f.write(data)
    presses = sum(1 for c in script if c not in PAUSES_MS)
    last_ms = packets(script)[-1][0] if presses else 0
    print(f"{path}: {presses} key presses, {last_ms / 1000:.2f} s")


if __name__ == "__main__":
    main(sys.argv)
