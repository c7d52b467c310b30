"""Deploy keys (Cloud) and repository access keys (Data Center) as the emulator serves them: Atlassian's OpenAPI
shapes, the permissions Bitbucket requires, and Bitbucket's refusals of what is no SSH public key."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.emulator import persist
from infra.emulator.models import Backend
from tests import ssh_public_keys

from .conftest import bearer, cloud_login, dc_login, validate
from .test_openapi_contract import _cloud_validate

CLOUD_KEYS = "/2.0/repositories/acme/web-app/deploy-keys"
DC_KEYS = "/rest/keys/latest/projects/PLAT/repos/core/ssh"


@pytest.fixture(scope="module")
def public_key() -> str:
    return ssh_public_keys.ed25519("emulator")


def _blob(*fields: bytes) -> str:
    return base64.b64encode(b"".join(struct.pack(">I", len(f)) + f for f in fields)).decode()


def test_cloud_deploy_key_crud_matches_spec(emu, cloud_spec, public_key):
    token = cloud_login(emu, scopes=["repository", "repository:admin"])
    base = emu.cloud_url + CLOUD_KEYS
    added = requests.post(base, headers=bearer(token), json={"key": public_key, "label": "bitbridge"}, timeout=10)
    assert added.status_code == 200, added.text
    _cloud_validate(cloud_spec, added)
    body = added.json()
    assert body["key"] == public_key.rsplit(" ", 1)[0] and body["comment"] == "ci@bitbridge"
    assert body["label"] == "bitbridge" and body["repository"]["full_name"] == "acme/web-app"
    listed = requests.get(base, headers=bearer(token), timeout=10)
    _cloud_validate(cloud_spec, listed)
    assert [k["id"] for k in listed.json()["values"]] == [body["id"]]
    item = f"{base}/{body['id']}"
    _cloud_validate(cloud_spec, requests.get(item, headers=bearer(token), timeout=10))
    relabelled = requests.put(item, headers=bearer(token), json={"key": public_key, "label": "renamed"}, timeout=10)
    _cloud_validate(cloud_spec, relabelled)
    assert relabelled.json()["label"] == "renamed"
    again = requests.post(base, headers=bearer(token), json={"key": public_key}, timeout=10)
    assert again.status_code == 400 and "already added" in again.json()["error"]["message"]
    _cloud_validate(cloud_spec, again)
    assert requests.delete(item, headers=bearer(token), timeout=10).status_code == 204
    gone = requests.get(item, headers=bearer(token), timeout=10)
    assert gone.status_code == 404
    _cloud_validate(cloud_spec, gone)


def test_cloud_deploy_keys_need_the_admin_scope_and_an_admin(emu, public_key):
    without_scope = cloud_login(emu, scopes=["repository", "webhook"])  # alice owns acme
    refused = requests.get(emu.cloud_url + CLOUD_KEYS, headers=bearer(without_scope), timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["detail"]["required"] == ["repository:admin"]
    member = cloud_login(emu, user="carol", scopes=["repository", "repository:admin"])  # carol: a member only
    add = requests.post(emu.cloud_url + CLOUD_KEYS, headers=bearer(member), json={"key": public_key}, timeout=10)
    assert add.status_code == 403
    assert emu.backend.get_repo("cloud", "acme", "web-app").deploy_keys == {}


def test_dc_access_key_crud_matches_spec(emu, dc_spec, public_key):
    from openapi_schema_validator import OAS30Validator

    token = dc_login(emu)
    base = emu.dc_url + DC_KEYS
    added = requests.post(
        base,
        headers=bearer(token),
        json={"key": {"text": public_key, "label": "bitbridge"}, "permission": "REPO_READ"},
        timeout=10,
    )
    assert added.status_code == 201, added.text
    validate(dc_spec, added, flavor="datacenter")
    body = added.json()
    assert body["permission"] == "REPO_READ" and body["key"]["label"] == "bitbridge"
    assert body["key"]["text"] == public_key and body["repository"]["slug"] == "core"
    listed = requests.get(base, headers=bearer(token), timeout=10)
    validate(dc_spec, listed, flavor="datacenter")
    schema = dc_spec.spec.read_value()["components"]["schemas"]["RestSshAccessKey"]
    for value in listed.json()["values"]:
        OAS30Validator(schema).validate(value)
    item = f"{base}/{body['key']['id']}"
    validate(dc_spec, requests.get(item, headers=bearer(token), timeout=10), flavor="datacenter")
    # One SSH key object per key text: granted to a second repository it keeps its id.
    tools = requests.post(
        emu.dc_url + "/rest/keys/latest/projects/PLAT/repos/tools/ssh",
        headers=bearer(token),
        json={"key": {"text": public_key}, "permission": "REPO_READ"},
        timeout=10,
    )
    assert tools.status_code == 201 and tools.json()["key"]["id"] == body["key"]["id"]
    # Granted again to the same repository: the permission changes, nothing is added.
    write = requests.post(
        base, headers=bearer(token), json={"key": {"text": public_key}, "permission": "REPO_WRITE"}, timeout=10
    )
    assert write.status_code == 201 and write.json()["permission"] == "REPO_WRITE"
    assert len(requests.get(base, headers=bearer(token), timeout=10).json()["values"]) == 1
    deleted = requests.delete(item, headers=bearer(token), timeout=10)
    assert deleted.status_code == 204
    assert requests.delete(item, headers=bearer(token), timeout=10).status_code == 204  # none left: still 204
    missing = requests.get(item, headers=bearer(token), timeout=10)
    assert missing.status_code == 404
    validate(dc_spec, missing, flavor="datacenter")


def test_dc_access_keys_need_repo_admin(emu, dc_spec, public_key):
    reader = dc_login(emu, user="carol", scope="REPO_ADMIN")  # carol only reads PLAT
    refused = requests.post(
        emu.dc_url + DC_KEYS, headers=bearer(reader), json={"key": {"text": public_key}}, timeout=10
    )
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["exceptionName"] == "com.atlassian.bitbucket.AuthorisationException"
    validate(dc_spec, refused, flavor="datacenter")
    narrow = dc_login(emu, scope="REPO_READ")  # alice, but a token that may only read
    assert requests.get(emu.dc_url + DC_KEYS, headers=bearer(narrow), timeout=10).status_code == 401
    personal = dc_login(emu)
    mine = requests.post(
        emu.dc_url + "/rest/keys/latest/users/alice/repos/dotfiles/ssh",
        headers=bearer(personal),
        json={"key": {"text": public_key}},
        timeout=10,
    )
    assert mine.status_code == 201 and mine.json()["permission"] == "REPO_READ"


@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
        "ssh-ed25519",
        "ssh-ed25519 not-base64!",
        "ssh-dss " + _blob(b"ssh-dss", b"p"),
        "ssh-rsa " + _blob(b"ssh-ed25519", b"k" * 32),  # the blob names another algorithm
        "ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed2551").decode(),  # truncated
    ],
)
def test_what_is_no_public_key_is_refused_on_both_flavors(emu, text):
    cloud = requests.post(
        emu.cloud_url + CLOUD_KEYS,
        headers=bearer(cloud_login(emu, scopes=["repository", "repository:admin"])),
        json={"key": text},
        timeout=10,
    )
    dc = requests.post(emu.dc_url + DC_KEYS, headers=bearer(dc_login(emu)), json={"key": {"text": text}}, timeout=10)
    assert cloud.status_code == 400 and dc.status_code == 400
    assert emu.backend.get_repo("cloud", "acme", "web-app").deploy_keys == {}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.one_of(
        st.text(max_size=200), st.binary(max_size=80).map(lambda b: "ssh-ed25519 " + base64.b64encode(b).decode())
    )
)
def test_any_key_text_is_answered_without_a_server_error(emu, text):
    token = cloud_login(emu, scopes=["repository", "repository:admin"])
    answer = requests.post(emu.cloud_url + CLOUD_KEYS, headers=bearer(token), json={"key": text}, timeout=10)
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 200:  # only a key whose blob really is an ed25519 key got in
        requests.delete(f"{emu.cloud_url}{CLOUD_KEYS}/{answer.json()['id']}", headers=bearer(token), timeout=10)


def test_keys_survive_a_snapshot_of_the_emulator(emu, tmp_path: Path, public_key):
    token = dc_login(emu)
    requests.post(emu.dc_url + DC_KEYS, headers=bearer(token), json={"key": {"text": public_key}}, timeout=10)
    persist.snapshot(emu.backend, tmp_path / "snap")
    restored = Backend()
    persist.restore(restored, tmp_path / "snap")
    keys = restored.get_repo("datacenter", "PLAT", "core").deploy_keys
    assert [k.text for k in keys.values()] == [public_key.rsplit(" ", 1)[0]]
