"""Errors a user can fix; the CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""

    exit_code = 1


class MissingWeightsError(UserError):
    """Pretrained weights are neither cached nor downloadable."""

    exit_code = 2
