#!/usr/bin/env python3
"""A serial-to-TCP gateway with DL/T 645-2007 and CJ/T 188 meters behind it,
written from the standards' description with the codec of cnframes.py (not
meterflow's): frames, the +0x33 offset, BCD, FE wake-up bytes. It answers the
way meters in the field do, including their disagreements.

    cngateway.py CONFIG.json     prints "PORT <n>" once it listens

CONFIG:
  {"meters": [METER, ...], "control_dir": "DIR"}
  DL/T 645 METER: {"proto": "dlt645", "address": "000000001234",
      "start": 100.0, "rate_per_s": 0.01,     # forward active energy, kWh
      "unsupported": ["02030000"],            # answered 0xD1, "no requested data"
      "bad_checksum_on": [3],                 # these requests (1-based, per meter) get a corrupted checksum
      "tou": {"hours": [24 × "critical" | "peak" | "flat" | "valley"],
              "shift_h": 0}}                  # its own TOU table by local (UTC+8) hour, its clock shifted:
                                              # 费率 1-4 (00010100..00010400) file the energy by it
  CJ/T 188 METER: {"proto": "cjt188", "type": 16, "address": "78563412000000",
      "di": "901F" | "1F90",                  # the DI order the meter understands
      "status": "valve01_battery2" | "battery5_valve67",
      "error": "di_ser_status" | "ser_status",
      "start": 5.0, "rate_per_s": 0.001, "battery_low": false, "valve": "open" | "closed",
      "always_error": 0}                      # non-zero: answer every read with 0xC1 and this ST0
  While DIR/silent exists, no meter answers. A broadcast read-address (0x13)
  is answered by every DL/T 645 meter at once: on a real line the replies
  overlap, here they are OR-ed byte by byte.
Counts of requests per meter are written to DIR/requests.json after each one.
"""
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cnframes import bcd, cjt_addr, cjt_frame, cs, dlt_addr, dlt_frame  # noqa: E402

# DL/T 645 identifiers the emulated meters have: (bytes, decimals, value or None = the counter).
DLT_ITEMS = {
    "00010000": (4, 2, None),
    "02010100": (2, 1, 229.8),
    "02030000": (3, 4, 3.5),
    # 费率 1-4 of forward active energy: 尖峰, 峰, 平, 谷 (meters with a "tou" table).
    "00010100": (4, 2, 0),
    "00010200": (4, 2, 1),
    "00010300": (4, 2, 2),
    "00010400": (4, 2, 3),
}
TOU = ["critical", "peak", "flat", "valley"]

T0 = time.time()
LOCK = threading.Lock()


def counter(m):
    return m["start"] + m["rate_per_s"] * (time.time() - T0)


def registers(m):
    """The meter's tariff registers: the energy counted since it started,
    each part filed under the period its own table gives the local hour it
    was counted in (the hour of the meter's clock: shifted by shift_h)."""
    with LOCK:
        now = counter(m)
        st = m.setdefault("_registers", {"last": m["start"], "t": [0.0] * 4})
        shift = m["tou"].get("shift_h", 0)
        hour = time.gmtime(time.time() + 3600 * (8 + shift)).tm_hour
        st["t"][TOU.index(m["tou"]["hours"][hour])] += now - st["last"]
        st["last"] = now
        return list(st["t"])


def dlt_reply(m, control, di_bytes):
    """Reply to a DL/T 645 read of `di_bytes` (DI0 first) by meter `m`."""
    addr = dlt_addr(m["address"])
    di = "".join(f"{b:02X}" for b in reversed(di_bytes))
    if di in m.get("unsupported", []) or di not in DLT_ITEMS:
        return dlt_frame(addr, 0xD1, [0x02])
    n, decimals, fixed = DLT_ITEMS[di]
    if di in ("00010100", "00010200", "00010300", "00010400"):
        if "tou" not in m:
            return dlt_frame(addr, 0xD1, [0x02])
        value = registers(m)[fixed]
    else:
        value = counter(m) if fixed is None else fixed
    return dlt_frame(addr, 0x91, list(di_bytes) + bcd(round(value * 10 ** decimals), n))


