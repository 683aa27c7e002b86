"""Parses SimulCrypt (ETSI TS 103 197) byte streams with a third-party implementation, PyPI's
`simulcrypt` package (pinned by scripts/test), to check what the head-end sends and takes.

Usage: simulcrypt_parse.py FILE...  Each FILE holds the bytes of one direction of one TCP
connection, in order. Prints one line per message: `FILE VERSION TYPE VALID ERROR`, where TYPE
is the message_type in hex and VALID is 1 when the package found every parameter the
message's protocol version requires, with the right lengths. Exits 1 if any message is not
SimulCrypt or not valid; a message cut by the end of the recording is reported as `partial`.
"""

import sys

from simulcrypt.message import SimulcryptMessage


def main(paths):
    bad = 0
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        while data:
            if len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
                # A message the connection's end cut: not the sender's doing.
                print(f"{path} - partial 1 -")
                break
            message = SimulcryptMessage(data)
            valid = message.is_simulcrypt and message.is_valid
            kind = getattr(message, "type", -1)
            version = getattr(message, "version", -1)
            print(f"{path} {version} {kind:04x} {int(valid)} {message.error_message or '-'}")
            if not valid:
                bad += 1
                break
            data = message.leftover
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
