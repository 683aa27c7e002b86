"""What the soak reads in its captures (standard library only).

`Entries` walks a channel's capture segments in order and finds each item's entry on air:
every PMT change (a new version, as the splicer makes when the next item's streams differ)
marks an item, and the first PES on the PCR PID after it is the item's entry picture. When it
is presented on the wall clock is worked out as a receiver's clock recovery has it: when the
latest PCR before it was due on the wire (the constant-bitrate line that the datagrams' kernel
receive stamps follow, taken as their median distance from it within a second either side)
plus the picture's PTS distance from that PCR. Neither the receiver's lateness nor a datagram
sent late moves it; a daemon that presents late does (as in headend/tests/schedule.rs).

It also collects the EIT present events (table 0x4E, section 0) with their title and start
time, and when each was first seen.
"""

import bisect
import struct

PCR_WRAP = (1 << 33) * 300

# Stream types by class.
VIDEO = {0x01, 0x02, 0x10, 0x1B, 0x24}
AUDIO = {0x03, 0x04, 0x0F, 0x11, 0x81, 0x87}


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    return [struct.unpack_from("<qq", raw, o) for o in range(0, len(raw) - 15, 16)]


def payload_of(p):
    afc = (p[3] >> 4) & 3
    if afc == 1:
        return 4
    if afc == 3:
        return 5 + p[4]
    return None


def pcr_of(p):
    if (p[3] & 0x20) and p[4] > 0 and (p[5] & 0x10):
        base = (p[6] << 25) | (p[7] << 17) | (p[8] << 9) | (p[9] << 1) | (p[10] >> 7)
        ext = ((p[10] & 1) << 8) | p[11]
        return base * 300 + ext
    return None


