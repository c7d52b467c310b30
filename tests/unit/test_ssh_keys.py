"""The deploy key an admin registers is checked as Bitbucket checks it: one public key line, of a type Bitbucket
accepts, whose content names the same type. Whatever else is given is refused with a message, never an error."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitbridge import ssh_keys
from tests import ssh_public_keys


def test_a_public_key_parses_to_its_key_comment_and_fingerprint():
    line = ssh_public_keys.ed25519("one", "deploy@ci")
    key = ssh_keys.parse(line + "\n")
    assert key.algorithm == "ssh-ed25519" and key.comment == "deploy@ci"
    assert key.text == line.rsplit(" ", 1)[0] and key.line() == line and key.line("bitbridge").endswith(" bitbridge")
    blob = base64.b64decode(line.split()[1])
    assert key.fingerprint == "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert ssh_keys.parse(ssh_public_keys.rsa("two")).algorithm == "ssh-rsa"
    # The same key with another comment is the same key; another key is not.
    assert ssh_keys.same_key(line, ssh_public_keys.ed25519("one", "other"))
    assert not ssh_keys.same_key(line, ssh_public_keys.ed25519("three"))
    assert not ssh_keys.same_key(line, "garbage")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n", "private key"),
        ("", "exactly one"),
        (ssh_public_keys.ed25519("a") + "\n" + ssh_public_keys.ed25519("b"), "exactly one"),
        ("ssh-dss AAAAB3NzaC1kc3M=", "type Bitbucket accepts"),
        ("ssh-ed25519 !!!notbase64", "damaged"),
        ("ssh-rsa " + ssh_public_keys.ed25519("c").split()[1], "not a ssh-rsa key"),
        ("ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20abc").decode(), "truncated"),
        (ssh_public_keys.ed25519("d", "bad\x1bcomment"), "control characters"),
    ],
)
def test_what_is_no_public_key_bitbucket_takes_is_refused_saying_why(text, says):
    with pytest.raises(ssh_keys.InvalidPublicKey, match=says):
        ssh_keys.parse(text)


@given(st.text(max_size=400) | st.binary(max_size=200).map(lambda b: "ssh-ed25519 " + base64.b64encode(b).decode()))
def test_any_text_is_a_key_or_a_refusal(text):
    try:
        key = ssh_keys.parse(text)
    except ssh_keys.InvalidPublicKey as exc:
        assert str(exc)
    else:
        assert ssh_keys.parse(key.line()) == key  # what is stored parses back the same
