"""Git smart HTTP (clone and fetch) at Bitbucket's clone URLs, served by dulwich's upload-pack over each
repository's git objects and its branches and tags as they are when the request arrives.

- Cloud ``{cloud_url}/{workspace}/{repo_slug}.git``: an OAuth access token as the password of the user
  ``x-token-auth`` (HTTP Basic), the way Bitbucket Cloud takes access tokens for git; public repositories also
  clone without credentials.
- Data Center ``{dc_url}/scm/{project key}/{repo_slug}.git`` (``/scm/~user/...`` for personal repositories):
  ``Authorization: Bearer <token>``, or HTTP Basic with the token as the password (any user name, as clients that
  can only send Basic do).

A missing or wrong token gets 401 with a ``WWW-Authenticate: Basic`` challenge (how git knows to ask for
credentials); a token without the read scope 403; a repository the user cannot read 404 (Bitbucket hides it).
Pushing over git is not emulated (the control API's ``push`` makes commits): ``git-receive-pack`` gets 403.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
from typing import Any

from dulwich.refs import DictRefsContainer
from dulwich.repo import BaseRepo
from dulwich.server import Backend as GitBackend
from dulwich.server import UploadPackHandler
from dulwich.web import HTTPGitApplication
from werkzeug.wrappers import Response

from . import cloud, datacenter
from .models import CLOUD, DC, LEVELS, NotFound, Repository, Unauthorized
from .web import Ctx, Routes

cloud_routes, dc_routes = Routes(), Routes()  # added to each flavour's routes by server.py

CLOUD_GIT = "/<workspace>/<repo_slug>.git"
DC_GIT = "/scm/<project_key>/<repository_slug>.git"
_REALM = {CLOUD: "Bitbucket.org HTTP", DC: "Atlassian Bitbucket"}


class _Served(BaseRepo):
    """One repository as upload-pack sees it: its object store and a snapshot of its refs."""

    def __init__(self, repo: Repository) -> None:
        refs: dict[bytes, bytes] = {b"HEAD": b"ref: refs/heads/" + repo.default_branch.encode()}
        refs.update({b"refs/heads/" + name.encode(): ref.target.encode() for name, ref in repo.branches.items()})
        refs.update({b"refs/tags/" + name.encode(): ref.target.encode() for name, ref in repo.tags.items()})
        super().__init__(repo.git.store, DictRefsContainer(refs))  # type: ignore[arg-type]


class _UploadPack(UploadPackHandler):
    """git's upload-pack: a client need not ask for any capability. (dulwich's own handler requires side-band-64k,
    thin-pack and ofs-delta, which git's server never does: a client may ask for self-contained packs.)"""

    @classmethod
    def required_capabilities(cls) -> tuple[bytes, ...]:
        return ()


class _OneRepository(GitBackend):
    def __init__(self, served: _Served) -> None:
        self.served = served

    def open_repository(self, path: str) -> _Served:  # type: ignore[override]
        return self.served


def _basic(header: str) -> tuple[str, str] | None:
    if not header.lower().startswith("basic "):
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _token(flavor: str, header: str) -> str | None:
    """The access token a git client sent, the way the flavour accepts it (None: none, or not that way)."""
    if flavor == DC and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    basic = _basic(header)
    if basic is None:
        return None
    user, password = basic
    if flavor == CLOUD and user != "x-token-auth":
        return None
    return password or None


def _challenge(flavor: str, message: str) -> Response:
    headers = {"WWW-Authenticate": f'Basic realm="{_REALM[flavor]}"'}
    return Response(message + "\n", 401, headers=headers, content_type="text/plain")


def _authorise(ctx: Ctx, repo: Repository) -> Response | None:
    """None when the request may read ``repo`` over git, else the refusal."""
    header = ctx.request.headers.get("Authorization", "")
    if not header and ctx.flavor == CLOUD and not repo.is_private:
        return None  # public Cloud repositories clone anonymously
    raw = _token(ctx.flavor, header)
    if raw is None:
        return _challenge(ctx.flavor, "Authentication failed: give an access token.")
    try:
        token = ctx.backend.authenticate(ctx.flavor, raw)
    except Unauthorized:
        return _challenge(ctx.flavor, "Authentication failed: the access token is invalid, expired or revoked.")
    scoped = (
        cloud.has_scope(token.scopes, "repository")
        if ctx.flavor == CLOUD
        else datacenter.has_scope(token.scopes, "REPO_READ")
    )
    if not scoped:
        return Response("The access token may not read repositories.\n", 403, content_type="text/plain")
    if ctx.backend.permission(token.user, repo) < LEVELS["read"]:
        return _not_found()
    return None


def _not_found() -> Response:
    return Response("Repository not found.\n", 404, content_type="text/plain")


def _serve(ctx: Ctx, repo: Repository, service_path: str) -> Response:
    """Run dulwich's smart HTTP application for one request (upload-pack only) and return its answer."""
    request = ctx.request
    if request.args.get("service", "git-upload-pack") != "git-upload-pack" or service_path == "git-receive-pack":
        return Response(
            "Pushing over git is not emulated; use the control API's push.\n", 403, content_type="text/plain"
        )
    if service_path == "info/refs" and not request.args.get("service"):
        return Response("Only git's smart HTTP protocol is served.\n", 403, content_type="text/plain")
    denied = _authorise(ctx, repo)
    if denied is not None:
        return denied
    body = request.get_data()
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        body = gzip.decompress(body)
    environ = dict(request.environ)
    environ.update(
        PATH_INFO="/" + service_path, CONTENT_LENGTH=str(len(body)), QUERY_STRING=request.query_string.decode()
    )
    environ["wsgi.input"] = io.BytesIO(body)
    for key in ("HTTP_TRANSFER_ENCODING", "HTTP_CONTENT_ENCODING"):
        environ.pop(key, None)
    with ctx.backend.lock:  # the refs as they are now (objects are only ever added: no lock needed for them)
        served = _Served(repo)
    app = HTTPGitApplication(_OneRepository(served))
    app.handlers = {b"git-upload-pack": _UploadPack}
    answer: dict[str, Any] = {}
    written: list[bytes] = []  # dulwich writes through start_response's write() as well as yielding

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer.update(status=status, headers=headers)
        return written.append

    for chunk in app(environ, start_response):
        written.append(chunk)
    return Response(b"".join(written), int(answer["status"].split()[0]), headers=answer["headers"])


def _repository(ctx: Ctx, values: dict[str, str]) -> Repository:
    if ctx.flavor == CLOUD:
        return ctx.backend.get_repo(CLOUD, values["workspace"], values["repo_slug"])
    key = values["project_key"]
    project = ctx.backend.get_project(key if key.startswith("~") else key.upper())
    return ctx.backend.get_repo(DC, project.key, values["repository_slug"])


def _route(ctx: Ctx, service_path: str, **values: str) -> Response:
    try:
        repo = _repository(ctx, values)
    except NotFound:
        return _not_found()
    return _serve(ctx, repo, service_path)


@cloud_routes.route(CLOUD_GIT + "/info/refs")
@dc_routes.route(DC_GIT + "/info/refs")
def info_refs(ctx: Ctx, **values: str) -> Response:
    return _route(ctx, "info/refs", **values)


@cloud_routes.route(CLOUD_GIT + "/<any('git-upload-pack', 'git-receive-pack'):service>", methods=("POST",))
@dc_routes.route(DC_GIT + "/<any('git-upload-pack', 'git-receive-pack'):service>", methods=("POST",))
def service(ctx: Ctx, service: str, **values: str) -> Response:
    return _route(ctx, service, **values)
