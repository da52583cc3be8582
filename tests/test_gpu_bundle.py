"""results/gpu_bundle.py and results/gpu_run.sh, the parts that need no network and no GPU: every wheel the
bundle fetches is pinned, and the runner refuses a bundle whose parts did not all arrive."""

import importlib.util
import os
import subprocess
from pathlib import Path

from tests.conftest import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "results"


def bundle_module():
    spec = importlib.util.spec_from_file_location("gpu_bundle", RESULTS / "gpu_bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_wheel_of_the_bundle_is_pinned_by_the_lock() -> None:
    bundle = bundle_module()
    for names in (bundle.MISSING_ON_GPU, bundle.SMOKE_ONLY, bundle.LITE_WEIGHTS):
        requirements = bundle.pinned(names)
        assert [r.split("==")[0] for r in requirements] == list(names)
        assert all(r.split("==")[1] for r in requirements)
    assert set(bundle.SMOKE_ONLY) <= set(bundle.MISSING_ON_GPU)


def test_the_runner_refuses_a_bundle_with_a_part_missing(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / ".gpu" / "p02").mkdir(parents=True)  # p01 never arrived
    (checkout / ".gpu" / "p02" / "bundle.tar.part").write_bytes(b"half of it")
    (checkout / ".gpu" / "p02" / "bundle.sha256").write_text("0" * 64)
    env = os.environ | {"OUT": str(tmp_path / "out"), "PARTS": str(tmp_path / "parts")}
    result = subprocess.run(
        ["bash", str(RESULTS / "gpu_run.sh")],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stdout.splitlines()[0].startswith("the bundle is incomplete or damaged")
    assert (tmp_path / "parts" / "p02" / "bundle.tar.part").is_file()  # kept for the next call
