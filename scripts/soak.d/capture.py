#!/usr/bin/env python3
"""The soak's receivers: one UDP socket per channel output on 127.0.0.1, each datagram kept
with its kernel receive stamp (SO_TIMESTAMPNS, realtime ns: on loopback the kernel stamps a
datagram as it is sent, so a late receiver does not move the stamps).

Usage: capture.py DIR CHANNEL...   (prints one JSON line {channel: port}, then receives until
SIGTERM/SIGINT)

Output, per channel, in segments of SEGMENT_S seconds (so a long run can be checked and
deleted piece by piece):
  DIR/{channel}.{n:05d}.ts   the datagrams' bytes; each segment also starts with the last
                             OVERLAP_S seconds of the one before (so nothing at a boundary
                             goes unchecked)
  DIR/{channel}.{n:05d}.idx  per datagram: <q stamp_ns><q global index of its first packet>
  DIR/{channel}.{n:05d}.done written when the segment is closed
"""

import json
import os
import selectors
import signal
import socket
import struct
import sys
import time

SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SEGMENT_S = float(os.environ.get("SOAK_SEGMENT_S", "60"))
OVERLAP_S = 3.0

stop = False


def on_signal(_sig, _frame):
    global stop
    stop = True


class Channel:
    def __init__(self, directory, name):
        self.dir = directory
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.packets = 0  # global index of the next packet
        self.seg = -1
        self.seg_started = 0.0
        self.recent = []  # (stamp, gidx, bytes) of the last OVERLAP_S seconds
        self.ts = None
        self.idx = None
        self.open_segment(time.time())

    def open_segment(self, now):
        self.close_segment()
        self.seg += 1
        self.seg_started = now
        base = os.path.join(self.dir, f"{self.name}.{self.seg:05d}")
        self.ts = open(base + ".ts", "wb", buffering=1 << 20)
        self.idx = open(base + ".idx", "wb", buffering=1 << 16)
        for stamp, gidx, data in self.recent:
            self.ts.write(data)
            self.idx.write(struct.pack("<qq", stamp, gidx))

    def close_segment(self):
        if self.ts is None:
            return
        self.ts.close()
        self.idx.close()
        base = os.path.join(self.dir, f"{self.name}.{self.seg:05d}")
        with open(base + ".done", "w") as f:
            f.write(str(self.packets))
        self.ts = self.idx = None

    def drain(self):
        while True:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(65536, 64)
            except (BlockingIOError, InterruptedError):
                return
            stamp = None
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", cdata[:16])
                    stamp = sec * 1_000_000_000 + nsec
            if stamp is None:
                stamp = time.time_ns()
            data = data[: len(data) // 188 * 188]
            if not data:
                continue
            self.ts.write(data)
            self.idx.write(struct.pack("<qq", stamp, self.packets))
            self.recent.append((stamp, self.packets, data))
            self.packets += len(data) // 188
            horizon = stamp - int(OVERLAP_S * 1e9)
            if self.recent[0][0] < horizon:
                k = 0
                while k < len(self.recent) and self.recent[k][0] < horizon:
                    k += 1
                del self.recent[:k]


def main():
    directory = sys.argv[1]
    names = sys.argv[2:]
    os.makedirs(directory, exist_ok=True)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    chans = [Channel(directory, n) for n in names]
    print(json.dumps({c.name: c.port for c in chans}), flush=True)
    sel = selectors.DefaultSelector()
    for c in chans:
        sel.register(c.sock, selectors.EVENT_READ, c)
    while not stop:
        for key, _ in sel.select(timeout=0.2):
            key.data.drain()
        now = time.time()
        for c in chans:
            if now - c.seg_started >= SEGMENT_S:
                c.open_segment(now)
    for c in chans:
        c.drain()
        c.close_segment()


if __name__ == "__main__":
    main()
