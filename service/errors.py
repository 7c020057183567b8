"""Domain errors: each carries an HTTP status and a stable code, and one handler renders
them as ``{"code": ..., "message": ...}``."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """An expected failure a client can act on.

    ``code`` is stable (``dataset.label_column_missing``); ``message`` is one sentence
    naming the field, row or value and, where it helps, the fix.
    """

    status_code = 400

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status_code: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail:
            body["detail"] = self.detail
        return body


class InvalidInput(DomainError):
    status_code = 422


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class PayloadTooLarge(DomainError):
    status_code = 413


class ServiceUnavailable(DomainError):
    status_code = 503
