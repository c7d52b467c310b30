"""SSH keys with access to one repository: Cloud's deploy keys and Data Center's repository access keys.

- Cloud ``/2.0/repositories/{workspace}/{repo_slug}/deploy-keys[/{key_id}]``: list, add (POST answers 200 with the
  key), read, relabel (PUT: the same key, a new label), delete. A deploy key reads the repository. Only the
  repository's admins manage them, with an OAuth token carrying ``repository:admin``: a token without the scope
  gets 403 naming the scopes, a user who is no admin 403 (404 for a repository they cannot see).
- Data Center ``/rest/keys/{1.0|latest}/projects/{projectKey}/repos/{repositorySlug}/ssh[/{keyId}]`` (and
  ``/users/{userSlug}/repos/...`` for personal repositories): a page of access keys, add (``{"key": {"text",
  "label"}, "permission": "REPO_READ" | "REPO_WRITE"}``, 201), read, revoke (204, also when there was none). A
  token with ``REPO_ADMIN`` and a repository admin, else 401 (``AuthorisationException``, as Data Center answers a
  missing permission). An SSH key is one object per key text: granted to a second repository it keeps its id, and
  granted again to the same repository its permission is updated.

Keys are checked as Bitbucket checks them: one OpenSSH public key line (algorithm, base64 key whose first field
names the same algorithm, optional comment); anything else - a private key, a truncated line - is a 400. Cloud
refuses a key already on the repository (400). Git over SSH is not emulated: a key is recorded, never used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass, field
from datetime import datetime

from werkzeug.wrappers import Response

from . import cloud, control, datacenter
from .models import DC, BadRequest, NotFound, Repository, iso, now
from .web import Ctx, Routes, json_response

cloud_routes, dc_routes = Routes(), Routes()  # added to each flavour's routes by server.py
control_routes = Routes()  # added to the control API by server.py

DC_PERMISSIONS = ("REPO_READ", "REPO_WRITE")
NO_SUCH_KEY = "com.atlassian.bitbucket.ssh.NoSuchSshKeyException"
_ALGORITHM_TYPES = {  # Data Center's names for them
    "ssh-rsa": "RSA",
    "ssh-ed25519": "ED25519",
    "ecdsa-sha2-nistp256": "ECDSA",
    "ecdsa-sha2-nistp384": "ECDSA",
    "ecdsa-sha2-nistp521": "ECDSA",
    "sk-ssh-ed25519@openssh.com": "ED25519_SK",
    "sk-ecdsa-sha2-nistp256@openssh.com": "ECDSA_SK",
}


@dataclass(slots=True)
class DeployKey:
    id: int
    text: str  # "algorithm base64" as given, without the comment
    comment: str
    label: str
    permission: str  # Cloud: always read; DC: REPO_READ | REPO_WRITE
    created_at: datetime = field(default_factory=now)


@dataclass(frozen=True)
class PublicKey:
    algorithm: str
    blob: bytes
    comment: str

    @property
    def text(self) -> str:
        return f"{self.algorithm} {base64.b64encode(self.blob).decode()}"

    @property
    def fingerprint(self) -> str:
        return base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")

    @property
    def bits(self) -> int:
        if self.algorithm == "ssh-rsa":
            fields = _fields(self.blob)
            return len(fields[2].lstrip(b"\0")) * 8 if len(fields) > 2 else 0
        return {"ecdsa-sha2-nistp384": 384, "ecdsa-sha2-nistp521": 521}.get(self.algorithm, 256)


def _fields(blob: bytes) -> list[bytes]:
    """The length-prefixed fields of an SSH key blob (RFC 4253 section 6.6)."""
    out, at = [], 0
    while at < len(blob):
        if at + 4 > len(blob):
            raise ValueError("truncated")
        (size,) = struct.unpack(">I", blob[at : at + 4])
        if at + 4 + size > len(blob):
            raise ValueError("truncated")
        out.append(blob[at + 4 : at + 4 + size])
        at += 4 + size
    return out


def parse(line: object) -> PublicKey:
    """An OpenSSH public key line, or BadRequest saying what is wrong."""
    if not isinstance(line, str) or not line.strip():
        raise BadRequest("A key is required.", field="key")
    if "PRIVATE KEY" in line:
        raise BadRequest("This is a private key: add the public key (the .pub file).", field="key")
    parts = line.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in _ALGORITHM_TYPES:
        raise BadRequest("The key is not a supported SSH public key.", field="key")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        fields = _fields(blob)
    except (binascii.Error, ValueError):
        raise BadRequest("The key is not a valid SSH public key (its base64 part is damaged).", field="key") from None
    if not fields or fields[0].decode(errors="replace") != parts[0]:
        raise BadRequest("The key's type does not match its content.", field="key")
    return PublicKey(parts[0], blob, parts[2].strip() if len(parts) > 2 else "")


def _next_id(ctx: Ctx) -> int:
    ids = ctx.backend._ids
    ids["deploy_key"] = ids.get("deploy_key", 0) + 1
    return ids["deploy_key"]


def _find(repo: Repository, key_id: str | int) -> DeployKey:
    try:
        found = repo.deploy_keys.get(int(key_id))
    except ValueError:
        found = None
    if found is None:
        raise NotFound(f"No access key {key_id} on {repo.full_name}.", entity="key", ident=str(key_id))
    return found


# ---------------------------------------- Cloud
def _cloud_body(ctx: Ctx, repo: Repository, key: DeployKey) -> dict:
    return {
        "type": "deploy_key",
        "id": key.id,
        "key": key.text,
        "label": key.label,
        "comment": key.comment,
        "created_on": iso(key.created_at),
        "added_on": iso(key.created_at),
        "last_used": None,
        "repository": cloud.repo_condensed(ctx, repo),
        "links": {"self": {"href": f"{ctx.api}/repositories/{repo.full_name}/deploy-keys/{key.id}"}},
    }


def _cloud_repo(ctx: Ctx, workspace: str, repo_slug: str) -> Repository:
    token = cloud.authenticate(ctx, "repository:admin")
    return cloud._repo(ctx, workspace, repo_slug, token, "admin")


CLOUD_KEYS = "/2.0/repositories/<workspace>/<repo_slug>/deploy-keys"


@cloud_routes.route(CLOUD_KEYS)
def cloud_list(ctx: Ctx, workspace: str, repo_slug: str) -> Response:
    with ctx.backend.lock:
        repo = _cloud_repo(ctx, workspace, repo_slug)
        keys = sorted(repo.deploy_keys.values(), key=lambda k: k.id)
        return cloud.paginate(ctx, keys, lambda k: _cloud_body(ctx, repo, k), searchable=False)


@cloud_routes.route(CLOUD_KEYS, methods=("POST",))
def cloud_add(ctx: Ctx, workspace: str, repo_slug: str) -> Response:
    body = ctx.json_body()
    with ctx.backend.lock:
        repo = _cloud_repo(ctx, workspace, repo_slug)
        key = parse(body.get("key"))
        if any(k.text == key.text for k in repo.deploy_keys.values()):
            raise BadRequest("Someone has already added that access key to this repository.", field="key")
        label = body.get("label")
        if label is not None and not isinstance(label, str):
            raise BadRequest("label must be a string.", field="label")
        added = DeployKey(_next_id(ctx), key.text, key.comment, label or "", "read")
        repo.deploy_keys[added.id] = added
        return cloud.respond(ctx, _cloud_body(ctx, repo, added))


@cloud_routes.route(CLOUD_KEYS + "/<key_id>", methods=("GET", "PUT", "DELETE"))
def cloud_item(ctx: Ctx, workspace: str, repo_slug: str, key_id: str) -> Response:
    with ctx.backend.lock:
        repo = _cloud_repo(ctx, workspace, repo_slug)
        key = _find(repo, key_id)
        if ctx.request.method == "DELETE":
            del repo.deploy_keys[key.id]
            return Response(status=204)
        if ctx.request.method == "PUT":
            body = ctx.json_body()
            if "key" in body and parse(body["key"]).text != key.text:
                raise BadRequest("The key cannot change: add the new key and delete this one.", field="key")
            if isinstance(body.get("label"), str):
                key.label = body["label"]
        return cloud.respond(ctx, _cloud_body(ctx, repo, key))


# ---------------------------------------- Data Center
def _dc_body(ctx: Ctx, repo: Repository, key: DeployKey) -> dict:
    parsed = parse(key.text)
    return {
        "key": {
            "id": key.id,
            "text": key.text + (f" {key.comment}" if key.comment else ""),
            "label": key.label,
            "algorithmType": _ALGORITHM_TYPES[parsed.algorithm],
            "bitLength": parsed.bits,
            "fingerprint": parsed.fingerprint,
        },
        "repository": datacenter.repository(ctx, repo),
        "permission": key.permission,
    }


def _dc_repo(ctx: Ctx, values: dict) -> Repository:
    token = datacenter.authenticate(ctx, "REPO_ADMIN")
    return datacenter._repo(ctx, token, values, "admin")


def _dc_key_id(ctx: Ctx, text: str) -> int:
    """Data Center's SSH key object for ``text``: the id it already has on any repository, else a new one."""
    for repo in ctx.backend.list_repos(DC):
        for key in repo.deploy_keys.values():
            if key.text == text:
                return key.id
    return _next_id(ctx)


