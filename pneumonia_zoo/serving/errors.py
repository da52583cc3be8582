"""One error type for everything a client can get wrong, rendered as JSON or as a page."""

from fastapi import HTTPException


class ServingError(HTTPException):
    """A client-facing error: `detail` is a sentence the user can act on."""

    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)
