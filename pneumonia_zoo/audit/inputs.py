"""Kept inputs (opt-in, PHI): the uploaded bytes under a folder, named by their sha256, for N days.

A file's name is its content's sha256 and a suffix from its format: never the client's file name.
The same image sent twice is one file, whose age restarts at its last use; files older than the
retention are deleted by `purge` (the writer runs it at start and every hour). Records keep their
path after the file is gone: an export then says that it is no longer kept.
"""

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "DICOM": ".dcm"}
DAY_S = 86400.0


def sha256_of(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


class KeptInputs:
    def __init__(self, directory: Path, retention_days: float) -> None:
        self.directory = Path(directory).expanduser().resolve()
        self.retention_s = retention_days * DAY_S

    def path_for(self, sha256: str, input_format: str | None) -> Path:
        return self.directory / sha256[:2] / f"{sha256}{SUFFIXES.get(input_format or '', '.bin')}"

    def keep(self, data: bytes | bytearray | memoryview, sha256: str, input_format: str | None) -> Path:
        """Write the bytes (once; a later use only renews the file's age); returns the file's path."""
        path = self.path_for(sha256, input_format)
        if path.exists():
            os.utime(path)
            return path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Written aside, then renamed: a reader (an export) never sees half a file.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as output:
                output.write(data)
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    def purge(self, now: float | None = None) -> int:
        """Delete kept files older than the retention; returns how many."""
        if not self.directory.is_dir():
            return 0
        limit = (now if now is not None else time.time()) - self.retention_s
        removed = 0
        for path in self.directory.glob("*/*"):
            try:
                if path.is_file() and path.stat().st_mtime < limit:
                    path.unlink()
                    removed += 1
            except OSError:  # removed meanwhile (another worker purging): nothing to do
                continue
        if removed:
            log.info("deleted %d kept input(s) older than %.0f days", removed, self.retention_s / DAY_S)
        return removed
