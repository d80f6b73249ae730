"""The layout holds what it says: stages depend one way, no module reaches into private names."""

import ast
import re
import subprocess
from pathlib import Path

import trading.services

SERVICES = Path(trading.services.__file__).parent
PROJECT = SERVICES.parents[1]


def declared_layers() -> list[set[str]]:
    """The lines of module names in the services package docstring, top first."""
    doc = trading.services.__doc__ or ""
    return [set(re.findall(r"\w+", line)) for line in doc.splitlines() if line.startswith("    ")]


def stage_of(path: Path) -> str:
    relative = path.relative_to(SERVICES)
    return relative.parts[0].removesuffix(".py")


def imported_stages(path: Path) -> set[str]:
    """The services stages a module imports, by `from trading.services(.x) import y`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trading.services"):
            parts = node.module.split(".")
            if len(parts) > 2:
                found.add(parts[2])
            else:
                found.update(alias.name for alias in node.names)
    return found


def test_every_services_module_is_on_one_line_of_the_declared_layers():
    layers = declared_layers()
    declared = set().union(*layers)
    stages = {stage_of(path) for path in SERVICES.rglob("*.py") if path.name != "__init__.py"}
    assert stages == declared


def test_each_stage_imports_only_stages_below_it():
    layers = declared_layers()
    level = {name: index for index, layer in enumerate(layers) for name in layer}
    wrong = []
    for path in SERVICES.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        stage = stage_of(path)
        for used in imported_stages(path) - {stage}:
            if level[used] <= level[stage]:
                wrong.append(f"{path.relative_to(PROJECT)} imports {used}")
    assert wrong == []


def test_no_module_imports_or_patches_another_modules_private_name():
    tracked = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=PROJECT, capture_output=True, text=True, check=True
    ).stdout.split()
    private_import = re.compile(r"^\s*from [\w.]+ import .*\b_[a-z]\w*", re.M)
    private_patch = re.compile(r"monkeypatch\.setattr\([\w.]+, \"_[a-z]|setattr\(\"[\w.]+\._[a-z]")
    offenders = []
    for name in tracked:
        text = (PROJECT / name).read_text()
        if private_import.search(text) or private_patch.search(text):
            offenders.append(name)
    assert offenders == []
