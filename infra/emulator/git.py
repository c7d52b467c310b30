"""Real git for the emulated repositories: blobs, trees and commits built and read with dulwich, kept in memory.

Each repository owns a ``GitRepo``: its objects, content-addressed by their real git ids. Refs stay in the model
(``Repository.branches`` / ``tags``); the smart HTTP server (``githttp.py``) advertises them. Objects are stored raw
(``{hex id: (type number, raw bytes)}``), which is plain data: a ``GitRepo`` pickles, and ``export()`` /
``GitRepo(objects)`` move a repository's objects in and out (for snapshots of the emulator's state).

Identical content has the same id in every repository, so blobs and trees built once (the seed's) are shared: a
tree is cached by its content and its raw objects are inserted into each repository that uses it.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from dulwich.diff_tree import RenameDetector, tree_changes
from dulwich.merge import merge_blobs
from dulwich.object_store import MemoryObjectStore
from dulwich.objects import Blob, Commit, ShaFile, Tree
from dulwich.patch import is_binary, write_object_diff
from dulwich.walk import Walker

FILE_MODE = 0o100644
EXEC_MODE = 0o100755
LINK_MODE = 0o120000
DIR_MODE = 0o040000
SUBMODULE_MODE = 0o160000

RawObject = tuple[bytes, int, bytes]  # (hex id, type number, raw bytes)
Files = dict[str, tuple[int, bytes]]  # path -> (mode, blob hex id): a commit's content, flattened


class ObjectStore(MemoryObjectStore):
    """dulwich's in-memory store, holding raw objects instead of parsed ones: adding and reading skip the copy
    ``MemoryObjectStore`` makes of every object, and the content is plain data."""

    def __init__(self, objects: dict[bytes, tuple[int, bytes]] | None = None) -> None:
        super().__init__()
        self.raw: dict[bytes, tuple[int, bytes]] = objects if objects is not None else {}

    def contains_loose(self, sha: bytes) -> bool:  # type: ignore[override]
        return self._to_hexsha(sha) in self.raw  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[bytes]:  # type: ignore[override]
        return iter(list(self.raw))

    def get_raw(self, name: bytes) -> tuple[int, bytes]:  # type: ignore[override]
        return self.raw[self._to_hexsha(name)]  # type: ignore[arg-type]

    def __getitem__(self, name: bytes) -> ShaFile:  # type: ignore[override]
        hexsha = self._to_hexsha(name)  # type: ignore[arg-type]
        type_num, raw = self.raw[hexsha]
        return ShaFile.from_raw_string(type_num, raw, sha=hexsha)

    def __delitem__(self, name: bytes) -> None:  # type: ignore[override]
        del self.raw[self._to_hexsha(name)]  # type: ignore[arg-type]

    def add_object(self, obj: ShaFile) -> None:
        self.raw[obj.id] = (obj.type_num, obj.as_raw_string())

    def add_raw(self, objects: Iterable[RawObject]) -> None:
        raw = self.raw
        for hexsha, type_num, data in objects:
            raw[hexsha] = (type_num, data)


@dataclass(frozen=True, slots=True)
class Signature:
    name: str
    email: str

    def encode(self) -> bytes:
        return f"{self.name} <{self.email}>".encode()


@dataclass(frozen=True, slots=True)
class Change:
    """One changed path between two commits (git's rename detection on)."""

    status: str  # added | modified | removed | renamed
    path: str | None  # new path (None when removed)
    old_path: str | None  # old path (None when added)
    mode: int | None
    old_mode: int | None
    sha: str | None
    old_sha: str | None
    lines_added: int
    lines_removed: int
    similarity: int | None = None  # renames: percent unchanged


@dataclass(frozen=True, slots=True)
class Entry:
    """A directory entry at a commit."""

    path: str  # from the repository root
    name: str
    mode: int
    sha: str
    size: int | None  # files only

    @property
    def is_dir(self) -> bool:
        return self.mode == DIR_MODE


class GitError(Exception):
    """A git-level problem (unknown commit, path, bad merge input); the backend turns it into a domain error."""


class MergeConflict(GitError):
    """Both sides of a merge changed the same lines of a file (or one deleted what the other changed)."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__(f"merge conflicts in {', '.join(paths[:5])}{' …' if len(paths) > 5 else ''}")
        self.paths = paths


# ---------------------------------------- shared, content-addressed builders
@functools.lru_cache(maxsize=65536)
def blob(content: bytes) -> RawObject:
    b = Blob.from_string(content)
    return b.id, b.type_num, b.as_raw_string()


@functools.lru_cache(maxsize=65536)
def _tree(entries: tuple[tuple[str, int, bytes], ...]) -> RawObject:
    """A tree object from (name, mode, hex id) entries, serialised as git does: entries ordered by name, a
    directory's name compared as if it ended in "/", each ``<octal mode> <name>\0<20-byte id>``."""
    ordered = sorted(entries, key=lambda e: e[0] + "/" if e[1] == DIR_MODE else e[0])
    raw = b"".join(b"%o %s\0%s" % (mode, name.encode(), bytes.fromhex(sha.decode())) for name, mode, sha in ordered)
    sha = hashlib.sha1(b"tree %d\0" % len(raw) + raw, usedforsecurity=False).hexdigest().encode()
    return sha, Tree.type_num, raw


@functools.lru_cache(maxsize=16384)
def _tree_objects(files: tuple[tuple[str, int, bytes], ...]) -> tuple[bytes, tuple[RawObject, ...]]:
    """The tree objects (root first) for a flat, sorted tuple of (path, mode, blob id); cached by content."""
    top: dict[str, tuple[int, bytes] | list[tuple[str, int, bytes]]] = {}
    for path, mode, sha in files:
        head, _, rest = path.partition("/")
        if rest:
            sub = top.setdefault(head, [])
            if not isinstance(sub, list):
                raise GitError(f"{head} is a file and a directory")
            sub.append((rest, mode, sha))
        else:
            if head in top:
                raise GitError(f"{head} is a file and a directory")
            top[head] = (mode, sha)
    objects: list[RawObject] = []
    entries = []
    for name, value in top.items():
        if isinstance(value, list):
            sub_id, sub_objects = _tree_objects(tuple(value))
            objects.extend(sub_objects)
            entries.append((name, DIR_MODE, sub_id))
        else:
            entries.append((name, *value))
    root = _tree(tuple(sorted(entries)))
    return root[0], (root, *objects)


# ---------------------------------------- one repository
class GitRepo:
    """The git objects of one repository, and the reads Bitbucket's REST answers from."""

    def __init__(self, objects: dict[bytes, tuple[int, bytes]] | None = None) -> None:
        self.store = ObjectStore(objects)
        self._headers: dict[str, tuple[bytes, list[str]]] = {}  # commit -> (tree, parents); a cache

    # pickling / export: only the objects are state
    def __getstate__(self) -> dict:
        return {"objects": self.store.raw}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["objects"])  # type: ignore[misc]

    def export(self) -> dict[bytes, tuple[int, bytes]]:
        """Every object: {hex id: (type number, raw bytes)}; ``GitRepo(exported)`` restores the repository."""
        return dict(self.store.raw)

    def __len__(self) -> int:
        return len(self.store.raw)

    def size(self) -> int:
        """Bytes of git data (every object's content): what Bitbucket Cloud reports as a repository's `size`."""
        return sum(len(raw) for _, raw in self.store.raw.values())

    def __eq__(self, other: object) -> bool:
        """Two stores with the same objects are the same repository content (a restored snapshot is)."""
        return isinstance(other, GitRepo) and self.store.raw == other.store.raw

    __hash__ = None  # type: ignore[assignment]  # mutable: equal by content, so not hashable

    # ---------------------------------------- writing
    def write_blob(self, content: bytes) -> bytes:
        obj = blob(content)
        self.store.add_raw((obj,))
        return obj[0]

    def write_tree(self, files: Mapping[str, tuple[int, bytes]]) -> bytes:
        root, objects = _tree_objects(tuple(sorted((p, m, s) for p, (m, s) in files.items())))
        self.store.add_raw(objects)
        return root

    def write_commit(self, tree: bytes, parents: list[bytes], message: str, author: Signature, when: int) -> str:
        """A commit object in git's own format (author = committer, UTC), hashed as git hashes it."""
        sig = author.encode() + b" %d +0000\n" % when
        text = message.encode()
        raw = b"".join(
            (
                b"tree " + tree + b"\n",
                *(b"parent " + p + b"\n" for p in parents),
                b"author " + sig,
                b"committer " + sig,
                b"\n",
                text if text.endswith(b"\n") else text + b"\n",
            )
        )
        sha = hashlib.sha1(b"commit %d\0" % len(raw) + raw, usedforsecurity=False).hexdigest().encode()
        self.store.raw[sha] = (Commit.type_num, raw)
        self._headers[sha.decode()] = (tree, [p.decode() for p in parents])
        return sha.decode()

    def commit_files(
        self,
        parents: list[str],
        files: Files,
        message: str,
        author: Signature,
        when: int,
    ) -> str:
        tree = self.write_tree(files)
        return self.write_commit(tree, [p.encode() for p in parents], message, author, when)

    def apply(
        self,
        base: str | None,
        *,
        write: Mapping[str, bytes] | None = None,
        delete: Iterable[str] = (),
        rename: Mapping[str, str] | None = None,
    ) -> Files:
        """The content of ``base`` with files renamed, deleted and written (in that order)."""
        files = self.files(base) if base else {}
        for old, new in (rename or {}).items():
            old, new = _clean(old), _clean(new)
            if old not in files:
                raise GitError(f"Cannot rename {old}: no such file.")
            files[new] = files.pop(old)
        for path in delete:
            path = _clean(path)
            if path not in files:
                raise GitError(f"Cannot delete {path}: no such file.")
            del files[path]
        for path, content in (write or {}).items():
            path = _clean(path)
            mode = files[path][0] if path in files else FILE_MODE
            files[path] = (mode, self.write_blob(content))
        _check_paths(files)
        return files

    def with_file(self, commit: str, path: str, content: bytes) -> bytes:
        """The tree of ``commit`` with one file written: only the trees on the file's path are rebuilt, and the
        result is memoised by content (repeated seeds reuse it)."""
        tree, blob_id = self.tree_of(commit), self.write_blob(content)
        path = _clean(path)
        key = (tree, path, blob_id)
        known = _WITH_FILE.get(key)
        if known is None:
            objects: list[RawObject] = []
            current = self.lookup(commit, path)
            mode = current[0] if current and current[0] != DIR_MODE else FILE_MODE
            known = (_set_path(self.store, tree, path.split("/"), (mode, blob_id), objects), tuple(objects))
            _remember(_WITH_FILE, key, known)
        self.store.add_raw(known[1])
        return known[0]

    def merge(self, ours: str, theirs: str) -> bytes:
        """A merge's tree, as git's three-way merge makes it: ``ours`` plus every change ``theirs`` made since their
        merge base. A file both sides changed is merged line by line (dulwich's ``merge_blobs``); where the changes
        overlap, or one side deleted what the other changed, the merge stops with ``MergeConflict`` naming the
        paths. Only the changed paths are visited (identical subtrees are skipped), so merges stay cheap."""
        base = self.merge_base(ours, theirs)
        key = (self.tree_of(base) if base else b"", self.tree_of(ours), self.tree_of(theirs))
        known = _MERGED.get(key)
        if known is None:
            objects: list[RawObject] = []
            tree, conflicts = key[1], []
            for path, entry in _tree_diff(self.store, key[0] or None, key[2]):
                mine = _entry_at(self.store, key[1], path)
                if mine != entry and mine != (_entry_at(self.store, key[0], path) if key[0] else None):
                    # Both sides changed this path since the base: merge the contents, as git does.
                    merged = self._merge_file(path, key[0], mine, entry)
                    if merged is None:
                        conflicts.append(path)
                        continue
                    entry = merged
                tree = _set_path(self.store, tree, path.split("/"), entry, objects)
            if conflicts:
                raise MergeConflict(sorted(conflicts))
            known = (tree, tuple(objects))
            _remember(_MERGED, key, known)
        self.store.add_raw(known[1])
        return known[0]

    def _merge_file(
        self, path: str, base_tree: bytes, ours: tuple[int, bytes] | None, theirs: tuple[int, bytes] | None
    ) -> tuple[int, bytes] | None:
        """The merged entry of a file both sides changed, or None for a conflict (overlapping changes, a change
        against a deletion, a file against a directory)."""
        base = _entry_at(self.store, base_tree, path) if base_tree else None
        if ours is None or theirs is None or DIR_MODE in (ours[0], theirs[0]):
            return None
        content, conflicted = merge_blobs(*(self._blob(e) for e in (base, ours, theirs)))
        if conflicted:
            return None
        mode = theirs[0] if base is not None and ours[0] == base[0] else ours[0]
        return mode, self.write_blob(content)

    def _blob(self, entry: tuple[int, bytes] | None) -> Blob | None:
        if entry is None or entry[0] in (DIR_MODE, SUBMODULE_MODE):
            return None
        return Blob.from_string(self.read(entry[1]))

    # ---------------------------------------- reading
    def has_commit(self, sha: str) -> bool:
        if sha in self._headers:
            return True
        obj = self.store.raw.get(sha.encode()) if len(sha) == 40 else None
        return obj is not None and obj[0] == Commit.type_num

    def resolve_prefix(self, prefix: str) -> str | None:
        """A commit id from a unique abbreviation (at least 4 hex digits), as Bitbucket accepts them."""
        prefix = prefix.lower()
        if len(prefix) == 40:
            return prefix if self.has_commit(prefix) else None
        if len(prefix) < 4 or any(ch not in "0123456789abcdef" for ch in prefix):
            return None
        key = prefix.encode()
        found = [k for k, (t, _) in self.store.raw.items() if t == Commit.type_num and k.startswith(key)]
        return found[0].decode() if len(found) == 1 else None

    def commit(self, sha: str) -> Commit:
        if not self.has_commit(sha):
            raise GitError(f"Commit {sha} does not exist.")
        return self.store[sha.encode()]  # type: ignore[return-value]

    def tree_of(self, sha: str) -> bytes:
        return self._header(sha)[0]

    def parents(self, sha: str) -> list[str]:
        return self._header(sha)[1]

    def _header(self, sha: str) -> tuple[bytes, list[str]]:
        """(tree id, parent ids) of a commit, read from its header without a full parse."""
        header = self._headers.get(sha)
        if header is None:
            obj = self.store.raw.get(sha.encode())
            if obj is None or obj[0] != Commit.type_num:
                raise GitError(f"Commit {sha} does not exist.")
            header = self._headers[sha] = _commit_header(obj[1])
        return header

    def files(self, sha: str) -> Files:
        """Every file of a commit: {path: (mode, blob id)}."""
        return _flat(self.store, self.tree_of(sha))

    def read(self, sha: bytes | str) -> bytes:
        key = sha if isinstance(sha, bytes) else sha.encode()
        return self.store.raw[key][1]

    def lookup(self, commit: str, path: str) -> tuple[int, bytes] | None:
        """(mode, object id) of ``path`` at ``commit`` ("" = the root tree), or None."""
        path = path.strip("/")
        tree = self.tree_of(commit)
        if not path:
            return DIR_MODE, tree
        mode, sha = DIR_MODE, tree
        for part in path.split("/"):
            if mode != DIR_MODE:
                return None
            found = _tree_entries(self.store, sha).get(part)
            if found is None:
                return None
            mode, sha = found
        return mode, sha

    def listdir(self, commit: str, path: str, depth: int = 1) -> list[Entry]:
        """A directory's entries at ``commit`` in git's order, breadth-first down to ``depth`` levels."""
        found = self.lookup(commit, path)
        if found is None or found[0] != DIR_MODE:
            raise GitError(f"No directory {path!r} at {commit}.")
        out: list[Entry] = []
        level = [(path.strip("/"), found[1])]
        for _ in range(max(1, depth)):
            below = []
            for prefix, tree in level:
                for name, (mode, sha) in _tree_entries(self.store, tree).items():
                    full = f"{prefix}/{name}" if prefix else name
                    size = len(self.read(sha)) if mode not in (DIR_MODE, SUBMODULE_MODE) else None
                    out.append(Entry(full, name, mode, sha.decode(), size))
                    if mode == DIR_MODE:
                        below.append((full, sha))
            level = below
        return out

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether ``ancestor`` is ``descendant`` or reachable from it (walks back from ``descendant``)."""
        seen: set[str] = set()
        todo = [descendant]
        while todo:
            current = todo.pop()
            if current == ancestor:
                return True
            if current in seen or not self.has_commit(current):
                continue
            seen.add(current)
            todo.extend(self.parents(current))
        return False

    def merge_base(self, a: str, b: str) -> str | None:
        """A common ancestor of ``a`` and ``b`` near both: both histories are walked back a generation at a time
        and the first commit reached from both wins (git's merge base for the histories the emulator makes)."""
        if a == b or a in self.parents(b):
            return a
        if b in self.parents(a):
            return b
        seen = {a: {a}, b: {b}}
        fronts = {a: [a], b: [b]}
        while fronts[a] or fronts[b]:
            for me, other in ((b, a), (a, b)):
                step = []
                for sha in fronts[me]:
                    if sha in seen[other]:
                        return sha
                    if self.has_commit(sha):
                        for parent in self.parents(sha):
                            if parent not in seen[me]:
                                seen[me].add(parent)
                                step.append(parent)
                fronts[me] = step
        return None

    def log(self, include: list[str], exclude: Iterable[str] = (), path: str | None = None) -> list[Commit]:
        """Commits reachable from ``include`` but not from ``exclude``, newest first (``git log``)."""
        if not include:
            return []
        paths = [path.strip("/").encode()] if path and path.strip("/") else None
        walker = Walker(self.store, [i.encode() for i in include], exclude=[e.encode() for e in exclude], paths=paths)
        return [entry.commit for entry in walker]

    def changes(self, old: str | None, new: str) -> list[Change]:
        """What changed from commit ``old`` (None: nothing) to commit ``new``, with renames detected."""
        old_tree = self.tree_of(old) if old else None
        detector = RenameDetector(self.store)
        out = []
        for tc in tree_changes(self.store, old_tree, self.tree_of(new), rename_detector=detector):
            kind = {"add": "added", "delete": "removed", "modify": "modified", "rename": "renamed"}.get(tc.type)
            if kind is None:  # copies and unchanged entries are not reported
                continue
            o, n = tc.old, tc.new
            old_data = self.read(o.sha) if o and o.sha and o.mode != SUBMODULE_MODE else b""
            new_data = self.read(n.sha) if n and n.sha and n.mode != SUBMODULE_MODE else b""
            added, removed = _line_counts(old_data, new_data)
            similarity = None
            if kind == "renamed":
                similarity = 100 if o.sha == n.sha else _similarity(old_data, new_data)
            out.append(
                Change(
                    kind,
                    n.path.decode() if n and n.path else None,
                    o.path.decode() if o and o.path else None,
                    n.mode if n else None,
                    o.mode if o else None,
                    n.sha.decode() if n and n.sha else None,
                    o.sha.decode() if o and o.sha else None,
                    added,
                    removed,
                    similarity,
                )
            )
        return sorted(out, key=lambda c: c.path or c.old_path or "")

    def diff(self, old: str | None, new: str, paths: Iterable[str] = ()) -> bytes:
        """A git-style unified diff from ``old`` to ``new`` (``git diff old new``)."""
        wanted = {p.strip("/") for p in paths}
        out = io.BytesIO()
        for change in self.changes(old, new):
            if wanted and not ({change.path, change.old_path} & wanted):
                continue
            old_file = (
                (change.old_path.encode(), change.old_mode, change.old_sha.encode())
                if change.old_path and change.old_sha
                else (None, None, None)
            )
            new_file = (
                (change.path.encode(), change.mode, change.sha.encode())
                if change.path and change.sha
                else (None, None, None)
            )
            if change.status != "renamed":
                write_object_diff(out, self.store, old_file, new_file)  # type: ignore[arg-type]
                continue
            # git's rename header; the content diff follows only when the content changed too
            out.write(
                f"diff --git a/{change.old_path} b/{change.path}\nsimilarity index {change.similarity}%\n"
                f"rename from {change.old_path}\nrename to {change.path}\n".encode()
            )
            if change.sha != change.old_sha:
                body = io.BytesIO()
                write_object_diff(body, self.store, old_file, new_file)  # type: ignore[arg-type]
                out.write(body.getvalue().split(b"\n", 1)[1])
        return out.getvalue()


# ---------------------------------------- helpers
def _clean(path: str) -> str:
    """A repository path as git stores it; refuses what git refuses (empty, ".", "..", ".git" components, NUL)."""
    if not isinstance(path, str) or not path.strip("/"):
        raise GitError("A file path cannot be empty.")
    parts = path.strip("/").split("/")
    if "\0" in path or any(part in ("", ".", "..") or part.lower() == ".git" for part in parts):
        raise GitError(f"Invalid file path {path!r}.")
    return "/".join(parts)


def _set_path(
    store: ObjectStore, tree: bytes | None, parts: list[str], entry: tuple[int, bytes] | None, out: list[RawObject]
) -> bytes:
    """``tree`` with the file at ``parts`` set to ``entry`` (None: removed), rebuilding only the trees on that path;
    new tree objects are added to ``store`` and appended to ``out``. An emptied directory disappears."""
    entries = dict(_tree_entries(store, tree)) if tree else {}
    head, rest = parts[0], parts[1:]
    if rest:
        sub = entries.get(head)
        if sub is not None and sub[0] != DIR_MODE:
            raise GitError(f"{head} is a file, so {'/'.join(parts)} cannot be added below it.")
        new_sub = _set_path(store, sub[1] if sub else None, rest, entry, out)
        if new_sub == _EMPTY_TREE:
            entries.pop(head, None)
        else:
            entries[head] = (DIR_MODE, new_sub)
    elif entry is None:
        entries.pop(head, None)
    else:
        if head in entries and entries[head][0] == DIR_MODE:
            raise GitError(f"{head} is a directory.")
        entries[head] = entry
    obj = _tree(tuple(sorted((name, mode, sha) for name, (mode, sha) in entries.items())))
    store.add_raw((obj,))
    out.append(obj)
    if obj[0] not in _TREES:  # known without parsing it back
        _remember(_TREES, obj[0], entries)
    return obj[0]


_EMPTY_TREE = Tree().id


def _entry_at(store: ObjectStore, tree: bytes, path: str) -> tuple[int, bytes] | None:
    """(mode, id) of ``path`` in ``tree``, or None."""
    entry: tuple[int, bytes] | None = (DIR_MODE, tree)
    for part in path.split("/"):
        if entry is None or entry[0] != DIR_MODE:
            return None
        entry = _tree_entries(store, entry[1]).get(part)
    return entry


def _tree_diff(
    store: ObjectStore, old: bytes | None, new: bytes | None, prefix: str = ""
) -> Iterator[tuple[str, tuple[int, bytes] | None]]:
    """Every file path whose entry differs from tree ``old`` to tree ``new``, with its new entry (None: gone);
    identical subtrees are skipped."""
    if old == new:
        return
    a = _tree_entries(store, old) if old else {}
    b = _tree_entries(store, new) if new else {}
    for name in a.keys() | b.keys():
        before, after = a.get(name), b.get(name)
        if before == after:
            continue
        path = prefix + name
        old_dir = before[1] if before and before[0] == DIR_MODE else None
        new_dir = after[1] if after and after[0] == DIR_MODE else None
        if before is not None and not old_dir and (after is None or new_dir):
            yield path, None  # a file goes (deleted, or a directory takes its place)
        if old_dir or new_dir:
            yield from _tree_diff(store, old_dir, new_dir, path + "/")
        if after is not None and not new_dir:
            yield path, after


def _check_paths(files: Files) -> None:
    names = set(files)
    for path in names:
        parent = path.rpartition("/")[0]
        while parent:
            if parent in names:
                raise GitError(f"{parent} is a file, so {path} cannot be added below it.")
            parent = parent.rpartition("/")[0]


# Trees made by a one-file change and by merges, by their inputs' ids (content, so valid in every repository).
_WITH_FILE: dict[tuple[bytes, str, bytes], tuple[bytes, tuple[RawObject, ...]]] = {}
_MERGED: dict[tuple[bytes, bytes, bytes], tuple[bytes, tuple[RawObject, ...]]] = {}


def _remember(cache: dict, key: object, value: object) -> None:
    if len(cache) > _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


# Parsed trees and flattened file lists, by tree id: ids name content, so one cache serves every repository.
_TREES: dict[bytes, dict[str, tuple[int, bytes]]] = {}
_FLAT: dict[bytes, Files] = {}
_CACHE_LIMIT = 50_000


def _tree_entries(store: ObjectStore, tree: bytes) -> dict[str, tuple[int, bytes]]:
    entries = _TREES.get(tree)
    if entries is None:
        t = Tree.from_raw_string(Tree.type_num, store.raw[tree][1])
        entries = {e.path.decode(): (e.mode, e.sha) for e in t.iteritems()}
        if len(_TREES) > _CACHE_LIMIT:
            _TREES.clear()
        _TREES[tree] = entries
    return entries


def _flat(store: ObjectStore, tree: bytes) -> Files:
    files = _FLAT.get(tree)
    if files is None:
        files = dict(_flatten(store, tree))
        if len(_FLAT) > _CACHE_LIMIT:
            _FLAT.clear()
        _FLAT[tree] = files
    return dict(files)


def _flatten(store: ObjectStore, tree: bytes, prefix: str = "") -> Iterator[tuple[str, tuple[int, bytes]]]:
    for name, (mode, sha) in _tree_entries(store, tree).items():
        path = f"{prefix}{name}"
        if mode == DIR_MODE:
            yield from _flatten(store, sha, path + "/")
        else:
            yield path, (mode, sha)


def _commit_header(raw: bytes) -> tuple[bytes, list[str]]:
    tree, parents = b"", []
    for line in raw.split(b"\n", 16):
        if line.startswith(b"tree "):
            tree = line[5:]
        elif line.startswith(b"parent "):
            parents.append(line[7:].decode())
        elif not line.startswith((b"tree ", b"parent ")):
            break
    return tree, parents


def _line_counts(old: bytes, new: bytes) -> tuple[int, int]:
    if is_binary(old) or is_binary(new):
        return 0, 0
    added = removed = 0
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            removed += i2 - i1
        if tag in ("replace", "insert"):
            added += j2 - j1
    return added, removed


def _similarity(old: bytes, new: bytes) -> int:
    return round(100 * difflib.SequenceMatcher(None, old, new, autojunk=False).ratio())
