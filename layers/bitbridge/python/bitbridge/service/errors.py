"""The service API's refusals: each carries a stable machine-readable `code` beside its HTTP status."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A refusal to answer as `{"error": {"code", "message", ...extra}}` with `status`."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


def bad_request(message: str, code: str = "invalid_request") -> ServiceError:
    return ServiceError(400, code, message)
