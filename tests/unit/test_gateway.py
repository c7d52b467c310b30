"""The local gateway speaks API Gateway HTTP API payload format 2.0, both ways."""

from __future__ import annotations

import base64

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from infra.local.gateway import Router, build_event, build_response
from infra.local.template import Route, load_template, routes


def _request(method: str, path: str, **kwargs) -> Request:
    return Request(EnvironBuilder(method=method, path=path, base_url="http://127.0.0.1:3000", **kwargs).get_environ())


def test_most_specific_route_wins_like_api_gateway():
    router = Router(routes(load_template()))
    route, params = router.match("POST", "/api/imports")
    assert route.function == "ImportKickoffFunction" and params == {}
    route, params = router.match("POST", "/api/imports/abc/cancel")
    assert route.function == "ApiFunction" and params == {"proxy": "imports/abc/cancel"}
    route, params = router.match("GET", "/auth/bitbucket-cloud/callback")
    assert (route.function, params) == ("OAuthCallbackFunction", {"provider": "bitbucket-cloud"})
    assert router.match("DELETE", "/health") is None
    assert router.match("GET", "/hooks/a/b") is None  # hooks accept POST only


def test_event_has_v2_shape_with_cookies_query_and_path_parameters():
    request = _request(
        "GET",
        "/auth/acme/authorize?return_to=%2Fdone&x=1&x=2",
        headers={"Cookie": "a=1; b=2", "X-Thing": "yes", "User-Agent": "pytest"},
    )
    route = Route("GET", "/auth/{provider}/authorize", "OAuthAuthorizeFunction")
    event = build_event(request, route, {"provider": "acme"}, b"")
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /auth/{provider}/authorize"
    assert event["rawQueryString"] == "return_to=%2Fdone&x=1&x=2"
    assert event["queryStringParameters"] == {"return_to": "/done", "x": "1,2"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"] and event["headers"]["x-thing"] == "yes"
    assert event["pathParameters"] == {"provider": "acme"}
    assert event["requestContext"]["http"]["method"] == "GET"
    assert event["requestContext"]["domainName"] == "127.0.0.1:3000"
    assert "body" not in event and event["isBase64Encoded"] is False


def test_json_bodies_are_text_and_binary_bodies_are_base64():
    route = Route("POST", "/hooks/{provider}/{subscription}", "WebhookReceiverFunction")
    raw = b'{"ok": true}'
    event = build_event(_request("POST", "/hooks/p/s", data=raw, content_type="application/json"), route, {}, raw)
    assert (event["body"], event["isBase64Encoded"]) == ('{"ok": true}', False)
    binary = b"\x00\xffdata"
    request = _request("POST", "/hooks/p/s", data=binary, content_type="application/octet-stream")
    event = build_event(request, route, {}, binary)
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == binary


def test_response_translation_handles_cookies_headers_and_base64():
    response = build_response(
        {
            "statusCode": 302,
            "headers": {"Location": "https://example.test/"},
            "cookies": ["s=1; HttpOnly", "t=2; Secure"],
            "body": base64.b64encode(b"\x01\x02").decode(),
            "isBase64Encoded": True,
        }
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "https://example.test/"
    assert response.headers.getlist("Set-Cookie") == ["s=1; HttpOnly", "t=2; Secure"]
    assert response.get_data() == b"\x01\x02"


def test_response_without_status_code_is_200_json():
    response = build_response({"hello": "world"})
    assert response.status_code == 200 and response.json == {"hello": "world"}
