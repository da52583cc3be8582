"""The package's shape, as DEVELOPERS.md states it: layers import only lower layers (function-level imports
count; TYPE_CHECKING blocks do not), no import cycle, tracking/ holds MLflow I/O only, HTTP statuses live
in serving/ only, `models:/` URIs are written in one module, and no module grows past 400 lines."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pneumonia_zoo"
LAYERS = (
    "stats",
    "data",
    "zoo",
    "training",
    "package",
    "adaptation",
    "evaluation",
    "tracking",
    "workflows",
    "audit",
    "serving",
    "cli",
)
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_modules(path: Path) -> set[str]:
    """Every pneumonia_zoo module `path` imports, anywhere in it but under `if TYPE_CHECKING:`."""
    name = module_name(path)
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
            ):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            submodules = [
                f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in MODULES
            ]
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(module)

    Visitor().visit(ast.parse(path.read_text()))
    resolved = set()
    for module in found:
        while module and module not in MODULES:
            module = module.rpartition(".")[0]
        if module.startswith("pneumonia_zoo") and module != name:
            resolved.add(module)
    return resolved


GRAPH = {name: imported_modules(path) for name, path in MODULES.items()}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_layers_import_only_lower_layers() -> None:
    upward = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if (layer := layer_of(module))
        for target in targets
        if (other := layer_of(target)) and LAYERS.index(other) > LAYERS.index(layer)
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    assert cycles == []


def test_tracking_is_mlflow_io_only() -> None:
    forbidden = ("torch", "pneumonia_zoo.training.loop", "pneumonia_zoo.zoo.factory")
    offenders = []
    for name, path in MODULES.items():
        if layer_of(name) != "tracking":
            continue
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        offenders += [f"{name}: {n}" for n in names if n.split(".")[0] == "torch" or n.startswith(forbidden)]
    assert offenders == []


STATUS_IN_CONSTRUCTOR = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\w*\(\s*(?:status_code\s*=\s*)?[45]\d\d\b")


def test_http_statuses_live_in_serving_only() -> None:
    outside = [
        f"{name}: {match.group(0)}"
        for name, path in MODULES.items()
        if layer_of(name) != "serving"
        or name in ("pneumonia_zoo.serving.inference", "pneumonia_zoo.serving.holder")
        for match in STATUS_IN_CONSTRUCTOR.finditer(path.read_text())
    ]
    assert outside == []
    source = MODULES["pneumonia_zoo.serving.inference"].read_text()
    assert (
        "Request" not in re.findall(r"from fastapi import ([^\n]+)", source)[0]
        if "from fastapi" in source
        else True
    )


def test_models_uris_are_written_in_one_module() -> None:
    writers = sorted(name for name, path in MODULES.items() if "models:/" in path.read_text())
    assert writers == ["pneumonia_zoo.tracking.uris"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_400_lines(name: str) -> None:
    assert len(MODULES[name].read_text().splitlines()) <= MAX_LINES
