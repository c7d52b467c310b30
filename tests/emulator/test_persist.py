"""The emulator's Backend survives a snapshot and restore exactly (what `make dev` keeps across restarts); a
snapshot this code cannot read is refused whole; objects with their own format (git object stores) are saved
by their handler, beside the pickle."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from infra.emulator import persist
from infra.emulator.models import CLOUD, DC, Backend
from infra.emulator.seed import seed_default


def _changed_backend() -> Backend:
    """The default seed plus what a session adds: a push, an OAuth client, a code and tokens, a hook."""
    backend = Backend()
    seed_default(backend)
    repo = backend.get_repo(CLOUD, "acme", "infra")
    backend.push(repo, "main", "alice", 2)
    client = backend.register_client(CLOUD, "local-x", "s3cret", "http://127.0.0.1:3000/auth/x/callback")
    code = backend.issue_code(CLOUD, "local-x", "alice", None, ["repository"])
    backend.exchange_code(CLOUD, client, code.code, None, None)
    backend.add_hook(repo, "http://127.0.0.1:3000/hooks/x/sub-1", ["repo:push"], secret="k")
    return backend


def _state(backend: Backend) -> dict[str, Any]:
    return {k: v for k, v in vars(backend).items() if k not in persist.TRANSIENT}


def test_a_restored_backend_equals_the_saved_one_and_keeps_working(tmp_path):
    saved = _changed_backend()
    persist.snapshot(saved, tmp_path / "snap")
    restored = Backend()
    persist.restore(restored, tmp_path / "snap")
    assert _state(restored) == _state(saved)
    # Shared objects stay shared (a token is one object in both indexes), and the ids go on from where they were.
    token = next(iter(restored.access_tokens.values()))
    assert restored.refresh_tokens[token.refresh_token] is token
    project = restored.add_project("NEW")
    assert project.id == saved.add_project("NEW").id
    # The lock is this process's own, and it works.
    assert restored.lock is not saved.lock and restored.lock.acquire(timeout=1)
    restored.lock.release()


def test_a_snapshot_whose_classes_changed_is_refused_and_the_backend_is_left_alone(tmp_path):
    persist.snapshot(_changed_backend(), tmp_path / "snap")
    layout_file = tmp_path / "snap" / "backend.layout.json"
    meta = json.loads(layout_file.read_text())
    meta["layouts"]["infra.emulator.models:Repository"].remove("issues")  # saved before Repository had issues
    layout_file.write_text(json.dumps(meta))
    backend = Backend()
    seed_default(backend)
    before = _state(backend)
    with pytest.raises(persist.Incompatible, match="Repository's fields changed"):
        persist.restore(backend, tmp_path / "snap")
    assert _state(backend) == before


class FakeObjectStore:
    """Stands in for a git object store (wip/emu-git): saved as files in its own format, never pickled."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def __reduce__(self) -> Any:
        raise AssertionError("an object store must not be pickled")


def _save_store(store: FakeObjectStore, folder: Path) -> None:
    for name, data in store.objects.items():
        (folder / name).write_bytes(data)


def _load_store(folder: Path) -> FakeObjectStore:
    return FakeObjectStore({path.name: path.read_bytes() for path in folder.iterdir()})


def test_objects_with_their_own_format_are_saved_by_their_handler_once_each(tmp_path, monkeypatch):
    monkeypatch.setattr(persist, "EXTERNAL", [])
    persist.register(persist.External("git", FakeObjectStore, _save_store, _load_store))
    backend = _changed_backend()
    store = FakeObjectStore({"a1b2": b"blob 5\x00hello", "c3d4": b"tree 0\x00"})
    # A new attribute (as a git-backed emulator would add), the same store reachable twice, and a lock of its own.
    backend.git_stores = {(CLOUD, "acme", "infra"): store, (DC, "plat", "core"): store}  # type: ignore[attr-defined]
    backend.limits_lock = threading.Lock()  # type: ignore[attr-defined]
    persist.snapshot(backend, tmp_path / "snap")
    assert sorted(p.name for p in (tmp_path / "snap" / "external" / "git").iterdir()) == ["0"]
    restored = Backend()
    persist.restore(restored, tmp_path / "snap")
    stores = restored.git_stores  # type: ignore[attr-defined]
    assert stores[(CLOUD, "acme", "infra")] is stores[(DC, "plat", "core")]
    assert stores[(CLOUD, "acme", "infra")].objects == store.objects
    assert restored.limits_lock.acquire(timeout=1)  # type: ignore[attr-defined]

    monkeypatch.setattr(persist, "EXTERNAL", [])  # code without the handler cannot read it: refused, not half-read
    with pytest.raises(persist.Incompatible, match="'git' objects"):
        persist.restore(Backend(), tmp_path / "snap")
