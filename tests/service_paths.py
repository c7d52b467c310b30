"""Hostile proxy paths (as a client would type them after /service/v1/proxy/{provider}/{end_user}/).

Each must be refused whether or not the gateway percent-decodes the path before the function sees it
(the local gateway does, like many proxies; API Gateway passes the raw path), so every entry stays
hostile in both forms. Shared by the unit tests and the end-to-end test."""

PATH_ESCAPES = [
    "https://evil.example/x",
    "http://127.0.0.1:1/",
    "HTTPS://EVIL.EXAMPLE/",
    "file:///etc/passwd",
    "https:%2f%2fevil.example/",
    "/evil.example/x",  # becomes //evil.example after the proxy prefix
    "//127.0.0.1:7990/rest/oauth2/latest/token",
    "%2F%2Fevil.example",
    "repositories/../../site/oauth2/access_token",
    "repositories/acme/../../../oauth2",
    "repositories/acme/web-app/..",
    "./repositories",
    "..;/oauth2",
    "....//x",
    "%2e%2e/%2e%2e/site/oauth2/access_token",
    ".%2e/x",
    "%2e./x",
    "repositories%2f..%2f..%2fsite",
    "repositories/%2e%2e%2f%2e%2e%2fsite%2foauth2%2faccess_token",
    "%252e%252e/x",
    ".%252e/x",
    "..%5c..%5cevil",
    "%5c%5cevil.example/x",
    "\\\\evil.example\\x",
    "repositories\\..\\oauth2",
    "site/oauth2/access_token",
    "rest/oauth2/latest/token",
    "repositories/acme//evil",
    "user%00",
    "repositories%0d%0aHost:evil",
    "repositories%09/x",
    "repositories%3fnext=https://evil.example",
    "repositories%23/../x",
]
