#!/usr/bin/env python3
"""Independent check of our SM4-CBC / SM4-CTR TS scrambling (drm::cipher, `hectl scramble`),
run by tools/tests/scramble.rs.

It decrypts a scrambled file with gmssl (PyPI, a pure-Python SM4) and compares it with the
clear file. Only gmssl's block function is used (`CryptSM4.one_round`, one 16-byte block, no
padding); the packet rules and the chaining are written out here from the specs, not taken
from our code:

- ISO/IEC 13818-1: the payload follows the 4-byte header, and the adaptation field when
  adaptation_field_control is 11; transport_scrambling_control 10/11 = scrambled.
- sm4-cbc: CBC over the payload's full 16-byte blocks, a fresh chain from the IV for every
  packet, the trailing len % 16 bytes clear (the DVB-CISSA rules of ETSI TS 103 127).
- sm4-ctr: payload XOR E(IV) | E(IV+1) | ..., restarting at the IV for every packet, the
  counter being the IV's low 64 bits (big-endian).

usage: sm4_gmssl_check.py {cbc,ctr} KEY_HEX IV_HEX CLEAR.ts SCRAMBLED.ts
"""

import sys

from gmssl.sm4 import SM4_DECRYPT, SM4_ENCRYPT, CryptSM4

PACKET = 188


def block_fn(key, mode):
    c = CryptSM4()
    c.set_key(key, mode)
    return lambda block: bytes(c.one_round(c.sk, list(block)))


def xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def fail(msg):
    print("sm4_gmssl_check: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 6 or sys.argv[1] not in ("cbc", "ctr"):
        fail(__doc__.strip().splitlines()[-1])
    mode, key, iv = sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
    if len(key) != 16 or len(iv) != 16:
        fail("the key and the IV are 32 hex digits each")
    clear = open(sys.argv[4], "rb").read()
    scrambled = open(sys.argv[5], "rb").read()

    # gmssl itself first: GB/T 32907-2016 Appendix A, example 1.
    k = bytes.fromhex("0123456789abcdeffedcba9876543210")
    if block_fn(k, SM4_ENCRYPT)(k).hex() != "681edf34d206965e86b3e94f536e4246":
        fail("gmssl fails the GB/T 32907 vector")

    if len(clear) != len(scrambled) or len(clear) % PACKET:
        fail("the files differ in length or are not whole packets")
    dec = block_fn(key, SM4_DECRYPT)
    enc = block_fn(key, SM4_ENCRYPT)
    low = int.from_bytes(iv[8:], "big")
    keystream = b"".join(
        enc(iv[:8] + ((low + j) % 2**64).to_bytes(8, "big")) for j in range(12)
    )

    checked = short = 0
    for i in range(len(clear) // PACKET):
        c = clear[i * PACKET:(i + 1) * PACKET]
        s = scrambled[i * PACKET:(i + 1) * PACKET]
        tsc = s[3] >> 6
        if tsc == 0:
            if s != c:
                fail(f"packet {i}: clear in the output but not the input's bytes")
            continue
        if tsc not in (2, 3) or c[3] >> 6 != 0:
            fail(f"packet {i}: scrambling bits {tsc:02b} (input {c[3] >> 6:02b})")
        afc = (s[3] >> 4) & 3
        if afc == 1:
            start = 4
        elif afc == 3:
            start = 5 + s[4]
        else:
            fail(f"packet {i}: scrambled without a payload")
        if start >= PACKET:
            fail(f"packet {i}: scrambled with an empty or broken payload")
        if s[:3] != c[:3] or s[3] & 0x3F != c[3] or s[4:start] != c[4:start]:
            fail(f"packet {i}: header or adaptation field changed")
        payload = s[start:]
        if mode == "cbc":
            out, prev = b"", iv
            full = len(payload) // 16 * 16
            for j in range(0, full, 16):
                block = payload[j:j + 16]
                out += xor(dec(block), prev)
                prev = block
            out += payload[full:]
            short += full == 0
        else:
            out = xor(payload, keystream)
        if out != c[start:]:
            fail(f"packet {i} (pid {((s[1] & 0x1F) << 8) | s[2]:#x}): decrypts to other bytes")
        checked += 1
    if checked == 0:
        fail("no scrambled packet")
    print(f"sm4-{mode}: {checked} scrambled packets decrypt to the clear file ({short} short)")


main()