DC_KEYS = "/rest/keys/<any('1.0', 'latest'):keys_version>"


def dc_route(suffix: str = "", methods: tuple[str, ...] = ("GET",)):  # type: ignore[no-untyped-def]
    def deco(fn):  # type: ignore[no-untyped-def]
        dc_routes.route(f"{DC_KEYS}/projects/<project_key>/repos/<repository_slug>/ssh{suffix}", methods)(fn)
        dc_routes.route(f"{DC_KEYS}/users/<user_slug>/repos/<repository_slug>/ssh{suffix}", methods)(fn)
        return fn

    return deco


@dc_route()
def dc_list(ctx: Ctx, keys_version: str, **values: str) -> Response:
    with ctx.backend.lock:
        repo = _dc_repo(ctx, values)
        keys = sorted(repo.deploy_keys.values(), key=lambda k: k.id)
        if ctx.request.args.get("filter"):
            keys = [k for k in keys if ctx.request.args["filter"].lower() in k.label.lower()]
        return datacenter.page(ctx, keys, lambda k: _dc_body(ctx, repo, k))


@dc_route(methods=("POST",))
def dc_add(ctx: Ctx, keys_version: str, **values: str) -> Response:
    body = ctx.json_body()
    with ctx.backend.lock:
        repo = _dc_repo(ctx, values)
        raw = body.get("key")
        if not isinstance(raw, dict):
            raise BadRequest('The key is required: {"key": {"text": "ssh-ed25519 ..."}}.', field="key")
        key = parse(raw.get("text"))
        permission = body.get("permission", "REPO_READ")
        if permission not in DC_PERMISSIONS:
            raise BadRequest(f"permission must be one of {', '.join(DC_PERMISSIONS)}.", field="permission")
        label = raw.get("label") if isinstance(raw.get("label"), str) else key.comment
        existing = next((k for k in repo.deploy_keys.values() if k.text == key.text), None)
        if existing is not None:
            existing.permission = permission
            added = existing
        else:
            added = DeployKey(_dc_key_id(ctx, key.text), key.text, key.comment, label, permission)
            repo.deploy_keys[added.id] = added
        return json_response(_dc_body(ctx, repo, added), 201)


