#!/usr/bin/env python3
"""Independent Modbus peer for meterflow's tests: a pymodbus server (TCP or
RTU on a serial device) serving a register image built here with Python's
struct module, logging every frame with its time, and optionally answering
one unit late.

Image spec (JSON): {"units": {"1": [{"space": "holding", "address": 0,
"type": "f32", "order": "ABCD", "value": 1234.5}, ...]}}; "raw": [words]
instead of type/value puts words as they are.
"""
import argparse
import asyncio
import json
import logging
import struct
import sys
import time

import pymodbus
from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSparseDataBlock
from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

FORMATS = {"u16": ">H", "i16": ">h", "u32": ">I", "i32": ">i", "u64": ">Q", "i64": ">q", "f32": ">f", "f64": ">d"}


def words_of(entry):
    """Registers as a Modbus device of that byte/word order would send them."""
    if "raw" in entry:
        return list(entry["raw"])
    fmt = FORMATS[entry["type"]]
    value = entry["value"]
    if entry["type"][0] in "ui":
        value = int(value)
    data = struct.pack(fmt, value)  # big-endian bytes A B C D ...
    words = [data[i:i + 2] for i in range(0, len(data), 2)]
    order = entry.get("order", "ABCD")
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return [struct.unpack(">H", w)[0] for w in words]


def build(image):
    devices = {}
    for unit, entries in image["units"].items():
        blocks = {"holding": {}, "input": {}}
        for e in entries:
            for k, w in enumerate(words_of(e)):
                blocks[e["space"]][e["address"] + k] = w
        devices[int(unit)] = ModbusDeviceContext(
            hr=ModbusSparseDataBlock(blocks["holding"] or {0: 0}),
            ir=ModbusSparseDataBlock(blocks["input"] or {0: 0}),
        )
    return ModbusServerContext(devices=devices, single=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--tcp", type=int)
    ap.add_argument("--serial")
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--log", required=True, help="JSON lines: t (monotonic s), dir rx/tx, unit, hex")
    ap.add_argument("--late", default="", help="UNIT:MS:COUNT: delay the first COUNT replies to UNIT by MS")
    ap.add_argument("--ready", required=True, help="file written once serving")
    ap.add_argument("--framer", default="", help="rtu: RTU frames over TCP (a serial gateway)")
    args = ap.parse_args()
    pymodbus.pymodbus_apply_logging_config(logging.CRITICAL)
    logging.disable(logging.CRITICAL)

    late = {}
    if args.late:
        u, ms, n = (int(x) for x in args.late.split(":"))
        late[u] = [ms / 1000.0, n]
    log = open(args.log, "a", buffering=1)
    tcp = args.tcp is not None
    mbap = tcp and args.framer != "rtu"

    def unit_of(data):
        if mbap:
            return data[6] if len(data) > 6 else -1
        return data[0] if data else -1

    def trace(sending, data):
        unit = unit_of(data)
        if sending and unit in late and late[unit][1] > 0:
            late[unit][1] -= 1
            time.sleep(late[unit][0])  # blocks the loop: the answer goes out late
        log.write(json.dumps({"t": time.monotonic(), "dir": "tx" if sending else "rx", "unit": unit, "hex": data.hex()}) + "\n")
        return data

    context = build(json.load(open(args.image)))

    async def serve():
        if tcp:
            framer = FramerType.RTU if args.framer == "rtu" else FramerType.SOCKET
            server = ModbusTcpServer(context, framer=framer, address=("127.0.0.1", args.tcp), trace_packet=trace, ignore_missing_devices=True)
        else:
            server = ModbusSerialServer(context, port=args.serial, baudrate=args.baud, trace_packet=trace, ignore_missing_devices=True)
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0.3)
        with open(args.ready, "w") as f:
            f.write("ready\n")
        await task

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
