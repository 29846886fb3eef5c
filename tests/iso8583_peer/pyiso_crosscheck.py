"""Cross-check of voicepay's ISO 8583 codec against pyiso8583 (tests/bank_iso8583.rs).

Reads JSON from stdin: {"cases": [{"hex": ..., "doc": {...}}], "spec": true}
where "hex" is a message as voicepay encoded it and "doc" the fields it
holds (pyiso8583's decoded form: text, binary fields as upper-case hex).
For each case: decode "hex" with iso8583.decode(raw, iso8583.specs.default)
and compare with "doc"; encode "doc" with iso8583.encode and report the
bytes. Also reports the default spec's field table. Writes JSON to stdout.
"""

import json
import sys

import iso8583
import iso8583.specs


def field_table():
    spec = iso8583.specs.default
    return {
        str(n): [spec[str(n)]["len_type"], spec[str(n)]["max_len"], spec[str(n)]["data_enc"]]
        for n in range(2, 129)
    }


def check(case):
    out = {"decode_error": None, "mismatch": None, "encoded": None, "encode_error": None}
    want = case["doc"]
    try:
        got, _ = iso8583.decode(bytes.fromhex(case["hex"]), iso8583.specs.default)
        got = {k: v for k, v in got.items() if k not in ("p", "1", "h")}
        if got != want:
            diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            out["mismatch"] = diff  # field numbers only: never the values
    except Exception as e:  # noqa: BLE001 - any failure is reported
        out["decode_error"] = type(e).__name__ + ": " + str(e).split(":")[0]
    try:
        raw, _ = iso8583.encode(dict(want), iso8583.specs.default)
        out["encoded"] = raw.hex()
    except Exception as e:  # noqa: BLE001
        out["encode_error"] = type(e).__name__ + ": " + str(e).split(":")[0]
    return out


def main():
    req = json.load(sys.stdin)
    json.dump({"spec": field_table(), "results": [check(c) for c in req["cases"]]}, sys.stdout)


if __name__ == "__main__":
    main()
