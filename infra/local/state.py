"""The local stack's state across restarts: saved when the stack stops, restored when it starts (`make dev`).

A state folder (`.local/state` for `make dev`, git-ignored) holds:

    manifest.json   when it was saved, by what (moto version, template, Python), the stack's URLs then, what
                    create_resources made (physical names, ARNs) and where each stream poller had read to
    moto.pickle     moto's backends (every table, item, queue, message, key, secret, bus, rule, bucket, object),
                    pickled in one go: moto server runs in this process, so its state is plain Python objects
    emulator/       the Bitbucket emulator's Backend (infra/emulator/persist.py)

Serialising moto's backends is exact and takes milliseconds; moto's recorder would replay every request of
the session (pollers included) and re-create KMS keys with new key material, so nothing encrypted before
could be decrypted after. A state saved by other code (another moto, template.yaml changed, an emulator model
changed) is never half-loaded: the stack starts fresh and the banner says why.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.emulator import persist

FORMAT = 1
MANIFEST = "manifest.json"


@dataclass
class Saved:
    """A state folder this code can restore."""

    folder: Path
    saved_at: str
    urls: dict[str, str]
    refs: dict[str, str]
    attributes: dict[tuple[str, str], str]
    stream_positions: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    emulator: bool = True


def fingerprint(template: dict[str, Any], emulator: bool) -> dict[str, Any]:
    import moto

    body = json.dumps(template, sort_keys=True, default=str).encode()
    return {
        "format": FORMAT,
        "moto": moto.__version__,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "template": hashlib.sha256(body).hexdigest(),
        "emulator": emulator,
    }


_WHAT_CHANGED = {
    "format": "the state format changed",
    "moto": "moto was upgraded",
    "python": "Python changed",
    "template": "template.yaml changed",
    "emulator": "the emulator was switched on or off",
}


def open_saved(folder: Path, template: dict[str, Any], emulator: bool) -> tuple[Saved | None, str]:
    """(the saved state, "") when it can be restored, else (None, why not: words for the ready banner)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"no saved state in {folder}"
    except (OSError, ValueError) as exc:
        return None, f"the saved state in {folder} is unreadable ({exc})"
    expected = fingerprint(template, emulator)
    changed = [what for key, what in _WHAT_CHANGED.items() if manifest.get("fingerprint", {}).get(key) != expected[key]]
    if changed:
        return None, f"the saved state cannot be used: {', '.join(changed)} since {manifest.get('saved_at', '?')}"
    try:
        persist.check_layouts(folder, "moto")
        if emulator:
            persist.check_layouts(folder / "emulator", "backend")
    except persist.Incompatible as exc:
        return None, f"the saved state cannot be used: {exc}"
    return Saved(
        folder=folder,
        saved_at=str(manifest["saved_at"]),
        urls=dict(manifest["urls"]),
        refs=dict(manifest["resources"]["refs"]),
        attributes={(lid, attr): value for lid, attr, value in manifest["resources"]["attributes"]},
        stream_positions=dict(manifest.get("stream_positions", {})),
        emulator=emulator,
    ), ""


# ------------------------------------------------------------------------------------------------ moto


def _load_private_key(der: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    return load_der_private_key(der, None)


class MotoPickler(persist.SnapshotPickler):
    """moto's KMS keeps asymmetric key material as `cryptography` key objects: stored as PKCS#8 DER."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj).__module__.startswith("cryptography.") and hasattr(obj, "private_bytes"):
            from cryptography.hazmat.primitives import serialization

            der = obj.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            return _load_private_key, (der,)
        return super().reducer_override(obj)


def _moto_backends() -> dict[tuple[str, str, str], Any]:
    from moto.core.base_backend import BackendDict

    return {
        (backends.service_name, account, region): backend
        for backends in list(BackendDict._instances)  # type: ignore[misc]
        for account, region, backend in backends.iter_backends()
    }


def restore_moto(saved: Saved) -> None:
    """Put the saved backends in place; call before moto server answers its first request."""
    from moto.backends import get_backend

    state = persist.load(saved.folder, "moto")
    for (service, account, region), backend in state.items():
        get_backend(service)[account][region] = backend


# ------------------------------------------------------------------------------------------------ save


def save(
    folder: Path,
    *,
    template: dict[str, Any],
    emulator_backend: Any,
    urls: dict[str, str],
    refs: dict[str, str],
    attributes: dict[tuple[str, str], str],
    stream_positions: dict[str, dict[str, list[str]]],
) -> float:
    """Write the whole state into ``folder`` (replacing what was there only once the new one is complete);
    returns the seconds it took."""
    started = time.monotonic()
    folder.parent.mkdir(parents=True, exist_ok=True)
    fresh = folder.with_name(folder.name + ".saving")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir()
    backends = _moto_backends()
    for (service, _, _), backend in backends.items():
        if service == "dynamodbstreams":  # iterators live for one process; moto keeps one per read, forever
            backend.shard_iterators.clear()
    for attempt in range(3):  # a request still finishing in a server thread may change a dict mid-pickle
        try:
            persist.dump(backends, fresh, "moto", MotoPickler)
            break
        except RuntimeError:
            if attempt == 2:
                raise
            time.sleep(0.2)
    if emulator_backend is not None:
        persist.snapshot(emulator_backend, fresh / "emulator")
    manifest = {
        "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint": fingerprint(template, emulator_backend is not None),
        "urls": urls,
        "resources": {"refs": refs, "attributes": [[lid, attr, value] for (lid, attr), value in attributes.items()]},
        "stream_positions": stream_positions,
    }
    (fresh / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    fresh.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return time.monotonic() - started


def lock(folder: Path) -> Any:
    """An exclusive hold on ``folder`` for this process's life (an open file with a lock on it), or None when
    another running stack holds it."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    handle = folder.with_name(folder.name + ".lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def clear(folder: Path) -> bool:
    """Delete a saved state (`make dev-reset`); True when there was one."""
    existed = folder.exists()
    for path in (folder, folder.with_name(folder.name + ".saving"), folder.with_name(folder.name + ".old")):
        shutil.rmtree(path, ignore_errors=True)
    return existed


def age(saved_at: str) -> str:
    """ "3 min ago" for the ready banner."""
    try:
        seconds = (datetime.now(UTC) - datetime.fromisoformat(saved_at)).total_seconds()
    except ValueError:
        return saved_at
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"
