"""The project's errors, by what went wrong, never by how it is answered.

Every layer raises these; the CLI prints one line and exits with `exit_code`, and the service maps
each type to an HTTP status in one table (`serving/errors.py`). No status code lives here.
"""


class ZooError(Exception):
    """A failure described by one sentence a user or operator can act on; no traceback is shown."""

    exit_code = 1


class UserError(ZooError):
    """A problem with the user's input or environment (the CLI's default for a refusal)."""


class InvalidInput(UserError):
    """A value, file or request that cannot be used as given."""

    exit_code = 2


class TooLarge(InvalidInput):
    """More bytes, pixels, files or fields than the limits allow."""


class UnsupportedMediaType(InvalidInput):
    """A request body that is not the kind the endpoint reads."""


class MalformedRequest(InvalidInput):
    """A request whose framing (multipart boundaries, parts) cannot be parsed."""


class NotFound(UserError):
    """A registry version, alias, run, sample or record that does not exist."""


class PackageRejected(UserError):
    """A model package that is missing, incomplete, or does not match its recorded hashes."""


class NeedsTorch(PackageRejected):
    """A version only PyTorch can run (no ONNX export, or the torch runtime asked for), in an
    installation without PyTorch (the default Docker image)."""


class Unsupported(ZooError):
    """Something this installation was built without (a heatmap that needs PyTorch in the default
    image): trying again will not help; another installation can."""


class MissingWeightsError(UserError):
    """Pretrained weights are neither cached nor downloadable."""

    exit_code = 2


class Unavailable(ZooError):
    """Something the request needs is not there right now: trying again later may work."""


class RegistryUnavailable(Unavailable):
    """The model registry (MLflow) could not be read."""


class NotReady(Unavailable):
    """No model is serving yet (loading, or no champion registered)."""


class AuditUnavailable(Unavailable):
    """An answer's audit record could not be committed (the database is down, full or too slow)."""


class AtCapacity(Unavailable):
    """Every budget or queue is full: the caller should retry after `retry_after_s`."""

    def __init__(
        self, message: str = "the service is at capacity: try again shortly", retry_after_s: int = 1
    ):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(Unavailable):
    """The work took longer than the deadline it was given."""

    retry_after_s = 1


class ClientTimeout(InvalidInput):
    """The client did not send what it announced in time (a stalled upload)."""
