"""How the service answers an error: one table from each domain error type to its HTTP status.

Everything below the routes raises the domain errors of `pneumonia_zoo.errors` and knows nothing of
HTTP; the app's one handler (app.py) looks the error's type up here and renders `{"detail": ...}` or
the error page. Only the dependencies that must answer by themselves (the API key, the admin token)
raise ServingError with their own status.
"""

from dataclasses import dataclass
from typing import Literal

from fastapi import HTTPException

from pneumonia_zoo.errors import (
    AtCapacity,
    ClientTimeout,
    DeadlineExceeded,
    InvalidInput,
    MalformedRequest,
    NotFound,
    NotReady,
    PackageRejected,
    RegistryUnavailable,
    TooLarge,
    Unavailable,
    Unsupported,
    UnsupportedMediaType,
    UserError,
    ZooError,
)

TIMEOUT_STATUS: Literal["timeout"] = "timeout"  # stands for the configured `settings.timeout_status`


class ServingError(HTTPException):
    """An answer a dependency gives by itself (401, 403): `detail` is a sentence the user can act on."""

    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)


@dataclass(frozen=True)
class Answer:
    status: int | Literal["timeout"]
    retry_after: bool = False  # Retry-After: the error's `retry_after_s`
    close: bool = False  # Connection: close: the rest of the body will not be read


# Looked up along the error's MRO, so a subclass answers as its nearest listed ancestor does
# (ImageTooLargeError is a TooLarge before it is an InvalidInput: 413).
ANSWERS: dict[type[ZooError], Answer] = {
    MalformedRequest: Answer(400),
    NotFound: Answer(404),
    ClientTimeout: Answer(408, close=True),  # the client stalled: its connection is not reused
    TooLarge: Answer(413),
    UnsupportedMediaType: Answer(415),
    InvalidInput: Answer(422),
    UserError: Answer(422),
    # A registered version the service cannot load (missing or altered files): the client cannot fix it.
    PackageRejected: Answer(503),
    # What this installation cannot do (a heatmap needing PyTorch in the default image): not the client's.
    Unsupported: Answer(501),
    AtCapacity: Answer(503, retry_after=True),
    DeadlineExceeded: Answer(TIMEOUT_STATUS, retry_after=True),
    RegistryUnavailable: Answer(503),
    NotReady: Answer(503),
    Unavailable: Answer(503),
}


@dataclass(frozen=True)
class HttpError:
    status: int
    detail: str
    headers: dict[str, str]


def answer_for(error_type: type[BaseException]) -> Answer | None:
    """The table's entry for the nearest listed class in `error_type`'s MRO; None when none is listed."""
    return next((ANSWERS[cls] for cls in error_type.__mro__ if cls in ANSWERS), None)


def http_error(error: ZooError, timeout_status: int) -> HttpError | None:
    """Status, body text and headers for `error`; None for one the table does not know (a bare
    ZooError), which is answered as an unexpected error."""
    answer = answer_for(type(error))
    if answer is None:
        return None
    headers = {}
    if answer.retry_after:
        headers["Retry-After"] = str(getattr(error, "retry_after_s", 1))
    if answer.close:
        headers["Connection"] = "close"
    status = answer.status if isinstance(answer.status, int) else timeout_status
    return HttpError(status, str(error), headers)
