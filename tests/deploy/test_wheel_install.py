"""`pip install .` (not editable) into a fresh venv, then `pneumonia-zoo register-starter` and
`pneumonia-zoo serve` from a folder that is not the repository: pages, static files, sample images and
the starter model must all come from the installed package (importlib.resources), not the checkout.

For speed the fresh venv gets the project alone (`--no-deps`, from a copy of its sources); its
dependencies are those of the test venv, seen through a .pth line. A .pth line adds a folder to
sys.path without processing the .pth files inside it, so the test venv's editable pneumonia_zoo is
not importable: only the fresh install is.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest

from tests.deploy.dockerfile_model import ROOT
from tests.servers import free_port, running

pytestmark = pytest.mark.slow


def test_a_non_editable_install_serves_from_any_folder(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: the build writes build/ and *.egg-info beside the sources
    shutil.copytree(
        ROOT / "pneumonia_zoo", source / "pneumonia_zoo", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)

    venv = tmp_path / "fresh"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "_test_venv_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("PNEUMONIA_ZOO_")
    } | {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    installed = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            str(source),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    shutil.rmtree(source)  # nothing of the sources is left to fall back on

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import json, pneumonia_zoo, pneumonia_zoo.resources as r\n"
            "from importlib.metadata import distribution\n"
            "d = distribution('pneumonia-zoo')\n"
            "print(json.dumps({'file': pneumonia_zoo.__file__, 'direct_url': d.read_text('direct_url.json'),"
            " 'files': [str(f) for f in d.files]}))",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=elsewhere,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    info = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(info["file"]).is_relative_to(site), info["file"]
    assert '"editable": true' not in (info["direct_url"] or ""), info["direct_url"]
    files = "\n".join(info["files"])
    for expected in (
        "pneumonia_zoo/serving/templates/index.html",
        "pneumonia_zoo/serving/static/style.css",
        "pneumonia_zoo/assets/starter/model.json",
        "pneumonia_zoo/assets/sample_images/person38_virus_84.jpeg",
    ):
        assert expected in files, f"{expected} is not installed"

    registered = subprocess.run(
        [str(venv / "bin" / "pneumonia-zoo"), "register-starter"],
        capture_output=True,
        text=True,
        env=env,
        cwd=elsewhere,
        timeout=300,
    )
    assert registered.returncode == 0 and "version 1" in registered.stdout, (
        registered.stdout + registered.stderr
    )

    port = free_port()
    command = [str(venv / "bin" / "pneumonia-zoo"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/readyz", tmp_path / "serve.log", timeout=180, env=env, cwd=elsewhere):
        assert httpx.get(f"{url}/readyz", timeout=10).json()["model"]["version"] == "1"
        home = httpx.get(f"{url}/", timeout=30)
        assert home.status_code == 200 and "<html" in home.text.lower()
        assert httpx.get(f"{url}/static/style.css", timeout=30).status_code == 200
        sample = ROOT / "pneumonia_zoo" / "assets" / "sample_images" / "person38_virus_84.jpeg"
        with open(sample, "rb") as image:
            predicted = httpx.post(f"{url}/api/v1/predict", files={"file": (sample.name, image)}, timeout=60)
        assert predicted.status_code == 200, predicted.text
    assert not list(elsewhere.iterdir()), "nothing written to the working directory"
