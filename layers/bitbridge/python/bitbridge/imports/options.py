"""What an import copies beyond the repository, its refs, pull requests and issues: the request's `include` and
`exclude` lists of part names, parsed here and nowhere else (the kickoff, its handler and the service API all
call `parts`).

Each optional part has a default (PARTS). `include` turns parts on, `exclude` leaves them out; a request with
neither gets the defaults, so an import asked for as before copies what it did before. A name that is no part,
a name in both lists, or a list that is not a list of names is refused with a 400 naming it, before anything
is started. The answer is stored on each job as `options[part] = True | False` (a job made before a part
existed has no entry: off).

The old `comments` flag (parsed, stored and read by nothing, then refused) is refused with what replaced it.
"""

from __future__ import annotations

from typing import Any

from bitbridge.imports.jobs import ImportRequestError

#: Optional parts and whether an import copies them when the request does not say.
#: comments: pull-request comments (general, inline, replies; edited and deleted as Bitbucket marks them) and,
#:           on Cloud with the tracker on, issue comments.
#: activity: each pull request's activity timeline and its reviewers' review states.
#: commits:  each pull request's commits.
#: git:      every branch and tag as a verified git bundle, kept current on push (bitbridge.imports.gitdata).
PARTS: dict[str, bool] = {"comments": False, "activity": False, "commits": False, "git": True}
LISTS = ("include", "exclude")


def defaults() -> dict[str, bool]:
    return dict(PARTS)


def parts(body: dict[str, Any]) -> dict[str, bool]:
    """Which optional parts an import request asks for (every part named, True or False)."""
    if "comments" in body:
        raise ImportRequestError(
            'The `comments` flag was replaced by `include`: send `"include": ["comments"]` to copy pull-request '
            "comments (and Cloud issue comments); leave both out to import without them.",
            option="comments",
            replaced_by="include",
        )
    wanted = defaults()
    named: dict[str, list[str]] = {}
    for key in LISTS:
        given = body.get(key)
        if given is None:
            continue
        if not isinstance(given, list) or not all(isinstance(name, str) for name in given):
            raise ImportRequestError(f"`{key}` must be a list of names: {_known()}.", option=key)
        named[key] = given
    unknown = sorted({name for given in named.values() for name in given if name not in PARTS})
    if unknown:  # every unknown name of both lists in one answer
        where = [key for key, given in named.items() if any(name not in PARTS for name in given)]
        raise ImportRequestError(
            f"{' and '.join(f'`{key}`' for key in where)} {'names' if len(where) == 1 else 'name'} what an import "
            f"may copy: {_known()} "
            f"(not {', '.join(map(repr, unknown))}).",
            option=where[0],
            unknown=unknown,
        )
    both = sorted(set(named.get("include", [])) & set(named.get("exclude", [])))
    if both:
        raise ImportRequestError(
            f"{', '.join(map(repr, both))} is both in `include` and in `exclude`: name it in one of them.",
            option="include",
        )
    for name in named.get("include", []):
        wanted[name] = True
    for name in named.get("exclude", []):
        wanted[name] = False
    return wanted


def _known() -> str:
    return ", ".join(repr(name) for name in PARTS)
