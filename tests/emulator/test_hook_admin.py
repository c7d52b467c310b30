"""Another repository admin edits or deletes the hook bitbridge installed, through the REST API with their own
token; deliveries follow the edited hook at once (url, events, secret, active)."""

from __future__ import annotations

import json

import requests

from .conftest import Receiver, bearer, cloud_login, control, dc_login, register_cloud_client, verify_signature

OURS, THEIRS = "bitbridge-secret", "admin-secret"


def _token_for(emu, flavor: str, user: str) -> str:
    """A second user's token (the OAuth client is registered once per test by the first login)."""
    from .conftest import cloud_code, cloud_token, dc_code, dc_token

    if flavor == "cloud":
        return cloud_token(emu, cloud_code(emu, user)).json()["access_token"]
    return dc_token(emu, dc_code(emu, user)).json()["access_token"]


def _deliveries(emu) -> list[dict]:
    return control(emu, "GET", "deliveries", params={"wait": "1"}).json()["deliveries"]


def test_cloud_admin_edits_and_deletes_our_hook(emu, receiver):
    alice = cloud_login(emu)  # installs the hook
    register_cloud_client(emu)
    assert control(emu, "PUT", "cloud/repos/acme/api-service/permissions", json={"bob": "admin"}).ok
    bob = _token_for(emu, "cloud", "bob")
    base = f"{emu.cloud_url}/2.0/repositories/acme/api-service/hooks"
    created = requests.post(
        base,
        headers=bearer(alice),
        json={"url": receiver.url, "events": ["repo:push"], "secret": OURS, "description": "bitbridge"},
        timeout=10,
    ).json()
    item = f"{base}/{created['uuid']}"
    other = Receiver()
    try:
        edit = {"url": other.url, "events": ["pullrequest:created"], "secret": THEIRS}
        edited = requests.put(item, headers=bearer(bob), json=edit, timeout=10)
        assert edited.status_code == 200, edited.text
        assert edited.json()["url"] == other.url and edited.json()["events"] == ["pullrequest:created"]
        # What alice (bitbridge's connection) reads back is the admin's edit.
        seen = requests.get(item, headers=bearer(alice), timeout=10).json()
        assert (seen["url"], seen["events"], seen["secret_set"]) == (other.url, ["pullrequest:created"], True)

        repo = "cloud/repos/acme/api-service"
        assert control(emu, "POST", f"{repo}/push", json={"branch": "main"}).ok  # no longer subscribed
        assert control(emu, "POST", f"{repo}/pullrequests", json={"source": "feature/0001"}).ok
        (delivery,) = _deliveries(emu)
        assert delivery["event_key"] == "pullrequest:created" and delivery["url"] == other.url
        (got,) = other.wait_for(1)
        assert verify_signature(THEIRS, got["body"], got["headers"]["X-Hub-Signature"])
        assert not verify_signature(OURS, got["body"], got["headers"]["X-Hub-Signature"])
        assert receiver.requests == []

        assert requests.put(item, headers=bearer(bob), json={"active": False}, timeout=10).json()["active"] is False
        assert control(emu, "POST", f"{repo}/pullrequests", json={"source": "feature/0002"}).ok
        assert len(_deliveries(emu)) == 1  # an inactive hook gets nothing

        assert requests.delete(item, headers=bearer(bob), timeout=10).status_code == 204
        assert requests.get(item, headers=bearer(alice), timeout=10).status_code == 404
        assert requests.get(base, headers=bearer(alice), timeout=10).json()["values"] == []
    finally:
        other.close()


def test_cloud_non_admin_cannot_edit_the_hook(emu, receiver):
    alice = cloud_login(emu)
    register_cloud_client(emu)
    carol = _token_for(emu, "cloud", "carol")  # read access only
    hook = requests.post(
        f"{emu.cloud_url}/2.0/repositories/acme/api-service/hooks",
        headers=bearer(alice),
        json={"url": receiver.url, "events": ["repo:push"]},
        timeout=10,
    ).json()
    item = f"{emu.cloud_url}/2.0/repositories/acme/api-service/hooks/{hook['uuid']}"
    assert requests.put(item, headers=bearer(carol), json={"active": False}, timeout=10).status_code == 403
    assert requests.delete(item, headers=bearer(carol), timeout=10).status_code == 403
    assert requests.get(item, headers=bearer(alice), timeout=10).json()["active"] is True


def test_dc_admin_edits_and_deletes_our_hook(emu, receiver):
    alice = dc_login(emu)
    assert control(emu, "PUT", "datacenter/repos/PLAT/tools/permissions", json={"carol": "admin"}).ok
    carol = _token_for(emu, "datacenter", "carol")
    base = f"{emu.dc_url}/rest/api/1.0/projects/PLAT/repos/tools/webhooks"
    created = requests.post(
        base,
        headers=bearer(alice),
        json={
            "name": "bitbridge",
            "url": receiver.url,
            "events": ["repo:refs_changed"],
            "configuration": {"secret": OURS},
        },
        timeout=10,
    ).json()
    item = f"{base}/{created['id']}"
    other = Receiver()
    try:
        edit = {"url": other.url, "events": ["pr:opened"], "configuration": {"secret": THEIRS}}
        edited = requests.put(item, headers=bearer(carol), json=edit, timeout=10)
        assert edited.status_code == 200, edited.text
        seen = requests.get(item, headers=bearer(alice), timeout=10).json()
        assert (seen["url"], seen["events"], seen["active"]) == (other.url, ["pr:opened"], True)
        assert "secret" not in json.dumps(seen)  # write-only

        repo = "datacenter/repos/PLAT/tools"
        assert control(emu, "POST", f"{repo}/push", json={"branch": "main"}).ok
        assert control(emu, "POST", f"{repo}/pullrequests", json={"source": "feature/0001"}).ok
        delivered = [d for d in _deliveries(emu) if d["state"] == "delivered"]
        assert [(d["event_key"], d["url"]) for d in delivered] == [("pr:opened", other.url)]
        (got,) = other.wait_for(1)
        assert verify_signature(THEIRS, got["body"], got["headers"]["X-Hub-Signature"])
        assert receiver.requests == []

        assert requests.put(item, headers=bearer(carol), json={"active": False}, timeout=10).json()["active"] is False
        assert control(emu, "POST", f"{repo}/pullrequests", json={"source": "feature/0002"}).ok
        assert len(_deliveries(emu)) == 1

        # bitbridge repairs it with the admin connection: url, events, secret and active back.
        repaired = requests.put(
            item,
            headers=bearer(alice),
            json={
                "url": receiver.url,
                "events": ["repo:refs_changed"],
                "active": True,
                "configuration": {"secret": OURS},
            },
            timeout=10,
        )
        assert repaired.status_code == 200 and repaired.json()["active"] is True
        assert control(emu, "POST", f"{repo}/push", json={"branch": "main"}).ok
        (back,) = receiver.wait_for(1)
        assert verify_signature(OURS, back["body"], back["headers"]["X-Hub-Signature"])

        assert requests.delete(item, headers=bearer(carol), timeout=10).status_code == 204
        assert requests.get(item, headers=bearer(alice), timeout=10).status_code == 404
        assert control(emu, "POST", f"{repo}/push", json={"branch": "main"}).ok
        assert len(_deliveries(emu)) == 2  # nothing for a deleted hook
    finally:
        other.close()
