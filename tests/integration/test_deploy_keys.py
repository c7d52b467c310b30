"""The reconciler's deploy-key check when the admin changes the provider's key, on moto under the functions' IAM
policies and the emulator over real HTTP, both flavors: a replaced key is swapped on the repository (the new one
on, the old one off), a removed one is taken off, and the subscription records what was repaired."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bitbridge.calls import Caller
from bitbridge.store.providers import ProviderRecord
from bitbridge.store.subscriptions import SubscriptionRecord
from bitbridge.webhooks import deploy_keys
from infra.emulator import Emulator
from infra.local.iam import acting_as
from tests import ssh_public_keys

REPOS = {"cloud": ("acme", "infra"), "datacenter": ("PLAT", "core")}  # alice administers both
FIRST, SECOND = ssh_public_keys.ed25519("first", "a@x"), ssh_public_keys.ed25519("second", "b@x")


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    emulator = Emulator(cloud_port=0, dc_port=0, seed=True).start()
    yield emulator
    emulator.stop()


def _caller(emu: Emulator, flavor: str, key: str | None) -> Caller:
    """alice, with the scopes that manage access keys, as a provider whose registered key is `key`."""
    backend = emu.backend
    scopes = ["repository", "repository:admin"] if flavor == "cloud" else ["REPO_ADMIN"]
    client_id = f"keys-{flavor}"
    if backend.get_client(flavor, client_id) is None:
        backend.register_client(flavor, client_id, "s", "http://127.0.0.1/cb", scopes)
    token = backend._new_token(flavor, client_id, "alice", scopes, None).access_token
    web = emu.cloud_url if flavor == "cloud" else emu.dc_url
    api = web + ("/2.0" if flavor == "cloud" else "/rest/api/1.0")
    provider = ProviderRecord("p-" + flavor, flavor=flavor, label="x", web_url=web, api_url=api, deploy_key=key)
    return Caller.with_token(provider, token)


def _on_repository(emu: Emulator, flavor: str) -> list[str]:
    return [k.text for k in emu.backend.get_repo(flavor, *REPOS[flavor]).deploy_keys.values()]


def _text(line: str) -> str:
    return line.rsplit(" ", 1)[0]  # the key without its comment: what Bitbucket keeps


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_a_replaced_key_is_swapped_and_a_removed_one_taken_off(aws, emu, flavor):
    owner, slug = REPOS[flavor]
    where = deploy_keys.Where(owner, slug)
    sub_id = f"sub-keys-{flavor}"
    SubscriptionRecord(
        sub_id, provider_id="p-" + flavor, repository_key="k", repository_full_name=f"{owner}/{slug}"
    ).save()
    with acting_as("ImportWorkerFunction"):
        installed = deploy_keys.install(_caller(emu, flavor, FIRST), where, sub_id)
    assert installed is not None and installed["status"] == "installed"
    assert _on_repository(emu, flavor) == [_text(FIRST)]

    with acting_as("ReconcilerFunction"):
        assert deploy_keys.repair(SubscriptionRecord.get(sub_id), _caller(emu, flavor, FIRST)) is None  # in place
        swapped = deploy_keys.repair(SubscriptionRecord.get(sub_id), _caller(emu, flavor, SECOND))
    assert swapped == "the provider's deploy key changed"
    assert _on_repository(emu, flavor) == [_text(SECOND)]  # the new one on, the old one off
    sub = SubscriptionRecord.get(sub_id)
    assert sub.deploy_key_text == _text(SECOND) and str(sub.last_deploy_key_repair).endswith(swapped)

    with acting_as("ReconcilerFunction"):
        removed = deploy_keys.repair(SubscriptionRecord.get(sub_id), _caller(emu, flavor, None))
    assert removed == "the provider's deploy key was removed"
    assert _on_repository(emu, flavor) == []
    sub = SubscriptionRecord.get(sub_id)
    assert sub.deploy_key_id is None and sub.deploy_key_text is None
