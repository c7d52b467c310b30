"""`make dev`'s stack boots from nothing, serves /health over HTTP and stops cleanly."""

from __future__ import annotations

import requests

from tests.e2e.conftest import start_stack, stop_stack


def test_health_reports_ready_through_the_real_handler(stack):
    response = requests.get(f"{stack.api}/health", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["stage"] == "local"
    assert body["checks"]["dynamodb"]["ok"] is True


def test_only_template_routes_are_served(stack):
    assert requests.get(f"{stack.api}/nope", timeout=5).status_code == 404
    assert requests.delete(f"{stack.api}/health", timeout=5).status_code == 404


def test_stack_tables_are_the_templates(stack):
    names = stack.aws("dynamodb").list_tables()["TableNames"]
    assert "bitbridge-local-DeliveriesTable" in names
    assert "bitbridge-local-ProvidersTable" in names


def test_health_is_503_when_dynamodb_is_unreachable(tmp_path):
    running = start_stack(tmp_path)
    try:
        running.aws("dynamodb").delete_table(TableName="bitbridge-local-ProvidersTable")
        response = requests.get(f"{running.api}/health", timeout=10)
        assert response.status_code == 503
        assert response.json()["checks"]["dynamodb"]["ok"] is False
    finally:
        assert stop_stack(running) == 0
    assert "stopped." in running.log()


def test_stack_starts_the_seeded_bitbucket_emulator(stack):
    for flavor in ("bitbucket_cloud", "bitbucket_datacenter"):
        state = requests.get(f"{stack.urls[flavor]}/_emulator/state", timeout=5)
        assert state.status_code == 200
    # Cloud's REST API demands a token, exactly like bitbucket.org.
    assert requests.get(f"{stack.urls['bitbucket_cloud']}/2.0/user", timeout=5).status_code == 401
