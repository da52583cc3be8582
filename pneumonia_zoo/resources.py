"""Where the installed package finds its files, and how much CPU this process may really use.

Templates, static files, sample images and the starter model are package data, read through
`importlib.resources`, so a non-editable `pip install .` serves from any working directory.
"""

import os
from importlib.resources import files
from pathlib import Path

PACKAGE_ROOT = Path(str(files("pneumonia_zoo")))
TEMPLATES_DIR = PACKAGE_ROOT / "serving" / "templates"
STATIC_DIR = PACKAGE_ROOT / "serving" / "static"
REPORT_TEMPLATES_DIR = PACKAGE_ROOT / "tracking" / "templates"
SAMPLE_IMAGES_DIR = PACKAGE_ROOT / "assets" / "sample_images"
STARTER_DIR = PACKAGE_ROOT / "assets" / "starter"


def _cgroup_cpu_quota() -> float | None:
    """CPUs allowed by a cgroup v2 quota (containers: `docker run --cpus`, Container Apps)."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this process can actually run on: affinity mask and cgroup quota, not os.cpu_count()."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, int(quota)))
    return max(1, count)
