"""One exception family for everything that can go wrong with a request.

Each error knows its HTTP status and renders itself once, in the OpenAI error shape, so neither the
HTTP layer nor the library has to translate anything.
"""

from __future__ import annotations

import msgspec


class GatewayError(Exception):
    status: int = 500
    type: str = "internal_error"
    code: str | None = "internal_error"
    #: whether the router may try the same or another deployment after this error
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def to_json(self) -> bytes:
        return msgspec.json.encode(self.to_dict())

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.retry_after is None:
            return []
        return [(b"retry-after", str(max(1, round(self.retry_after))).encode())]


class InvalidRequestError(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationError(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFoundError(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class PayloadTooLargeError(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimitError(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    retryable = True


class UpstreamError(GatewayError):
    """The provider failed in a way the client cannot fix: 5xx, garbled body, dropped connection."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    retryable = True


class UpstreamTimeoutError(GatewayError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"
    retryable = True


class ServiceUnavailableError(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "service_unavailable"
    retryable = True


class UpstreamRequestError(GatewayError):
    """The provider rejected the request itself (4xx other than 429): retrying elsewhere will not help."""

    status = 400
    type = "invalid_request_error"
    code = "upstream_rejected_request"


def error_from_upstream(status: int, message: str, retry_after: float | None = None) -> GatewayError:
    """Map a provider's HTTP status to the error the client sees."""
    if status == 429:
        return RateLimitError(message, retry_after=retry_after)
    if status in (401, 403):
        # The gateway's provider credentials are wrong; the client cannot fix that, so it is a 502.
        return UpstreamError(f"provider rejected the gateway's credentials: {message}", code="upstream_auth_failed")
    if status == 408:
        return UpstreamTimeoutError(message)
    if status >= 500:
        err = UpstreamError(message, code=f"upstream_{status}")
        if retry_after is not None:
            err.retry_after = retry_after
        return err
    return UpstreamRequestError(message, status=status)


class ConfigurationError(GatewayError):
    """The gateway's own configuration cannot serve this request (raised at start-up where possible)."""

    status = 500
    type = "configuration_error"
    code = "configuration_error"
