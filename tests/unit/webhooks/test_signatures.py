"""X-Hub-Signature verification and per-subscription secret derivation."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import textwrap

import pytest

from bitbridge.webhooks.signatures import derive_hook_secret, sign, verify_signature
from tests.shared_data import manifest_entries, needs_shared, params
from tests.unit.webhooks.support import REPO_ROOT, payload_bytes

VECTORS = [entry for entry in manifest_entries() if "x_hub_signature" in entry]


@needs_shared
def test_the_shared_set_has_signature_vectors() -> None:
    assert len(VECTORS) >= 10


@pytest.mark.parametrize("entry", params(VECTORS))
def test_data_center_vectors_verify(entry: dict[str, str]) -> None:
    body = payload_bytes(entry["file"])
    assert verify_signature(entry["hmac_key"], body, entry["x_hub_signature"]) is True
    assert verify_signature(entry["hmac_key"].encode(), body, entry["x_hub_signature"]) is True
    assert sign(entry["hmac_key"], body) == entry["x_hub_signature"]


@pytest.mark.parametrize("entry", params(VECTORS))
def test_a_flipped_byte_fails(entry: dict[str, str]) -> None:
    body = bytearray(payload_bytes(entry["file"]))
    for position in (0, len(body) // 2, len(body) - 1):
        tampered = bytearray(body)
        tampered[position] ^= 0x01
        assert verify_signature("secret", bytes(tampered), entry["x_hub_signature"]) is False


@pytest.mark.parametrize("entry", params(VECTORS[:3]))
def test_a_wrong_secret_fails(entry: dict[str, str]) -> None:
    body = payload_bytes(entry["file"])
    for wrong in ("Secret", "secret ", "secre", "", b"", "x" * 64):
        assert verify_signature(wrong, body, entry["x_hub_signature"]) is False


@needs_shared
def test_appended_or_truncated_body_fails() -> None:
    entry = VECTORS[0]
    body = payload_bytes(entry["file"])
    assert verify_signature("secret", body + b"\n", entry["x_hub_signature"]) is False
    assert verify_signature("secret", body[:-1], entry["x_hub_signature"]) is False


@needs_shared
def test_uppercase_hex_is_accepted() -> None:
    entry = VECTORS[0]
    upper = "sha256=" + entry["x_hub_signature"].removeprefix("sha256=").upper()
    assert verify_signature("secret", payload_bytes(entry["file"]), upper) is True


# A real signed body when the shared data is there; the header-parsing cases below need only some body.
_BODY = payload_bytes(VECTORS[0]["file"]) if VECTORS else b'{"eventKey": "repo:refs_changed"}\n'
_DIGEST = hmac.new(b"secret", _BODY, hashlib.sha256).hexdigest()
_SHA1 = hmac.new(b"secret", _BODY, hashlib.sha1).hexdigest()


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        " ",
        "sha256=",
        "sha256",
        "=",
        _DIGEST,  # no prefix
        "sha1=" + _SHA1,  # GitHub's legacy form
        "sha1=" + _DIGEST,
        "sha512=" + _DIGEST,
        "SHA256=" + _DIGEST,
        "sha256:" + _DIGEST,
        "sha256=" + _DIGEST + "0",
        "sha256=" + _DIGEST[:-1],
        "sha256=" + _DIGEST[:32],
        "sha256=" + "g" * 64,
        "sha256=" + _DIGEST[:-1] + "x",
        "sha256=" + "0" * 64,
        "sha256=" + _DIGEST + ",sha256=" + _DIGEST,
        "sha256=" + "\u0661" * 64,  # Arabic-Indic digits are not hex
        "sha256=" + "é" * 64,
    ],
    ids=lambda header: repr(header)[:40],
)
def test_malformed_headers_return_false(header: str | None) -> None:
    assert verify_signature("secret", _BODY, header) is False


@pytest.mark.parametrize(
    ("secret", "body", "header"),
    [
        (None, b"{}", "sha256=" + "a" * 64),
        ("secret", None, "sha256=" + "a" * 64),
        ("secret", "not bytes", "sha256=" + "a" * 64),
        ("secret", b"{}", 12345),
        ("secret", b"{}", b"sha256=" + b"a" * 64),
        (12345, b"{}", "sha256=" + "a" * 64),
    ],
)
def test_bad_arguments_never_raise(secret: object, body: object, header: object) -> None:
    assert verify_signature(secret, body, header) is False  # type: ignore[arg-type]


def test_sign_matches_bitbucket_format() -> None:
    signature = sign("s3cr3t", b'{"a":1}')
    assert signature == "sha256=" + hmac.new(b"s3cr3t", b'{"a":1}', hashlib.sha256).hexdigest()
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify_signature("s3cr3t", b'{"a":1}', signature)


def test_empty_body_signs_and_verifies() -> None:
    assert verify_signature("secret", b"", sign("secret", b""))


# ---------------------------------------------------------------------------------------------------------
# derive_hook_secret

MASTER = bytes(range(32))


def test_derived_secret_is_deterministic_lowercase_hex() -> None:
    secret = derive_hook_secret(MASTER, "sub-1")
    assert secret == derive_hook_secret(MASTER, "sub-1")
    assert len(secret) == 64 and secret == secret.lower()
    assert all(c in "0123456789abcdef" for c in secret)
    assert len(secret) <= 128  # Bitbucket Cloud's limit on hook secrets


def test_derived_secret_matches_the_documented_construction() -> None:
    expected = hmac.new(MASTER, b"bitbridge-webhook-v1:sub-1", hashlib.sha256).hexdigest()
    assert derive_hook_secret(MASTER, "sub-1") == expected


def test_derived_secret_differs_per_subscription_and_per_master_key() -> None:
    secrets = {derive_hook_secret(MASTER, f"sub-{i}") for i in range(200)}
    assert len(secrets) == 200
    assert derive_hook_secret(MASTER, "sub-1") != derive_hook_secret(MASTER[::-1], "sub-1")
    assert derive_hook_secret(MASTER, "sub-1") != derive_hook_secret(MASTER[:-1] + b"\xff", "sub-1")
    # (HMAC zero-pads short keys, so MASTER and MASTER + b"\0" are the same key: a property of HMAC,
    # harmless for one random master key that nobody else chooses.)
    # no ambiguity between the label and the id
    assert derive_hook_secret(MASTER, "sub-1") != derive_hook_secret(MASTER, "sub-10")


def test_derived_secret_signs_and_verifies_deliveries() -> None:
    secret = derive_hook_secret(MASTER, "01J0SUBSCRIPTION")
    body = _BODY
    header = sign(secret, body)
    assert verify_signature(secret, body, header)
    assert not verify_signature(derive_hook_secret(MASTER, "01J0OTHER"), body, header)


@pytest.mark.parametrize(("master", "subscription"), [(b"", "sub"), (MASTER, ""), ("text", "sub")])
def test_derive_rejects_bad_input_without_echoing_it(master: object, subscription: object) -> None:
    with pytest.raises(ValueError) as caught:
        derive_hook_secret(master, subscription)  # type: ignore[arg-type]
    assert "text" not in str(caught.value)


# ---------------------------------------------------------------------------------------------------------
# Cold path: the receiver imports this module; it must pull in nothing but the standard library.

HEAVY = (
    "boto",
    "botocore",
    "requests",
    "pynamodb",
    "aws_lambda_powertools",
    "jsonschema",
    "authlib",
    "urllib3",
)


def _import_in_fresh_interpreter(module: str) -> list[str]:
    code = textwrap.dedent(
        f"""
        import sys
        before = set(sys.modules)
        import {module}
        print("\\n".join(sorted(set(sys.modules) - before)))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "layers" / "bitbridge" / "python")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, timeout=60
    )
    return result.stdout.split()


def test_signatures_import_only_the_standard_library() -> None:
    code = (
        "import bitbridge.webhooks.signatures, sys; "
        "assert not any(m.startswith(('boto','botocore','requests','pynamodb','aws_lambda_powertools')) "
        "for m in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "layers" / "bitbridge" / "python")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


@pytest.mark.parametrize("module", ["bitbridge.webhooks.signatures", "bitbridge.webhooks.normalise"])
def test_webhook_modules_stay_light(module: str) -> None:
    loaded = _import_in_fresh_interpreter(module)
    assert not [m for m in loaded if m.split(".")[0].lower().startswith(HEAVY)]
    # typing and dataclasses cost milliseconds at cold start; neither module needs them at run time
    assert "typing" not in loaded and "dataclasses" not in loaded
