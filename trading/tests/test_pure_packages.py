"""The pure packages trading.risk and trading.plans: no Django, no I/O library, one-way imports."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

TRADING = Path(__file__).resolve().parents[1]

# Each module may import only the modules before it in its package (the arrows in the package docstring).
LAYERS = {
    "risk": ["values", "enums", "sessions", "settings", "engine", "book"],
    "plans": ["values", "enums", "settings", "intents", "protection", "planning"],
}
ALLOWED_OUTSIDE = {"risk": {"trading.symbols"}, "plans": {"trading.symbols", "trading.risk"}}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_importing_the_pure_packages_loads_nothing_but_the_standard_library_and_symbols() -> None:
    # A fresh interpreter: in this one, pytest-django has long since imported Django.
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import trading.risk, trading.plans\n"
        "for name in sorted(set(sys.modules) - before):\n"
        "    top = name.split('.')[0]\n"
        "    if top not in sys.stdlib_module_names and not top.startswith('_'):\n"
        "        print(name)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=TRADING.parent, capture_output=True, text=True, check=True
    )
    loaded = set(result.stdout.split())
    outside = {name for name in loaded if not name.startswith(("trading.risk", "trading.plans"))}
    assert outside <= {"trading", "trading.symbols"}
    assert "trading.risk.engine" in loaded  # the check saw the imports it is about


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_every_module_of_a_pure_package_has_its_place_in_the_layers(package: str) -> None:
    modules = {path.stem for path in (TRADING / package).glob("*.py")} - {"__init__"}
    assert modules == set(LAYERS[package])


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_modules_of_a_pure_package_import_only_the_layers_below_them(package: str) -> None:
    order = LAYERS[package]
    for index, module in enumerate(order):
        below = {f"trading.{package}.{name}" for name in order[:index]}
        path = TRADING / package / f"{module}.py"
        imports = {name for name in imported_modules(path) if name.startswith("trading")}
        assert imports <= below | ALLOWED_OUTSIDE[package], f"trading.{package}.{module}"