@dc_route("/<key_id>", methods=("GET", "DELETE"))
def dc_item(ctx: Ctx, keys_version: str, key_id: str, **values: str) -> Response:
    with ctx.backend.lock:
        repo = _dc_repo(ctx, values)
        if ctx.request.method == "DELETE":
            if key_id.isdigit():
                repo.deploy_keys.pop(int(key_id), None)
            return Response(status=204)
        try:
            key = _find(repo, key_id)
        except NotFound as exc:  # its own exception name, which datacenter.render_error does not know
            return json_response(datacenter.errors_body(exc.message, NO_SUCH_KEY), 404)
        return json_response(_dc_body(ctx, repo, key))


# ---------------------------------------- control API
@control_routes.route(control.REPO + "/deploy-keys", methods=("GET", "DELETE"))
def control_keys(ctx: Ctx, flavor: str, owner: str, slug: str) -> Response:
    """The repository's keys, as its admin sees them in Bitbucket's settings; DELETE removes them all (an admin
    deleting them by hand: what the reconciler repairs)."""
    _, repo = control._repo(ctx, flavor, owner, slug)
    with ctx.backend.lock:
        if ctx.request.method == "DELETE":
            repo.deploy_keys.clear()
        keys = sorted(repo.deploy_keys.values(), key=lambda k: k.id)
        return json_response([{"id": k.id, "key": k.text, "label": k.label, "permission": k.permission} for k in keys])
