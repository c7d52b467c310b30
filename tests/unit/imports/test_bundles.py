"""A pack is a bundle only when everything its refs need is there: generated histories bundle and verify; any
object taken out, any byte damaged, or a delta whose base travels elsewhere is refused (Incomplete)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from dulwich.object_format import DEFAULT_OBJECT_FORMAT
from dulwich.objects import Blob, Commit, ShaFile, Tag, Tree
from dulwich.pack import write_pack_objects
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitbridge.imports import bundles

NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)


def _commit(tree: Tree, parents: list[bytes], message: str) -> Commit:
    commit = Commit()
    commit.tree, commit.parents = tree.id, parents
    commit.author = commit.committer = b"A <a@example.com>"
    commit.author_time = commit.commit_time = 1_700_000_000
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = message.encode()
    return commit


def _history(files: list[dict[str, bytes]], tag: bool) -> tuple[list[ShaFile], bundles.Refs]:
    """One commit per file set (each the child of the one before), a branch at each, and maybe an annotated tag."""
    objects: dict[bytes, ShaFile] = {}
    refs: bundles.Refs = {}
    parent: list[bytes] = []
    for n, content in enumerate(files):
        sub = Tree()
        for name, data in content.items():
            blob = Blob.from_string(data)
            objects[blob.id] = blob
            sub.add(name.encode(), 0o100644, blob.id)
        root = Tree()
        root.add(b"dir", 0o040000, sub.id)
        root.add(b"module", 0o160000, b"1" * 40)  # a submodule's commit lives elsewhere
        commit = _commit(root, parent, f"commit {n}")
        objects.update({sub.id: sub, root.id: root, commit.id: commit})
        refs[f"refs/heads/b{n}"] = commit.id.decode()
        parent = [commit.id]
    if tag:
        annotated = Tag()
        annotated.object = (Commit, parent[0])
        annotated.name, annotated.tagger, annotated.message = b"v1", b"T <t@example.com>", b"release\n"
        annotated.tag_time, annotated.tag_timezone = 1_700_000_000, 0
        objects[annotated.id] = annotated
        refs["refs/tags/v1"] = annotated.id.decode()
    refs["HEAD"] = parent[0].decode()
    return list(objects.values()), refs


def _pack(objects: list[ShaFile], path: Path, deltify: bool = False) -> Path:
    with path.open("wb") as fh:
        write_pack_objects(fh.write, [(o, None) for o in objects], object_format=DEFAULT_OBJECT_FORMAT, deltify=deltify)
    return path


HISTORIES = st.lists(
    st.dictionaries(NAME, st.binary(min_size=0, max_size=300), min_size=1, max_size=4), min_size=1, max_size=5
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=HISTORIES, tag=st.booleans(), deltify=st.booleans())
def test_a_whole_history_verifies_and_a_missing_object_is_named(tmp_path, files, tag, deltify):
    objects, refs = _history(files, tag)
    folder = Path(tmp_path) / hashlib.sha1(repr((files, tag, deltify)).encode()).hexdigest()
    folder.mkdir()
    verified = bundles.verify(_pack(objects, folder / "whole.pack", deltify), refs)
    assert verified.objects == len(objects) and verified.commits == len(files)
    assert verified.index.exists()
    # Any object the refs reach, left out, makes the pack no bundle of those refs.
    for n, missing in enumerate(objects):
        others = [o for o in objects if o.id != missing.id]
        with pytest.raises(bundles.Incomplete, match=missing.id.decode()):
            bundles.verify(_pack(others, folder / f"without-{n}.pack"), refs)


@given(files=HISTORIES)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_an_update_is_checked_against_the_bundles_before_it(tmp_path, files):
    objects, refs = _history(files, tag=False)
    folder = Path(tmp_path) / hashlib.sha1(repr(files).encode()).hexdigest()
    folder.mkdir()
    earlier = bundles.verify(_pack(objects, folder / "base.pack"), refs)
    newer = Blob.from_string(b"added later\n")
    tree = Tree()
    tree.add(b"dir", 0o040000, next(o for o in objects if isinstance(o, Tree) and b"module" not in o).id)
    tree.add(b"later.txt", 0o100644, newer.id)
    child = _commit(tree, [refs["HEAD"].encode()], "later")
    update = _pack([newer, tree, child], folder / "update.pack")
    index = bundles.open_index(earlier.index)
    try:
        verified = bundles.verify(update, {"refs/heads/main": child.id.decode()}, known=bundles.in_any([index]))
        assert verified.objects == 3
        with pytest.raises(bundles.Incomplete):  # without the bundles before it, its parent is missing
            bundles.verify(update, {"refs/heads/main": child.id.decode()})
    finally:
        index.close()


def test_damaged_bytes_are_refused(tmp_path):
    objects, refs = _history([{"a": b"x" * 200}, {"b": b"y" * 200}], tag=True)
    whole = _pack(objects, tmp_path / "whole.pack").read_bytes()
    for at in (12, len(whole) // 2, len(whole) - 5):  # an object header, an object's data, the checksum
        damaged = bytearray(whole)
        damaged[at] ^= 0xFF
        (tmp_path / f"damaged-{at}.pack").write_bytes(bytes(damaged))
        with pytest.raises(bundles.Incomplete):
            bundles.verify(tmp_path / f"damaged-{at}.pack", refs)
    (tmp_path / "cut.pack").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(bundles.Incomplete):
        bundles.verify(tmp_path / "cut.pack", refs)


REF = st.builds(lambda parts: "refs/heads/" + "/".join(parts), st.lists(NAME, min_size=1, max_size=3))
SHA = st.binary(min_size=20, max_size=20).map(lambda b: b.hex())


@given(refs=st.dictionaries(REF, SHA, max_size=20), prerequisites=st.lists(SHA, max_size=5))
def test_a_header_reads_back_as_written(refs, prerequisites):
    head = bundles.header(refs, prerequisites)
    lines = io.BytesIO(head + b"PACK...")
    assert bundles.parse_header(lines.readline) == (refs, sorted(set(prerequisites)))
    assert lines.read() == b"PACK..."
    assert bundles.digest(refs) == bundles.digest(dict(reversed(list(refs.items()))))  # order does not matter


@settings(max_examples=200, deadline=None)
@given(
    head=st.binary(min_size=1, max_size=40),
    body=st.binary(max_size=3000),
    moves=st.lists(st.tuples(st.integers(-10, 3100), st.integers(-1, 700)), max_size=12),
)
def test_a_joined_file_reads_as_head_then_body_from_anywhere(head, body, moves):
    whole = head + body
    joined = bundles.Joined(head, io.BytesIO(body))
    assert joined.size == len(whole)
    assert io.BufferedReader(bundles.Joined(head, io.BytesIO(body)), 7).read() == whole
    for offset, size in moves:
        at = joined.seek(offset)
        assert at == max(0, offset) and joined.tell() == at
        chunk = joined.read(size)
        assert chunk == (whole[at:] if size < 0 else whole[at : at + size])
    assert joined.seek(-1, io.SEEK_END) == len(whole) - 1 and joined.read() == whole[-1:]
