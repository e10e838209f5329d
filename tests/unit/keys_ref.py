#!/usr/bin/python3
"""Known answers for tests/unit/test_keys.c, computed independently with PyNaCl.

Usage: keys_ref.py NONCE_HEX PORT NAME_HEX...
Prints one line per name: K K_disc K_link (hex) and the tag text t for the given nonce
and port (nws(7) DISCOVERY)."""
import base64
import sys

import nacl.hash
import nacl.pwhash
from nacl.encoding import RawEncoder

SALT = nacl.hash.blake2b(b"nws/1 channel", digest_size=32, encoder=RawEncoder)[:16]


def blake2b(data, size, key):
    return nacl.hash.blake2b(data, digest_size=size, key=key, encoder=RawEncoder)


def main():
    nonce = bytes.fromhex(sys.argv[1])
    port = int(sys.argv[2])
    for name_hex in sys.argv[3:]:
        name = bytes.fromhex(name_hex)
        k = nacl.pwhash.argon2id.kdf(32, name, SALT,
                                     opslimit=nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
                                     memlimit=nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE)
        disc = blake2b(b"nws/1 discovery", 32, k)
        link = blake2b(b"nws/1 link", 32, k)
        tag = blake2b(nonce + port.to_bytes(2, "big"), 16, disc)
        t = base64.urlsafe_b64encode(nonce + tag).rstrip(b"=").decode()
        print(k.hex(), disc.hex(), link.hex(), t)


if __name__ == "__main__":
    main()
