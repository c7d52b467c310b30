"""Every list command prints a header row above its table (and nothing but the message when empty)."""

from __future__ import annotations

from bitbridge import cli, providers
from bitbridge.store.subscriptions import SubscriptionRecord


def test_hooks_and_providers_lists_have_headers(aws, capsys):
    assert cli.main(["hooks", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == ["No webhook subscriptions."]

    SubscriptionRecord("sub-1", provider_id="cloud", repository_key="k", repository_full_name="team/repo").save()
    providers.add_provider("cloud", "cloud", "key", "secret")

    assert cli.main(["hooks", "list"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == [
        *["SUBSCRIPTION", "PROVIDER", "REPOSITORY", "KIND", "STATE", "HEALTH"],
        *["LAST", "DELIVERY", "RECONCILED", "BACKFILLED", "REPAIRS"],
    ]
    assert row.split() == ["sub-1", "cloud", "team/repo", "installed", "active", "-", "-", "-", "0", "0"]

    assert cli.main(["providers", "list"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "FLAVOR", "STATUS", "USE", "URL"]
    assert row.split()[:2] == ["cloud", "cloud"]
