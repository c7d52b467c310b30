"""The emulator's HTML: one small layout (inline CSS, no external assets, a mobile viewport, a way back) for the
OAuth consent and error pages, and a minimal repository page at each repository's ``links.html`` address, where
Bitbucket's web UI would show it: Cloud ``/{workspace}/{slug}``, Data Center ``/projects/{KEY}/repos/{slug}/browse``
and ``/users/{user}/repos/{slug}/browse``. Every Bitbucket string is escaped."""

from __future__ import annotations

from html import escape
from urllib.parse import urlsplit

from werkzeug.wrappers import Request, Response

from .models import CLOUD, DC, NotFound, Repository
from .web import Ctx, Routes, html_response

cloud_routes = Routes()
dc_routes = Routes()

_CSS = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:#172b4d;background:#f4f5f7}
header{background:#0052cc;color:#fff;padding:.75rem 1rem;display:flex;gap:.75rem;align-items:center;flex-wrap:wrap}
header .brand{font-weight:600}
header .tag{font-size:.75rem;background:rgba(255,255,255,.2);border-radius:3px;padding:0 .4rem}
main{max-width:48rem;margin:1.5rem auto;padding:0 1rem}
.card{background:#fff;border-radius:6px;box-shadow:0 1px 2px rgba(9,30,66,.25);padding:1.25rem 1.5rem}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 .75rem;overflow-wrap:anywhere}
h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
p,li,dd,td{overflow-wrap:anywhere}
.crumbs{font-size:.875rem;color:#5e6c84;margin:0 0 .5rem;overflow-wrap:anywhere}
.badge{display:inline-block;font-size:.75rem;font-weight:600;text-transform:uppercase;border-radius:3px;
padding:0 .4rem;background:#dfe1e6;color:#42526e;vertical-align:middle}
.muted{color:#5e6c84}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:1rem 0}
dt{color:#5e6c84}dd{margin:0}
code,pre{font-family:SFMono-Regular,Consolas,"Liberation Mono",Menlo,monospace;font-size:.875rem}
pre{background:#f4f5f7;border-radius:3px;padding:.5rem .75rem;white-space:pre-wrap;overflow-wrap:anywhere;margin:0}
table{width:100%;border-collapse:collapse;font-size:.9rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #ebecf0;vertical-align:top}
th{color:#5e6c84;font-weight:600}
ul.scopes{padding-left:1.25rem}
label{display:block;margin:1rem 0 .25rem;font-weight:600}
select{font:inherit;padding:.4rem;max-width:100%;width:100%}
.actions{display:flex;gap:.75rem;flex-wrap:wrap;margin-top:1.25rem}
button{font:inherit;border:0;border-radius:3px;padding:.5rem 1rem;cursor:pointer;background:#dfe1e6;color:#172b4d}
button.primary{background:#0052cc;color:#fff}
a{color:#0052cc}
.back{display:inline-block;margin-top:1.25rem}
@media (max-width:30rem){main{margin:1rem auto}.card{padding:1rem}th.optional,td.optional{display:none}}
"""

_LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{css}</style></head>
<body><header><span class="brand">{brand}</span><span class="tag">emulator</span></header>
<main><div class="card">{body}</div></main></body></html>"""

_BRANDS = {CLOUD: "Bitbucket", DC: "Bitbucket Data Center"}


def e(value: object) -> str:
    """Escape for HTML text and quoted attribute values."""
    return escape("" if value is None else str(value), quote=True)


def layout(title: str, body: str, flavor: str = CLOUD, status: int = 200) -> Response:
    """A whole page. ``title`` is plain text (escaped here); ``body`` is HTML built with ``e()``."""
    return html_response(_LAYOUT.format(title=e(title), css=_CSS, brand=e(_BRANDS[flavor]), body=body), status)


def back_link(request: Request | None, text: str = "Back") -> str:
    """A way back: the page that sent the browser here (an http(s) Referer), else the browser's history."""
    referer = request.headers.get("Referer", "") if request is not None else ""
    parts = urlsplit(referer)
    if parts.scheme in ("http", "https") and parts.netloc and referer != (request.url if request else ""):
        return f'<a class="back" href="{e(referer)}">&larr; {e(text)}</a>'
    return f'<a class="back" href="javascript:history.back()">&larr; {e(text)}</a>'


def error_page(
    title: str, message: str, status: int = 400, *, flavor: str = CLOUD, request: Request | None = None
) -> Response:
    body = f"<h1>{e(title)}</h1><p>{e(message)}</p>{back_link(request)}"
    return layout(title, body, flavor, status)


# ---------------------------------------- repository pages
def _branches_table(repo: Repository, limit: int = 10) -> str:
    recent = sorted(repo.branches.values(), key=lambda r: (r.date, r.name), reverse=True)[:limit]
    rows = "".join(
        f"<tr><td>{e(ref.name)}</td><td><code>{e(ref.target[:7])}</code></td>"
        f'<td class="optional">{e(ref.date.strftime("%Y-%m-%d %H:%M"))} UTC</td></tr>'
        for ref in recent
    )
    more = len(repo.branches) - len(recent)
    extra = f'<p class="muted">and {more} more</p>' if more > 0 else ""
    return (
        "<h2>Recently updated branches</h2><table><thead><tr><th>Branch</th><th>Commit</th>"
        f'<th class="optional">Updated</th></tr></thead><tbody>{rows}</tbody></table>{extra}'
    )


def _repository_page(ctx: Ctx, repo: Repository, crumbs: list[str], clone_url: str, facts: list[tuple]) -> Response:
    visibility = "Private" if repo.is_private else "Public"
    open_prs = sum(1 for p in repo.pull_requests.values() if p.state == "OPEN")
    description = f"<p>{e(repo.description)}</p>" if repo.description else '<p class="muted">No description.</p>'
    details = [
        ("Default branch", repo.default_branch),
        *facts,
        ("Branches", len(repo.branches)),
        ("Tags", len(repo.tags)),
        ("Open pull requests", open_prs),
    ]
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in details)
    body = (
        f'<p class="crumbs">{" / ".join(e(c) for c in crumbs)}</p>'
        f'<h1>{e(repo.name)} <span class="badge">{visibility}</span></h1>{description}<dl>{dl}</dl>'
        f"<h2>Clone</h2><pre>git clone {e(clone_url)}</pre>{_branches_table(repo)}{back_link(ctx.request)}"
    )
    return layout(f"{repo.name} — {' / '.join(crumbs)}", body, repo.flavor)


def _not_found_page(ctx: Ctx, flavor: str) -> Response:
    body = (
        "<h1>Repository not found</h1><p>This repository does not exist here, or it was renamed or deleted.</p>"
        f"{back_link(ctx.request)}"
    )
    return layout("Repository not found", body, flavor, 404)


@cloud_routes.route("/<workspace>/<repo_slug>")
def cloud_repository_page(ctx: Ctx, workspace: str, repo_slug: str) -> Response:
    if workspace == "2.0":  # an unknown API path: the API's JSON 404, not a web page
        raise NotFound("Resource not found")
    backend = ctx.backend
    with backend.lock:
        try:
            ws = backend.get_workspace(workspace)
            repo = backend.get_repo(CLOUD, ws.slug, repo_slug)
        except NotFound:
            return _not_found_page(ctx, CLOUD)
        facts = [("Language", repo.language or "—"), ("Last updated", repo.updated_on.strftime("%Y-%m-%d %H:%M UTC"))]
        crumbs = [ws.name, ws.project_name, repo.name]
        return _repository_page(ctx, repo, crumbs, f"{ctx.root}/{repo.full_name}.git", facts)


@dc_routes.route("/projects/<project_key>/repos/<repository_slug>/browse")
@dc_routes.route("/users/<user_slug>/repos/<repository_slug>/browse")
def dc_repository_page(
    ctx: Ctx, repository_slug: str, project_key: str | None = None, user_slug: str | None = None
) -> Response:
    backend = ctx.backend
    with backend.lock:
        try:
            project = backend.get_project(project_key or "~" + str(user_slug))
            repo = backend.get_repo(DC, project.key, repository_slug)
        except NotFound:
            return _not_found_page(ctx, DC)
        clone = f"{ctx.root}/scm/{repo.owner.lower()}/{repo.slug}.git"
        crumbs = ["Projects", project.name, repo.name]
        return _repository_page(ctx, repo, crumbs, clone, [])
