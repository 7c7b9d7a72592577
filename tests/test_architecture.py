"""The house plan (docs/architecture.md), checked on the source with `ast`: imports run one way,
core -> support -> experiments -> runner -> cli, there is no import cycle, no module is longer
than 400 lines, no private name is imported from another module, and everything but the core
and two adapter modules imports without Keras."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gdeeper"

# Lowest first; a module belongs to the layer of its longest matching prefix. The core is the
# library itself: the `gdeeper.core` package, the original's interface `gdeeper.compat` and
# the package's lazy `__init__` (the module `gdeeper`, matched exactly).
LAYERS = {
    "core": ("gdeeper.core", "gdeeper.compat"),
    "support": ("gdeeper.files", "gdeeper.config", "gdeeper.datasets", "gdeeper.stderr"),
    "experiments": ("gdeeper.experiments",),
    "runner": ("gdeeper.runner",),
    "cli": ("gdeeper.cli", "gdeeper.__main__"),
}
ORDER = list(LAYERS)
# The modules outside the core that import Keras at their top, imported only when training.
KERAS_ADAPTERS = {
    "gdeeper.experiments._keras",
    "gdeeper.runner.session.callbacks",
    "gdeeper.runner.session.depth_signal",  # gradients on w: each backend's own machinery
    "gdeeper.experiments.udn.model",  # the UDN port is a model, imported only to train it
    "gdeeper.experiments.udn.optim",
}
# The runner's sub-packages (docs/architecture.md); every runner module lives in one. The lower
# three serve the others and import none of them (analysis, session and sweeps use each other).
RUNNER_PACKAGES = ("control", "records", "tracking", "analysis", "session", "sweeps")
RUNNER_BASE = ("control", "records", "tracking")
# Line limit for every module: a longer one holds more than one concept (docs/architecture.md).
MAX_LINES = 400
# Core modules that are pure Python: they import neither Keras nor NumPy.
PURE_CORE = {"gdeeper.core.policy", "gdeeper.core.arguments"}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = modules()


def layer_of(module: str) -> str | None:
    if module == "gdeeper":
        return "core"
    best, best_layer = "", None
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > len(best):
                best, best_layer = prefix, layer
    return best_layer


def imports_of(module: str, path: Path) -> set[str]:
    """The gdeeper modules that `module` imports anywhere (top level, functions, TYPE_CHECKING)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            # `import a.b.c` / `from a.b import c`: the deepest of them that is a module
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {module: imports_of(module, path) for module, path in MODULES.items()}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(module: str, path: Path) -> list[str]:
    """The private names `module` imports from other gdeeper modules. A private module (such as
    `gdeeper.core._keras`, which holds every private Keras attribute the core touches) may be
    imported within its own package, and nowhere else."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if not name.startswith("gdeeper."):
                continue
            parent, _, last = name.rpartition(".")
            if name not in MODULES and is_private(last):
                found.append(f"{module}:{node.lineno} imports the private name {name}")
            owner = name if name in MODULES else parent
            private_module = any(is_private(part) for part in owner.split("."))
            if private_module and owner.rpartition(".")[0] != package:
                found.append(f"{module}:{node.lineno} imports {name} from outside its package")
    return found


def test_every_import_points_down_or_sideways():
    upward = [
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if ORDER.index(layer_of(target)) > ORDER.index(layer_of(module))
    ]
    assert not upward, "\n".join(upward)


def test_there_is_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    cycles = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(cycles)


def test_every_module_has_a_layer():
    assert not [module for module in MODULES if layer_of(module) is None]


def test_the_layers_are_where_the_plan_says():
    layers = {module: layer_of(module) for module in MODULES}
    assert layers["gdeeper"] == layers["gdeeper.compat"] == layers["gdeeper.core.policy"] == "core"
    assert layers["gdeeper.core.layer"] == layers["gdeeper.core.saving"] == "core"
    assert layers["gdeeper.datasets.idx"] == "support"
    assert layers["gdeeper.experiments.xor"] == "experiments"
    assert layers["gdeeper.runner.sweeps.executors.ray_driver"] == "runner"
    assert layers["gdeeper.cli"] == "cli"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines; split it by job (docs/architecture.md)"


def test_no_private_name_is_imported_across_modules():
    found = [line for module, path in MODULES.items() for line in private_imports(module, path)]
    assert not found, "\n".join(found)


def test_the_core_is_a_package_of_its_own():
    core = sorted(m for m in MODULES if m.startswith("gdeeper.core"))
    assert {"gdeeper.core.layer", "gdeeper.core.width", "gdeeper.core.growable"} <= set(core)
    flat = sorted(m for m in MODULES if m.count(".") == 1 and layer_of(m) == "core")
    assert flat == ["gdeeper.compat", "gdeeper.core"], flat


def test_the_pure_core_imports_neither_keras_nor_numpy():
    code = (
        "import importlib, sys\n"
        f"for name in {sorted(PURE_CORE)!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = [m for m in ('keras', 'tensorflow', 'jax', 'numpy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_everything_outside_the_core_imports_without_keras():
    light = sorted(
        m
        for m in MODULES
        if layer_of(m) != "core" and m not in KERAS_ADAPTERS and m != "gdeeper.__main__"
    )
    code = (
        "import importlib, sys\n"
        f"for name in {light!r}:\n"
        "    importlib.import_module(name)\n"
        "from gdeeper.experiments import registered\n"
        "assert {'xor', 'mnist', 'fashion-mnist', 'digits'} <= set(registered())\n"
        "bad = [m for m in ('keras', 'tensorflow', 'jax', 'ray') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def runner_package(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["gdeeper", "runner"] else None


def test_the_runner_is_a_few_sub_packages():
    runner = [m for m in MODULES if m.startswith("gdeeper.runner.")]
    flat = sorted(m for m in runner if runner_package(m) not in RUNNER_PACKAGES)
    assert not flat, f"runner modules outside its sub-packages {RUNNER_PACKAGES}: {flat}"


def test_the_runners_base_packages_import_only_downward():
    upward = []
    for module, targets in sorted(GRAPH.items()):
        package = runner_package(module)
        if package not in RUNNER_BASE:
            continue
        for target in sorted(targets):
            other = runner_package(target)
            if other in RUNNER_PACKAGES and (
                other not in RUNNER_BASE or RUNNER_BASE.index(other) > RUNNER_BASE.index(package)
            ):
                upward.append(f"{module} ({package}) imports {target} ({other})")
    assert not upward, "\n".join(upward)


def experiment_modules() -> set[str]:
    """The modules that register an experiment (`register(Experiment(...))`)."""
    found = set()
    for module, path in MODULES.items():
        if module.startswith("gdeeper.experiments.") and "register(" in path.read_text():
            tree = ast.parse(path.read_text())
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
            if any(getattr(c.func, "id", None) == "register" for c in calls):
                found.add(module)
    return found


def test_experiments_do_not_import_each_other():
    experiments = experiment_modules()
    assert {"gdeeper.experiments.xor", "gdeeper.experiments.images"} <= experiments
    crossing = [
        f"{module} imports {target} (an experiment: move what they share to its own module)"
        for module in sorted(MODULES)
        if module.startswith("gdeeper.experiments.")
        for target in sorted(GRAPH[module] & experiments - {module})
    ]
    assert not crossing, "\n".join(crossing)


def is_constant_list(elements: list) -> bool:
    return bool(elements) and all(isinstance(e, ast.Constant) for e in elements)


def literals_in(path: Path) -> set:
    """The int constants and the tuples/lists of string constants in a module's code."""
    found: set = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            found.add(node.value)
        elif isinstance(node, (ast.Tuple, ast.List)) and is_constant_list(node.elts):
            found.add(tuple(e.value for e in node.elts))
    return found


def test_one_owner_per_rule():
    """The backend names, the stop exit codes and the run directory's lock each have one home:
    `config.BACKENDS`, `runner.control.signals`, `runner.control.lock`."""
    outside = sorted(m for m in MODULES if layer_of(m) != "core")
    spelled = {m: literals_in(MODULES[m]) for m in outside}
    from gdeeper.config import BACKENDS

    backends = {m for m, found in spelled.items() if tuple(BACKENDS) in found}
    assert backends == {"gdeeper.config"}, backends
    for code in (130, 143):
        holders = {m for m, found in spelled.items() if code in found}
        assert holders == {"gdeeper.runner.control.signals"}, (code, holders)
    flock = {m for m in outside if "fcntl.flock(" in MODULES[m].read_text()}
    assert flock == {"gdeeper.runner.control.lock"}, flock