def cjt_reply(m, di_bytes, ser):
    t = m["type"]
    addr = cjt_addr(m["address"])
    want = [int(m["di"][0:2], 16), int(m["di"][2:4], 16)]
    valve = {"open": 0, "closed": 1}[m.get("valve", "open")]
    battery = bool(m.get("battery_low", False))
    if m.get("status", "valve01_battery2") == "valve01_battery2":
        st0 = valve | (0x04 if battery else 0)
    else:
        st0 = (valve << 6) | (0x20 if battery else 0)
    if m.get("always_error") or list(di_bytes) != want:
        st = m.get("always_error") or 0x00
        if m.get("error", "di_ser_status") == "di_ser_status":
            data = list(di_bytes) + [ser, st, 0x00]
        else:
            data = [ser, st, 0x00]
        return [0xFE] * 4 + cjt_frame(t, addr, 0xC1, data)
    v = bcd(round(counter(m) * 100), 4)
    data = list(di_bytes) + [ser] + v + [0x2C] + v + [0x2C]
    data += [0x00, 0x00, 0x12, 0x01, 0x12, 0x26, 0x20]  # real time
    data += [st0, 0x00]
    return [0xFE] * 4 + cjt_frame(t, addr, 0x81, data)


def take_request(buf):
    """(request, rest) for the first whole frame in buf, or (None, buf)."""
    i = 0
    while i < len(buf):
        if buf[i] != 0x68:
            i += 1
            continue
        # DL/T 645: 68 A0..A5 68 C L DATA CS 16
        if i + 9 < len(buf) and buf[i + 7] == 0x68:
            n = buf[i + 9]
            end = i + 12 + n
            if end <= len(buf):
                if buf[end - 1] == 0x16 and cs(buf[i:i + 10 + n]) == buf[i + 10 + n]:
                    return ("dlt", buf[i:end]), buf[end:]
            else:
                return None, buf[i:]
        # CJ/T 188: 68 T A0..A6 C L DATA CS 16
        if i + 10 < len(buf):
            n = buf[i + 10]
            end = i + 13 + n
            if end <= len(buf):
                if buf[end - 1] == 0x16 and cs(buf[i:i + 11 + n]) == buf[i + 11 + n]:
                    return ("cjt", buf[i:end]), buf[end:]
            else:
                return None, buf[i:]
        else:
            return None, buf[i:]
        i += 1
    return None, []


class Gateway:
    def __init__(self, config):
        self.meters = config["meters"]
        self.control = config["control_dir"]
        self.requests = {m["address"]: 0 for m in self.meters}

    def silent(self):
        return os.path.exists(os.path.join(self.control, "silent"))

    def count(self, m):
        with LOCK:
            self.requests[m["address"]] += 1
            n = self.requests[m["address"]]
            path = os.path.join(self.control, "requests.json")
            with open(path + ".tmp", "w") as f:
                json.dump(self.requests, f)
            os.replace(path + ".tmp", path)
        return n

    def answer(self, kind, frame):
        if self.silent():
            return None
        if kind == "dlt":
            addr = frame[1:7]
            control = frame[8]
            data = [(b - 0x33) % 256 for b in frame[10:10 + frame[9]]]
            if control == 0x13 and addr == [0xAA] * 6:
                replies = [dlt_frame(dlt_addr(m["address"]), 0x93, dlt_addr(m["address"]))
                           for m in self.meters if m["proto"] == "dlt645"]
                if not replies:
                    return None
                width = max(len(r) for r in replies)
                out = [0] * width
                for r in replies:
                    for k, b in enumerate(r):
                        out[k] |= b
                return out
            for m in self.meters:
                if m["proto"] == "dlt645" and dlt_addr(m["address"]) == addr and control == 0x11:
                    n = self.count(m)
                    reply = dlt_reply(m, control, data[:4])
                    if n in m.get("bad_checksum_on", []):
                        reply[-2] = (reply[-2] + 1) % 256
                    return reply
            return None
        t = frame[1]
        addr = frame[2:9]
        data = frame[11:11 + frame[10]]
        for m in self.meters:
            if m["proto"] == "cjt188" and cjt_addr(m["address"]) == addr and m["type"] == t:
                n = self.count(m)
                reply = cjt_reply(m, data[:2], data[2] if len(data) > 2 else 0)
                if n in m.get("bad_checksum_on", []):
                    reply[-2] = (reply[-2] + 1) % 256
                return reply
        return None

    def serve(self, conn):
        buf = []
        with conn:
            while True:
                try:
                    chunk = conn.recv(256)
                except OSError:
                    return
                if not chunk:
                    return
                buf += list(chunk)
                while True:
                    req, buf = take_request(buf)
                    if req is None:
                        break
                    reply = self.answer(*req)
                    if reply is not None:
                        time.sleep(0.02)  # a meter's turnaround
                        try:
                            conn.sendall(bytes(reply))
                        except OSError:
                            return


def main():
    with open(sys.argv[1]) as f:
        config = json.load(f)
    gw = Gateway(config)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    print(f"PORT {srv.getsockname()[1]}", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=gw.serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
