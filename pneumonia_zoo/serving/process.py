"""The serving process's allocator and BLAS threads, set once at `pneumonia-zoo serve`'s start.

- glibc gives every thread that allocates its own arena (up to 8 per core); freed memory stays in
  whichever arena it came from, so a service with a decode pool, an inference thread and ONNX Runtime's
  threads holds far more than it uses after a burst. Two arenas (as the Docker image's MALLOC_ARENA_MAX)
  bound that. `mallopt` applies to arenas made from now on: this runs before any worker thread starts.
- NumPy's OpenBLAS starts one thread per core for every product. The service's products are small (the
  guard's whitening, a site head) and run while the decode threads and ONNX Runtime already use the
  cores; two BLAS threads then wait on each other. On a busy 2-core machine the guard on one image took
  0.3 ms with one BLAS thread and 8 ms with two.

An operator's own MALLOC_ARENA_MAX, OPENBLAS_NUM_THREADS or OMP_NUM_THREADS wins.
"""

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

ARENA_MAX = 2
BLAS_THREADS = 1
_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_malloc_arenas(arenas: int = ARENA_MAX) -> bool:
    """At most `arenas` glibc malloc arenas (unless MALLOC_ARENA_MAX is set); True when applied."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False  # glibc read it at start
    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    if mallopt is None or not mallopt(_M_ARENA_MAX, arenas):  # not glibc (musl, macOS): nothing to bound
        return False
    os.environ["MALLOC_ARENA_MAX"] = str(arenas)  # and for the processes this one starts
    return True


def limit_blas_threads(threads: int = BLAS_THREADS) -> bool:
    """At most `threads` BLAS threads (unless OPENBLAS_NUM_THREADS or OMP_NUM_THREADS is set)."""
    if "OPENBLAS_NUM_THREADS" in os.environ or "OMP_NUM_THREADS" in os.environ:
        return False
    import numpy  # noqa: F401  (loads OpenBLAS: threadpoolctl limits only the libraries already loaded)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")  # kept: not used as a context manager
    return True


def tune_serving_process() -> None:
    """Both, before the server starts its threads."""
    arenas, blas = limit_malloc_arenas(), limit_blas_threads()
    log.debug("malloc arenas bounded: %s; BLAS threads bounded: %s", arenas, blas)
