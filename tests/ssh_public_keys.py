"""OpenSSH public key lines for tests, made without ssh-keygen: an ed25519 key is its type and 32 bytes."""

from __future__ import annotations

import base64
import hashlib
import struct


def _field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def ed25519(seed: str, comment: str = "ci@bitbridge") -> str:
    """`ssh-ed25519 <base64> <comment>`, the same for the same seed."""
    blob = _field(b"ssh-ed25519") + _field(hashlib.sha256(seed.encode()).digest())
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}".strip()


def rsa(seed: str, bits: int = 2048, comment: str = "") -> str:
    modulus = b"\x00" + (hashlib.sha512(seed.encode()).digest() * (bits // 512))[: bits // 8]
    blob = _field(b"ssh-rsa") + _field(b"\x01\x00\x01") + _field(modulus)
    return f"ssh-rsa {base64.b64encode(blob).decode()} {comment}".strip()
