"""Snapshot and restore of the emulator's ``Backend``: its users, workspaces, projects, repositories (with
their branches, pull requests, issues, hooks), OAuth clients, codes and tokens. The local stack uses it to
keep Bitbucket's side across restarts (`make dev`); nothing else in the emulator depends on it.

A snapshot is a directory, so state that has its own on-disk format sits beside the pickle:

    backend.pickle   the Backend's attributes except ``TRANSIENT``, pickled in one go (shared objects stay shared)
    layout.json      the field names of every class in the pickle, checked before anything is loaded
    external/KIND/N/ one folder per object an ``External`` handler stores in its own format

Git object stores, for example, are stored as git stores: register an ``External`` for the repository type
(``save`` writes a bare repository or a pack into the empty folder it is given, ``load`` rebuilds the object
from that folder) and every such object anywhere in the Backend's graph goes there instead of the pickle.

A snapshot written by an older emulator is refused, never half-loaded: ``restore`` raises ``Incompatible``
naming the class whose fields changed, and the caller starts fresh. Snapshots are pickles: load only your own.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import pickle
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .models import Backend

FORMAT = 1
#: Backend attributes that belong to this process, never to a snapshot: the lock, the listeners wired to this
#: emulator's webhook dispatcher, the URLs of its current ports. New per-process attributes go here.
TRANSIENT = {"lock", "listeners", "public_urls"}

_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


class Incompatible(Exception):
    """The snapshot cannot be loaded by this code (another format, or a class whose fields changed)."""


@dataclass(frozen=True)
class External:
    """Objects of ``type`` are stored by ``save(obj, empty_folder)`` and rebuilt by ``load(folder)``."""

    kind: str
    type: type
    save: Callable[[Any, Path], None]
    load: Callable[[Path], Any]


EXTERNAL: list[External] = []


def register(handler: External) -> None:
    EXTERNAL[:] = [h for h in EXTERNAL if h.kind != handler.kind] + [handler]


def layout(cls: type) -> list[str] | None:
    """A class's field names (dataclass fields, else slots), or None for classes without a fixed layout."""
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    slots: list[str] = []
    for klass in cls.__mro__:
        declared = getattr(klass, "__slots__", ())
        slots.extend([declared] if isinstance(declared, str) else declared)
    return sorted(slots) or None


def _rebuild_lock(kind: str) -> Any:
    return threading.RLock() if kind == "RLock" else threading.Lock()


class SnapshotPickler(pickle.Pickler):
    """Pickles an object graph into ``folder``: locks become new locks, ``EXTERNAL`` objects go to their own
    folders, and the layout of every class met is recorded for the compatibility check."""

    def __init__(self, file: Any, folder: Path) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.folder = folder
        self.layouts: dict[str, list[str] | None] = {}
        self._stored: dict[int, tuple[str, int]] = {}

    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        if isinstance(obj, _LOCK_TYPES):
            return _rebuild_lock, ("RLock" if "RLock" in cls.__name__ else "Lock",)
        if not isinstance(obj, type) and cls.__module__ != "builtins":
            self.layouts.setdefault(f"{cls.__module__}:{cls.__qualname__}", layout(cls))
        return NotImplemented

    def persistent_id(self, obj: Any) -> Any:
        for handler in EXTERNAL:
            if isinstance(obj, handler.type):
                if id(obj) not in self._stored:
                    number = sum(1 for kind, _ in self._stored.values() if kind == handler.kind)
                    target = self.folder / "external" / handler.kind / str(number)
                    target.mkdir(parents=True)
                    handler.save(obj, target)
                    self._stored[id(obj)] = (handler.kind, number)
                return self._stored[id(obj)]
        return None


class SnapshotUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, folder: Path) -> None:
        super().__init__(file)
        self.folder = folder
        self._loaded: dict[tuple[str, int], Any] = {}

    def persistent_load(self, pid: Any) -> Any:
        kind, number = pid
        if (kind, number) not in self._loaded:
            handler = next((h for h in EXTERNAL if h.kind == kind), None)
            if handler is None:
                raise Incompatible(f"the snapshot holds {kind!r} objects and no handler loads them")
            self._loaded[(kind, number)] = handler.load(self.folder / "external" / kind / str(number))
        return self._loaded[(kind, number)]


def dump(obj: Any, folder: Path, name: str, pickler: type[SnapshotPickler] = SnapshotPickler) -> None:
    """Write ``obj`` as ``folder/name.pickle`` plus ``folder/name.layout.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    writer = pickler(buffer, folder)
    writer.dump(obj)
    (folder / f"{name}.pickle").write_bytes(buffer.getvalue())
    meta = {"format": FORMAT, "layouts": writer.layouts}
    (folder / f"{name}.layout.json").write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")


def check_layouts(folder: Path, name: str) -> None:
    """Raise ``Incompatible`` unless every class in the snapshot still has the fields it was saved with."""
    try:
        meta = json.loads((folder / f"{name}.layout.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Incompatible(f"{name}: unreadable ({exc})") from None
    if meta.get("format") != FORMAT:
        raise Incompatible(f"{name}: snapshot format {meta.get('format')}, this code reads {FORMAT}")
    for qualified, fields in meta["layouts"].items():
        module, _, qualname = qualified.partition(":")
        try:
            cls: Any = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError):
            raise Incompatible(f"{name}: {qualified} no longer exists") from None
        if layout(cls) != fields:
            raise Incompatible(f"{name}: {qualname}'s fields changed since the snapshot was saved")


def load(folder: Path, name: str, unpickler: type[SnapshotUnpickler] = SnapshotUnpickler) -> Any:
    check_layouts(folder, name)
    with (folder / f"{name}.pickle").open("rb") as fh:
        try:
            return unpickler(fh, folder).load()
        except Incompatible:
            raise
        except Exception as exc:  # a pickle this code cannot read back is a snapshot from other code
            raise Incompatible(f"{name}: {type(exc).__name__}: {exc}") from None


# ------------------------------------------------------------------------------------------------ Backend


def snapshot(backend: Backend, folder: Path) -> None:
    """Save ``backend``'s state into ``folder`` (created; it must not exist yet)."""
    folder.mkdir(parents=True)
    with backend.lock:
        state = {k: v for k, v in vars(backend).items() if k not in TRANSIENT}
        try:
            dump(state, folder, "backend")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise


def restore(backend: Backend, folder: Path) -> None:
    """Replace ``backend``'s state with the snapshot in ``folder``; raises ``Incompatible`` (leaving the
    backend untouched) when this code cannot load it."""
    apply(backend, load(folder, "backend"))


def apply(backend: Backend, state: dict[str, Any]) -> None:
    """Replace ``backend``'s state with a loaded snapshot (``load(folder, "backend")``). Attributes the
    snapshot does not have keep the values a fresh ``reset()`` gives them."""
    with backend.lock:
        backend.reset()
        vars(backend).update(state)
