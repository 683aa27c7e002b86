#!/usr/bin/env python3
"""Cuts the fuzz targets' seeds out of the repository's fixtures (docs/fuzzing.md).

Run from anywhere: writes fuzz/corpus/{ts_demux,pes_header,psi_sections}/fx-* (a few KB of
each fixture's head, the first PES start of each elementary stream, the PAT/PMT/SDT
sections). The hand-written seeds of the other targets are kept as they are, and the SI
sections and SimulCrypt messages made with the project's own encoders come from
`cargo test -p headend --test fuzz_corpus -- --ignored make_seeds` (gen-*).
"""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
MEDIA = ROOT / "fixtures" / "media"
CORPUS = ROOT / "fuzz" / "corpus"


def packets(data):
    for i in range(0, len(data) - 187, 188):
        if data[i] == 0x47:
            yield data[i:i + 188]


def payload(p):
    afc = (p[3] >> 4) & 3
    if afc in (0, 2):
        return b""
    start = 4 + (1 + p[4] if afc == 3 else 0)
    return p[start:]


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"fx-{name}").write_bytes(data)


def main():
    for name in ["a", "b", "c", "d", "e", "g"]:
        data = (MEDIA / f"{name}.ts").read_bytes()
        # The first byte picks the demuxer's read size (see headend::fuzzing::ts_demux).
        write("ts_demux", f"{name}-head", bytes([26]) + data[:188 * 20])
        seen_pes = set()
        seen_psi = set()
        for p in packets(data[:188 * 4000]):
            pid = ((p[1] & 0x1F) << 8) | p[2]
            pusi = p[1] & 0x40
            body = payload(p)
            if not pusi or not body:
                continue
            if body[:3] == b"\x00\x00\x01":
                if pid not in seen_pes:
                    seen_pes.add(pid)
                    write("pes_header", f"{name}-{pid:04x}", body)
                continue
            pointer = body[0]
            section = body[1 + pointer:]
            if len(section) < 3:
                continue
            length = ((section[1] & 0x0F) << 8) | section[2]
            table = section[0]
            if (pid, table) not in seen_psi and 3 + length <= len(section):
                seen_psi.add((pid, table))
                write("psi_sections", f"{name}-{pid:04x}-{table:02x}", section[:3 + length])
    bad = MEDIA / "bad"
    write("ts_demux", "garbage-mid", bytes([3]) + (bad / "garbage-mid.ts").read_bytes()[399500:403500])
    write("ts_demux", "truncated-tail", bytes([100]) + (bad / "truncated.ts").read_bytes()[-2000:])
    write("ts_demux", "not-ts", bytes([0]) + (bad / "not-ts.ts").read_bytes()[:600])


main()
