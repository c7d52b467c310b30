"""The SDK follows a proxied list's `next` link with the product's bitbridge key, so only on bitbridge's own
origin (what issue 23's point 12 asks of bitbridge itself, for the SDK that sends the key): a page whose
`next` points elsewhere stops with an error, and the other host never sees the key. Two real HTTP servers
on loopback: "bitbridge" answering one proxied page, and the host its `next` names."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bitbridge.client import Client, ServiceAPIError


def _serve(answer) -> tuple[ThreadingHTTPServer, list[dict]]:
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, "authorization": self.headers.get("Authorization")})
            body = json.dumps(answer(self.path)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture
def hosts() -> Iterator[tuple[str, list[dict], dict]]:
    elsewhere, elsewhere_seen = _serve(lambda path: {"values": [{"id": 99}]})
    other = f"http://127.0.0.1:{elsewhere.server_address[1]}"
    next_links: dict[str, str] = {}
    bitbridge, _ = _serve(lambda path: {"values": [{"id": 1}], "next": next_links.get("next")})
    yield f"http://127.0.0.1:{bitbridge.server_address[1]}", elsewhere_seen, {"other": other, "links": next_links}
    bitbridge.shutdown()
    elsewhere.shutdown()


def test_a_next_link_off_bitbridges_origin_is_not_followed_with_the_key(hosts):
    base, elsewhere_seen, where = hosts
    where["links"]["next"] = f"{where['other']}/service/v1/proxy/p/u/repositories?page=2"
    bb = Client(base, "bbk_0123456789abcdef." + "s" * 43)
    pages = bb.proxy.pages("p", "u", "repositories")
    assert next(pages) == {"id": 1}
    with pytest.raises(ServiceAPIError):
        next(pages)
    assert elsewhere_seen == []  # the key never went there


def test_a_next_link_on_bitbridges_origin_is_followed(hosts):
    base, _, where = hosts
    where["links"]["next"] = f"{base}/service/v1/proxy/p/u/repositories?page=2"
    bb = Client(base, "bbk_0123456789abcdef." + "s" * 43)
    pages = bb.proxy.pages("p", "u", "repositories")
    assert [next(pages), next(pages)] == [{"id": 1}, {"id": 1}]  # page 2 (this little server repeats itself)