def pts_of(pl):
    if len(pl) < 14 or pl[0:3] != b"\x00\x00\x01":
        return None
    if not (pl[7] & 0x80):
        return None
    b = pl[9:14]
    return ((b[0] >> 1) & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def dvb_text(b):
    if not b:
        return ""
    if b[0] == 0x15:
        return b[1:].decode("utf-8", "replace")
    if b[0] < 0x20:
        return b[1:].decode("latin-1", "replace")
    return b.decode("latin-1", "replace")


def mjd_utc(b):
    """EIT start_time (5 bytes: MJD, BCD hh mm ss) as UTC seconds since 1970."""
    mjd = b[0] << 8 | b[1]
    bcd = lambda x: (x >> 4) * 10 + (x & 15)
    return (mjd - 40587) * 86400 + bcd(b[2]) * 3600 + bcd(b[3]) * 60 + bcd(b[4])


class Entries:
    def __init__(self, muxrate):
        self.pkt_ns = 188 * 8 * 1e9 / muxrate
        self.next_packet = 0
        self.pmt_pid = None
        self.pmt_key = None
        self.pmt = None  # (version, pcr_pid, [(type, pid)])
        self.pending = False
        self.pcr = None  # (gidx, pcr)
        self.entries = []  # dicts: utc_ns, types, gidx
        self.eit = {}  # (event_id, start) -> dict title, first_seen_ns
        self.eit_buf = b""
        self.pid_class = {}
        self.packets = 0

    def due(self, stamps, gidxs, k):
        lo = bisect.bisect_left(gidxs, k - int(1e9 / self.pkt_ns))
        hi = bisect.bisect_right(gidxs, k + int(1e9 / self.pkt_ns))
        off = sorted(stamps[i] - gidxs[i] * self.pkt_ns for i in range(lo, hi))
        if not off:
            return None
        return off[len(off) // 2] + k * self.pkt_ns

    def stamp_of(self, stamps, gidxs, k):
        i = bisect.bisect_right(gidxs, k) - 1
        return stamps[max(i, 0)]

    def feed(self, ts_path, idx_path):
        idx = read_idx(idx_path)
        if not idx:
            return
        stamps = [s for s, _ in idx]
        gidxs = [g for _, g in idx]
        with open(ts_path, "rb") as f:
            data = f.read()
        first = gidxs[0]
        skip = max(0, self.next_packet - first)
        n = len(data) // 188
        for i in range(skip, n):
            g = first + i
            p = data[i * 188:(i + 1) * 188]
            if p[0] != 0x47:
                continue
            pid = ((p[1] & 0x1F) << 8) | p[2]
            pusi = p[1] & 0x40
            off = payload_of(p)
            if pid == 0 and pusi and off is not None:
                sec = p[off + 1 + p[off]:]
                if len(sec) > 12 and sec[0] == 0:
                    ln = ((sec[1] & 0xF) << 8) | sec[2]
                    for o in range(8, min(3 + ln - 4, len(sec) - 4), 4):
                        prog = sec[o] << 8 | sec[o + 1]
                        if prog:
                            self.pmt_pid = ((sec[o + 2] & 0x1F) << 8) | sec[o + 3]
                            break
            elif pid == self.pmt_pid and pusi and off is not None:
                sec = p[off + 1 + p[off]:]
                if len(sec) > 12 and sec[0] == 2:
                    ln = ((sec[1] & 0xF) << 8) | sec[2]
                    version = (sec[5] >> 1) & 0x1F
                    pcr_pid = ((sec[8] & 0x1F) << 8) | sec[9]
                    pil = ((sec[10] & 0xF) << 8) | sec[11]
                    o = 12 + pil
                    streams = []
                    end = min(3 + ln - 4, len(sec))
                    while o + 5 <= end:
                        st = sec[o]
                        es = ((sec[o + 1] & 0x1F) << 8) | sec[o + 2]
                        eil = ((sec[o + 3] & 0xF) << 8) | sec[o + 4]
                        streams.append((st, es))
                        o += 5 + eil
                    key = (version, pcr_pid, tuple(streams))
                    if key != self.pmt_key:
                        self.pmt_key = key
                        self.pmt = key
                        self.pending = True
                        for st, es in streams:
                            self.pid_class[es] = (
                                "video" if st in VIDEO else "audio" if st in AUDIO else "other"
                            )
            elif pid == 0x12 and off is not None:
                self.eit_packet(p, off, pusi, stamps, gidxs, g)
            pcr = pcr_of(p)
            if pcr is not None and self.pmt and pid == self.pmt[1]:
                self.pcr = (g, pcr)
            if self.pending and self.pmt and pid == self.pmt[1] and pusi and off is not None:
                pts = pts_of(p[off:])
                if pts is not None and self.pcr is not None:
                    d = (pts * 300 - self.pcr[1]) % PCR_WRAP
                    if d > PCR_WRAP // 2:
                        d -= PCR_WRAP
                    due = self.due(stamps, gidxs, self.pcr[0])
                    if due is not None:
                        self.entries.append(
                            {
                                "utc_ns": int(due + d * 1000 / 27),
                                "types": sorted({st for st, _ in self.pmt[2]}),
                                "gidx": g,
                            }
                        )
                    self.pending = False
        self.next_packet = first + n
        self.packets = self.next_packet

    def eit_packet(self, p, off, pusi, stamps, gidxs, g):
        pl = p[off:]
        if pusi:
            ptr = pl[0]
            if self.eit_buf:
                self.eit_buf += pl[1:1 + ptr]
                self.eit_section(stamps, gidxs, g)
            self.eit_buf = pl[1 + ptr:]
        elif self.eit_buf:
            self.eit_buf += pl
        self.eit_section(stamps, gidxs, g)

    def eit_section(self, stamps, gidxs, g):
        b = self.eit_buf
        while len(b) >= 3:
            if b[0] == 0xFF:
                self.eit_buf = b""
                return
            ln = ((b[1] & 0xF) << 8) | b[2]
            if len(b) < 3 + ln:
                self.eit_buf = b
                return
            sec = b[:3 + ln]
            b = b[3 + ln:]
            # EIT p/f actual, section 0: the present event.
            if sec[0] == 0x4E and sec[6] == 0 and len(sec) > 14 + 12:
                o = 14
                end = 3 + ln - 4
                if o + 12 <= end:
                    ev = sec[o] << 8 | sec[o + 1]
                    start = mjd_utc(sec[o + 2:o + 7])
                    dll = ((sec[o + 10] & 0xF) << 8) | sec[o + 11]
                    title = ""
                    d = o + 12
                    while d + 2 <= o + 12 + dll and d + 2 <= end:
                        tag, dl = sec[d], sec[d + 1]
                        if tag == 0x4D and dl >= 5:
                            nl = sec[d + 5]
                            title = dvb_text(sec[d + 6:d + 6 + nl])
                        d += 2 + dl
                    key = (ev, start, title)
                    if key not in self.eit:
                        self.eit[key] = self.stamp_of(stamps, gidxs, g)
        self.eit_buf = b


NULL = b"\x47\x1f\xff\x10" + b"\xff" * 184


def tune_in(src, dst):
    """A segment that starts mid-stream, as a receiver tuning in sees it: from its first PAT,
    with the packets of other PIDs (elementary streams, ECMs) before the first PMT after it
    replaced by null packets, so the byte clock stays as sent. Only the overlap with the
    segment before (checked there) is touched. Returns the packets dropped before the PAT."""
    with open(src, "rb") as f:
        data = f.read()
    n = len(data) // 188
    pat = None
    pmt_pid = None
    for i in range(n):
        p = data[i * 188:(i + 1) * 188]
        pid = ((p[1] & 0x1F) << 8) | p[2]
        if pid == 0 and p[1] & 0x40:
            off = payload_of(p)
            sec = p[off + 1 + p[off]:]
            ln = ((sec[1] & 0xF) << 8) | sec[2]
            for o in range(8, min(3 + ln - 4, len(sec) - 4), 4):
                if sec[o] << 8 | sec[o + 1]:
                    pmt_pid = ((sec[o + 2] & 0x1F) << 8) | sec[o + 3]
                    break
            pat = i
            break
    if pat is None:
        shutil_copy(src, dst)
        return 0
    out = bytearray()
    seen_pmt = False
    for i in range(pat, n):
        p = data[i * 188:(i + 1) * 188]
        pid = ((p[1] & 0x1F) << 8) | p[2]
        if not seen_pmt:
            if pid == pmt_pid and p[1] & 0x40:
                seen_pmt = True
            elif pid >= 0x20 and pid != 0x1FFF:
                out += NULL
                continue
        out += p
    with open(dst, "wb") as f:
        f.write(out)
    return pat


def shutil_copy(src, dst):
    import shutil
    shutil.copyfile(src, dst)
