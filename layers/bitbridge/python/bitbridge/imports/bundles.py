"""Git bundles as the import writes them, and the checks that stand behind one. Local files only: no network, no AWS.

A bundle (git's v2 format) is a header - `# v2 git bundle`, one `-<commit>` line per prerequisite, one
`<object> <ref>` line per ref, a blank line - followed by a pack. The pack is the one Bitbucket's upload-pack sent
for those refs (non-thin: every delta's base is in the same pack), written as it arrived, so a bundle costs no
repacking: the header is put in front of it on the way to S3.

`verify` is what makes a pack fit to be a bundle, the checks `git clone` and `git fsck --connectivity-only` make:
the pack's trailing checksum, every object's id recomputed and every delta resolved (the index is built from the
pack itself), and every ref's history complete - each commit's tree and parents, each tree's subtrees and blobs,
each tag's object present in the pack or, for an update, in the bundles before it (`known`). So a clone from the
bundle (and its updates, applied in order) checks out every head.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dulwich.object_format import DEFAULT_OBJECT_FORMAT
from dulwich.objects import Commit, ObjectID, Tag, Tree, parse_tree
from dulwich.pack import Pack, PackData, PackIndex, load_pack_index

SIGNATURE = b"# v2 git bundle\n"
#: name -> object id (hex); "HEAD" too when the repository has a default branch.
Refs = dict[str, str]
GITLINK = 0o160000  # a submodule's commit: in another repository, never in this pack
DIRECTORY = 0o040000


class Incomplete(Exception):
    """The pack is damaged or does not hold what its refs need (the message names what is wrong)."""


def heads_of(listed: dict[str, tuple[str, str]]) -> Refs:
    """Branches and tags as Bitbucket's REST API lists them (`b:name` / `t:name` -> (object, commit), as
    `Bitbucket.ref_heads` answers) under their git names, each with the commit it names."""
    kinds = {"b": "refs/heads/", "t": "refs/tags/"}
    return {kinds[name[0]] + name[2:]: commit.lower() for name, (_, commit) in listed.items()}


def _commits(refs: Refs, peeled: Refs) -> Refs:
    """Each branch and tag fetched with the commit it names (an annotated tag: the commit it tags)."""
    return {name: peeled.get(name, sha).lower() for name, sha in refs.items() if name.startswith("refs/")}


def unlike_listed(refs: Refs, peeled: Refs, listed: Refs) -> list[str]:
    """The branches and tags whose commit over git is not the one the REST listing gives, or that only one of
    them has, by name."""
    advertised = _commits(refs, peeled)
    return sorted(name for name in advertised.keys() | listed.keys() if advertised.get(name) != listed.get(name))


_DIGEST_MODULUS = 2**256


def fold_listed(digest: str | None, heads: Refs) -> str:
    """`digest` (None: nothing listed yet) with `heads` (git name -> commit) added: an order-free digest of a
    listing (the sum of each pair's sha256), so the import folds its pages in as it writes them and the git
    step compares what it fetched without reading them back."""
    total = int(digest or "0", 16)
    for name, commit in heads.items():
        total += int.from_bytes(hashlib.sha256(f"{name}\0{commit.lower()}".encode()).digest(), "big")
    return format(total % _DIGEST_MODULUS, "064x")


def fetched_digest(refs: Refs, peeled: Refs) -> str:
    """The digest `fold_listed` makes of a listing, of the branches and tags fetched."""
    return fold_listed(None, _commits(refs, peeled))


@dataclass(frozen=True)
class Verified:
    objects: int  # in the pack
    commits: int  # reached from the refs through the pack
    index: Path  # the pack's index (git's .idx v2), kept to check later bundles against


def header(refs: Refs, prerequisites: Iterable[str] = ()) -> bytes:
    """The bundle header for `refs` (HEAD first, then by name) over `prerequisites` (commits the reader has)."""
    lines = [SIGNATURE]
    # `-<id> <comment>`: the space stays when the comment is empty (gitformat-bundle's grammar; readers split on it)
    lines += [b"-%s \n" % sha.encode() for sha in sorted(set(prerequisites))]
    ordered = sorted(refs.items(), key=lambda item: (item[0] != "HEAD", item[0]))
    lines += [b"%s %s\n" % (sha.encode(), name.encode()) for name, sha in ordered]
    return b"".join(lines) + b"\n"


def parse_header(read: Callable[[], bytes]) -> tuple[Refs, list[str]]:
    """(refs, prerequisites) from a bundle's header, `read` giving one line at a time (`readline`)."""
    if read() != SIGNATURE:
        raise Incomplete("not a v2 git bundle")
    refs: Refs = {}
    prerequisites: list[str] = []
    while True:
        line = read()
        if line in (b"\n", b""):
            if line == b"":
                raise Incomplete("the bundle ends in its header")
            return refs, prerequisites
        text = line.rstrip(b"\n").decode()
        if text.startswith("-"):
            prerequisites.append(text[1:].split(" ", 1)[0])
        else:
            sha, _, name = text.partition(" ")
            refs[name] = sha


def digest(refs: Refs) -> str:
    """A short name for a set of refs (equal refs, equal digest): what a bundle's refs.json hashes to."""
    return hashlib.sha256(refs_json(refs)).hexdigest()


def refs_json(refs: Refs, peeled: Refs | None = None) -> bytes:
    """refs.json: every ref and its object, and for annotated tags the commit they name (`peeled`)."""
    body = {"refs": dict(sorted(refs.items())), "peeled": dict(sorted((peeled or {}).items()))}
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def pack_objects(path: Path) -> int:
    """How many objects a pack file says it holds (its header)."""
    with path.open("rb") as fh:
        head = fh.read(12)
    if len(head) < 12 or head[:4] != b"PACK":
        raise Incomplete("the pack has no pack header")
    return int.from_bytes(head[8:12], "big")


def open_index(path: Path) -> PackIndex:
    return load_pack_index(str(path), DEFAULT_OBJECT_FORMAT)


def in_any(indexes: list[PackIndex]) -> Callable[[str], bool]:
    """Whether an object is in one of the earlier bundles' packs (their indexes)."""

    def known(sha: str) -> bool:
        for index in indexes:
            try:
                index.object_offset(ObjectID(sha.encode()))
                return True
            except KeyError:
                continue
        return False

    return known


def verify(pack_path: Path, refs: Refs, *, known: Callable[[str], bool] | None = None) -> Verified:
    """Check the pack at `pack_path` as a bundle of `refs` (see the module's text); Incomplete if it is not one.
    Writes the pack's index beside it (`.idx`)."""
    index_path = pack_path.with_suffix(".idx")
    try:
        data = PackData(str(pack_path), DEFAULT_OBJECT_FORMAT)
    except (AssertionError, OSError) as exc:
        raise Incomplete(f"the pack cannot be read: {exc}") from None
    try:
        data.check()  # the pack's own trailing checksum
        data.create_index(str(index_path), version=2)  # every object hashed, every delta resolved
    except Exception as exc:  # a damaged or thin pack: dulwich raises several kinds
        data.close()
        raise Incomplete(f"the pack is damaged or incomplete: {type(exc).__name__}: {exc}") from None
    pack = Pack.from_objects(data, open_index(index_path))
    try:
        commits = _walk(pack, refs.values(), known or (lambda _sha: False))
        return Verified(len(data), commits, index_path)
    finally:
        pack.close()


def _walk(pack: Pack, starts: Iterable[str], known: Callable[[str], bool]) -> int:
    """Follow every object the refs need; raise Incomplete at the first one neither here nor `known`."""
    todo = list(dict.fromkeys(starts))
    seen: set[str] = set()
    commits = 0

    def here(sha: str) -> bool:
        return ObjectID(sha.encode()) in pack

    def present(sha: str) -> bool:
        return here(sha) or known(sha)

    while todo:
        sha = todo.pop()
        if sha in seen:
            continue
        seen.add(sha)
        if not here(sha):
            if known(sha):
                continue  # in an earlier bundle, whose own check covered what lies below it
            raise Incomplete(f"object {sha} is missing")
        type_num, raw = pack.get_raw(ObjectID(sha.encode()))
        if type_num == Commit.type_num:
            commits += 1
            for line in raw.split(b"\n\n", 1)[0].split(b"\n"):
                if line.startswith((b"tree ", b"parent ")):
                    todo.append(line.split(b" ", 1)[1].decode())
        elif type_num == Tree.type_num:
            for _name, mode, child in parse_tree(raw, 20):
                if mode == GITLINK:
                    continue
                child_hex = child.decode()  # parse_tree gives hex ids
                if mode == DIRECTORY:
                    todo.append(child_hex)
                elif child_hex not in seen and not present(child_hex):
                    raise Incomplete(f"blob {child_hex} is missing")
                else:
                    seen.add(child_hex)
        elif type_num == Tag.type_num:
            target = raw.split(b"\n", 1)[0]
            if not target.startswith(b"object "):
                raise Incomplete(f"tag {sha} names no object")
            todo.append(target[7:].decode())
    return commits


class Joined(io.RawIOBase):
    """`head` followed by a file's bytes, as one readable and seekable file: the bundle on its way up
    (`gitdata._upload` reads it in parts), never written out whole."""

    def __init__(self, head: bytes, body: BinaryIO) -> None:
        super().__init__()
        self._head = head
        self._body = body
        self._position = 0
        body.seek(0, io.SEEK_END)
        self.size = len(head) + body.tell()
        body.seek(0)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, start + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self._head[self._position : self._position + len(view)]  # empty past the head
        self._body.seek(max(0, self._position - len(self._head)))
        chunk += self._body.read(len(view) - len(chunk))
        view[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)
