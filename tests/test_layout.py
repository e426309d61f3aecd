"""The arrows of the layout hold: each stage imports only the stages to its left (DESIGN.md).

data <- physics <- generate; data, physics <- detectors <- searches; evaluate reads data and arrays only; tasks
and cli may import everything. An AST walk over every module of src/jetad, imports inside functions included,
so a lazy import cannot hide an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "jetad"
#: Stage -> the jetad stages it may import (besides itself and the top-level package `jetad`).
ALLOWED = {
    "data": set(),
    "generate": {"data", "physics"},  # a production computes the features of its jets
    "physics": {"data"},
    "detectors": {"data", "physics"},
    "searches": {"data", "physics", "detectors"},
    "evaluate": {"data", "physics"},
    "tasks": {"data", "generate", "physics", "detectors", "searches", "evaluate"},
    "cli": {"data", "generate", "physics", "detectors", "searches", "evaluate", "tasks"},
}


def stage(module: str) -> str:
    """'jetad.detectors.nae' -> 'detectors'; 'jetad.cli' -> 'cli'; 'jetad' -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def jetad_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every `import jetad...` / `from jetad... import` in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "jetad"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "jetad":
                if node.module == "jetad":  # from jetad import detectors
                    found += [(node.lineno, f"jetad.{a.name}") for a in node.names if a.name != "__version__"]
                else:
                    found.append((node.lineno, node.module))
    return found


def modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        yield path, ".".join(p for p in rel.parts if p != "__init__")


def test_every_module_belongs_to_a_stage():
    stray = [name for _, name in modules() if stage(name) not in ALLOWED and name != "jetad"]
    assert not stray, f"modules outside the stages of DESIGN.md: {stray}"


@pytest.mark.parametrize("from_stage", sorted(ALLOWED))
def test_no_stage_imports_to_its_right(from_stage):
    wrong = []
    for path, name in modules():
        if stage(name) != from_stage:
            continue
        for line, target in jetad_imports(path):
            to = stage(target)
            if to and to != from_stage and to not in ALLOWED[from_stage]:
                wrong.append(f"{path.relative_to(SRC.parent)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_walk_sees_lazy_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from jetad.tasks.demo import run_demo\n    import jetad.cli\n")
    assert [m for _, m in jetad_imports(probe)] == ["jetad.tasks.demo", "jetad.cli"]
