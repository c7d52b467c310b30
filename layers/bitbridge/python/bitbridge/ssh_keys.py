"""SSH public keys, as an admin registers one per provider (`bitbridge providers set-deploy-key`) and as Bitbucket
lists them back: one OpenSSH line `algorithm base64 [comment]`, checked the way Bitbucket checks it (a known
algorithm, a base64 key whose first field names the same algorithm), so a key bitbridge accepts is one Bitbucket
accepts. A private key is refused with a message saying which file to give instead. Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

#: What Bitbucket Cloud and Data Center accept as deploy / access keys (DSA is refused by both).
ALGORITHMS = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
MAX_LENGTH = 16_384  # a 16,384-bit RSA key is under 3 KB: anything longer is not one key line


class InvalidPublicKey(ValueError):
    """Not an SSH public key Bitbucket accepts; the message says what to give instead."""


@dataclass(frozen=True)
class PublicKey:
    algorithm: str
    blob: bytes
    comment: str

    @property
    def text(self) -> str:
        """`algorithm base64`: the key itself, as Bitbucket lists it (the comment is not part of the key)."""
        return f"{self.algorithm} {base64.b64encode(self.blob).decode()}"

    @property
    def fingerprint(self) -> str:
        """`SHA256:...`, as `ssh-keygen -l` prints it."""
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")

    def line(self, label: str | None = None) -> str:
        """The key with a comment (the label when given), as pasted into Bitbucket."""
        comment = (label or self.comment).strip()
        return f"{self.text} {comment}" if comment else self.text


def _fields(blob: bytes) -> list[bytes]:
    out, at = [], 0
    while at < len(blob):
        if at + 4 > len(blob):
            raise InvalidPublicKey("the key is truncated")
        (size,) = struct.unpack(">I", blob[at : at + 4])
        if at + 4 + size > len(blob):
            raise InvalidPublicKey("the key is truncated")
        out.append(blob[at + 4 : at + 4 + size])
        at += 4 + size
    return out


def parse(text: str) -> PublicKey:
    """The one public key in `text` (an `id_*.pub` file's content), or InvalidPublicKey."""
    if "PRIVATE KEY" in text:
        raise InvalidPublicKey("that is a private key: give the public key (the .pub file), never the private one")
    lines = [line for line in text.strip().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) != 1 or len(lines[0]) > MAX_LENGTH:
        raise InvalidPublicKey("give exactly one public key line (the content of an id_*.pub file)")
    parts = lines[0].strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in ALGORITHMS:
        raise InvalidPublicKey(f"not an SSH public key of a type Bitbucket accepts ({', '.join(ALGORITHMS)})")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise InvalidPublicKey("the key's base64 part is damaged") from None
    fields = _fields(blob)
    if not fields or fields[0] != parts[0].encode() or len(fields) < 2:
        raise InvalidPublicKey(f"the key's content is not a {parts[0]} key")
    comment = parts[2].strip() if len(parts) > 2 else ""
    if any(ord(ch) < 32 for ch in comment):
        raise InvalidPublicKey("the key's comment has control characters")
    return PublicKey(parts[0], blob, comment)


def same_key(a: str, b: str) -> bool:
    """Whether two key lines hold the same key (comments and labels aside)."""
    try:
        return parse(a).blob == parse(b).blob
    except InvalidPublicKey:
        return False
