"""Token encryption with the stack's KMS key, bound to the connection it belongs to."""

from __future__ import annotations

import json
from typing import Any

from bitbridge.aws import client
from bitbridge.config import settings


def _context(connection_key: str) -> dict[str, str]:
    # The encryption context ties a ciphertext to its connection: a blob copied onto another
    # connection fails to decrypt.
    return {"bitbridge:connection": connection_key}


def encrypt_tokens(connection_key: str, tokens: dict[str, Any]) -> bytes:
    response = client("kms").encrypt(
        KeyId=settings().token_key_id,
        Plaintext=json.dumps(tokens).encode(),
        EncryptionContext=_context(connection_key),
    )
    return bytes(response["CiphertextBlob"])


def decrypt_tokens(connection_key: str, blob: bytes) -> dict[str, Any]:
    response = client("kms").decrypt(
        CiphertextBlob=blob, KeyId=settings().token_key_id, EncryptionContext=_context(connection_key)
    )
    result: dict[str, Any] = json.loads(response["Plaintext"])
    return result
