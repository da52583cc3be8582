"""requirements*.lock (from `make lock`) against requirements*.txt and pyproject.toml, offline.

Each lock pins every transitive package with the hashes of the files the index serves: `make setup`,
`make test` and the Dockerfile install them with `--require-hashes --no-deps`, so nothing unlocked
(a transitive upgrade, a swapped file) can reach a venv or the image. These checks keep the locks
in step with the pins people edit.
"""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.deploy.dockerfile_model import ROOT

# Which pin files each lock resolves (the Makefile's `lock` target).
SERVING = ["requirements.txt", "requirements-build.txt"]
LOCKS = {
    "requirements.lock": SERVING,
    "requirements-full.lock": [*SERVING, "requirements-torch.txt"],
    "requirements-setup.lock": [
        *SERVING,
        "requirements-torch.txt",
        "requirements-train.txt",
        "requirements-bench.txt",
    ],
    "requirements-test.lock": [
        *SERVING,
        "requirements-torch.txt",
        "requirements-train.txt",
        "requirements-bench.txt",
        "requirements-test.txt",
    ],
}
TORCH = {"torch", "torchvision", "triton", "grad-cam", "timm", "opencv-python-headless"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{path.name}: {line} is not an exact pin"
            found[normalise(requirement.name)] = specifier.version
    return found


def locked(path: Path) -> dict[tuple[str, str], tuple[str, list[str]]]:
    """(name, marker) -> (version, hashes)."""
    entries: dict[tuple[str, str], tuple[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        if not line or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            requirement = Requirement(line.rstrip(" \\"))
            (specifier,) = requirement.specifier
            current = (normalise(requirement.name), str(requirement.marker or ""))
            entries[current] = (specifier.version, [])
        elif "--hash=" in line:
            assert current is not None
            entries[current][1].append(line.strip().rstrip(" \\").removeprefix("--hash="))
    return entries


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_pin_is_locked_at_its_version_with_hashes(lock: str) -> None:
    entries = locked(ROOT / lock)
    assert entries, f"{lock} is empty"
    versions: dict[str, set[str]] = {}
    for (name, _), (version, hashes) in entries.items():
        versions.setdefault(name, set()).add(version)
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), f"{lock}: {name}"
    for source in LOCKS[lock]:
        for name, version in pins(ROOT / source).items():
            assert versions.get(name) == {version}, (
                f"{source} pins {name}=={version}; {lock} has {versions.get(name)}"
            )


def test_the_locks_agree_with_the_test_lock() -> None:
    """The setup and serving locks are resolved under the test lock: the same version of everything."""
    full: dict[str, set[str]] = {}
    for (name, _), (version, _) in locked(ROOT / "requirements-test.lock").items():
        full.setdefault(name, set()).add(version)
    for lock in ("requirements.lock", "requirements-full.lock", "requirements-setup.lock"):
        for (name, _), (version, _) in locked(ROOT / lock).items():
            assert version in full.get(name, set()), f"{lock}: {name} {version}; test lock {full.get(name)}"


def test_pyproject_ranges_match_the_pins() -> None:
    """The base install is the serving install (requirements.txt); extras name the other pin files."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    sources = {
        "dependencies": (project["dependencies"], "requirements.txt"),
        "torch": (project["optional-dependencies"]["torch"], "requirements-torch.txt"),
        "train": (project["optional-dependencies"]["train"], "requirements-train.txt"),
    }
    for key, (requirements, source) in sources.items():
        pinned = pins(ROOT / source)
        declared = {
            normalise(Requirement(r).name): Requirement(r)
            for r in requirements
            if Requirement(r).name != "pneumonia-zoo"  # an extra naming another (train includes torch)
        }
        assert set(declared) == set(pinned), f"pyproject {key} vs {source}: {set(declared) ^ set(pinned)}"
        for name, requirement in declared.items():
            assert requirement.specifier.contains(Version(pinned[name]), prereleases=True), (
                f"{source} pins {name}=={pinned[name]}, outside pyproject's {requirement}"
            )
    test_tools = {normalise(Requirement(r).name) for r in project["optional-dependencies"]["test"]}
    pinned_tools = set(pins(ROOT / "requirements-test.txt")) - {"ray"}  # ray: its own extra
    assert pinned_tools <= test_tools, pinned_tools - test_tools


def test_the_serving_lock_has_no_torch() -> None:
    """The default image installs requirements.lock: nothing of PyTorch, CUDA or what needs them."""
    names = {name for name, _ in locked(ROOT / "requirements.lock")}
    assert not names & TORCH, names & TORCH
    assert not [n for n in names if n.startswith(("nvidia-", "cuda-"))]
    assert {"onnxruntime", "mlflow", "fastapi", "setuptools"} <= names
    full = {name for name, _ in locked(ROOT / "requirements-full.lock")}
    assert {"torch", "torchvision", "grad-cam", "timm"} <= full and names <= full


def test_the_cuda_filter_of_install_sh_matches_the_lock() -> None:
    """With TORCH_INDEX_URL, install.sh drops torch's CUDA-only packages; they are all that torch adds."""
    script = (ROOT / "docker" / "install.sh").read_text()
    pattern = re.search(r"cuda_only='([^']+)'", script).group(1)
    names = {name for name, _ in locked(ROOT / "requirements-full.lock")}
    dropped = {n for n in names if re.match(pattern, f"{n}==")}
    assert {"torch", "torchvision", "triton"} <= dropped
    assert all(n.startswith(("nvidia-", "cuda-")) or n in ("torch", "torchvision", "triton") for n in dropped)
