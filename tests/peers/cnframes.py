#!/usr/bin/env python3
"""A second, independent DL/T 645-2007 and CJ/T 188 codec, written from the
standards' description (docs/methodology.md section 12), for cross-checking meterflow's.

Reads JSON commands on stdin (one per line), answers one JSON line each:
  {"op": "dlt_request", "address": "000000001234", "di": "00010000"} -> {"hex": "..."}
  {"op": "dlt_reply", "address": ..., "di": ..., "value": 1234.56, "bytes": 4, "decimals": 2} -> {"hex": ...}
  {"op": "dlt_decode", "hex": "..."} -> {"address", "control", "di", "value_hex"}
  {"op": "cjt_request", "type": 16, "address": "12000000000000"} -> {"hex": ...}
  {"op": "cjt_reply", "type": 16, "address": ..., "m3": 12.34} -> {"hex": ...}
  {"op": "cjt_decode", "hex": ...} -> {"type", "address", "control", "m3", "unit"}
"""
import json
import sys


def cs(frame):
    return sum(frame) % 256


def bcd(value, n):
    """Non-negative integer -> n BCD bytes, least significant byte first."""
    digits = str(int(value)).rjust(2 * n, "0")
    if len(digits) > 2 * n:
        raise ValueError("does not fit")
    out = []
    for i in range(n):
        pair = digits[len(digits) - 2 * (i + 1):len(digits) - 2 * i]
        out.append(int(pair[0]) << 4 | int(pair[1]))
    return out


def unbcd(bs):
    s = "".join(f"{b:02X}" for b in reversed(bs))
    if not s.isdigit():
        raise ValueError("not BCD")
    return int(s)


def find(data, start_ok):
    """First index i where data[i] == 0x68 and the frame starting there is whole."""
    for i, b in enumerate(data):
        if b == 0x68 and start_ok(data, i):
            return i
    raise ValueError("no frame")


def dlt_addr(text):
    return [int(text[i:i + 2], 16) for i in range(0, 12, 2)][::-1]


def dlt_frame(addr, control, data):
    body = [0x68] + addr + [0x68, control, len(data)] + [(b + 0x33) % 256 for b in data]
    return [0xFE, 0xFE, 0xFE, 0xFE] + body + [cs(body), 0x16]


def dlt_di(di_text):
    # DI3 DI2 DI1 DI0 as written; sent DI0 first.
    return [int(di_text[i:i + 2], 16) for i in range(0, 8, 2)][::-1]


def dlt_decode(raw):
    def ok(d, i):
        if i + 10 > len(d) or d[i + 7] != 0x68:
            return False
        n = d[i + 9]
        end = i + 12 + n
        return end <= len(d) and d[end - 1] == 0x16 and cs(d[i:i + 10 + n]) == d[i + 10 + n]
    i = find(raw, ok)
    n = raw[i + 9]
    data = [(b - 0x33) % 256 for b in raw[i + 10:i + 10 + n]]
    addr = "".join(f"{b:02X}" for b in reversed(raw[i + 1:i + 7]))
    di = "".join(f"{b:02X}" for b in reversed(data[:4]))
    return {"address": addr, "control": raw[i + 8], "di": di, "value_hex": "".join(f"{b:02X}" for b in data[4:])}


def cjt_addr(text):
    return [int(text[i:i + 2], 16) for i in range(0, 14, 2)]


def cjt_frame(t, addr, control, data):
    body = [0x68, t] + addr + [control, len(data)] + data
    return body + [cs(body), 0x16]


def cjt_decode(raw):
    def ok(d, i):
        if i + 11 > len(d):
            return False
        n = d[i + 10]
        end = i + 13 + n
        return end <= len(d) and d[end - 1] == 0x16 and cs(d[i:i + 11 + n]) == d[i + 11 + n]
    i = find(raw, ok)
    n = raw[i + 10]
    data = raw[i + 11:i + 11 + n]
    out = {"type": raw[i + 1], "address": "".join(f"{b:02X}" for b in raw[i + 2:i + 9]), "control": raw[i + 9]}
    if raw[i + 9] == 0x81:
        out["m3"] = unbcd(data[3:7]) / 100
        out["unit"] = data[7]
    return out


def handle(c):
    op = c["op"]
    if op == "dlt_request":
        return {"hex": bytes(dlt_frame(dlt_addr(c["address"]), 0x11, dlt_di(c["di"]))).hex()}
    if op == "dlt_reply":
        value = bcd(round(c["value"] * 10 ** c["decimals"]), c["bytes"])
        return {"hex": bytes(dlt_frame(dlt_addr(c["address"]), 0x91, dlt_di(c["di"]) + value)).hex()}
    if op == "dlt_decode":
        return dlt_decode(list(bytes.fromhex(c["hex"])))
    if op == "cjt_request":
        return {"hex": bytes(cjt_frame(c["type"], cjt_addr(c["address"]), 0x01, [0x90, 0x1F, 0x00])).hex()}
    if op == "cjt_reply":
        v = bcd(round(c["m3"] * 100), 4)
        data = [0x90, 0x1F, 0x00] + v + [0x2C] + v + [0x2C] + [0, 0, 0x12, 0x01, 0x12, 0x26, 0x20] + [0, 0]
        return {"hex": bytes(cjt_frame(c["type"], cjt_addr(c["address"]), 0x81, data)).hex()}
    if op == "cjt_decode":
        return cjt_decode(list(bytes.fromhex(c["hex"])))
    raise ValueError(f"unknown op {op}")


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            print(json.dumps(handle(json.loads(line))))
        except Exception as e:  # reported to the test, which fails on it
            print(json.dumps({"error": str(e)}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
