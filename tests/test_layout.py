"""The code's layout, measured from the source: no import circles, stage deps that cover the code each
stage imports, and the size limits that keep modules and functions readable."""

from __future__ import annotations

import ast

import pytest

from import_graph import ROOT, closure, code_deps, cycles, imports_of, missing_deps, module_file, project_files, stages

MAX_TOP_LEVEL_MODULES = 8
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _relative(paths) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in paths}


def test_no_import_circles():
    assert cycles() == []


@pytest.mark.parametrize("name", list(stages()))
def test_stage_deps_cover_every_module_it_imports(name):
    assert missing_deps(stages()[name]) == [], (
        f"stage {name} imports project files its dvc.yaml deps miss; run python tests/import_graph.py --write")


def _code_entries(entries) -> set[str]:
    return {entry for entry in entries if entry.startswith(("pipeline/", "stages/"))
            and (entry.endswith(".py") or (ROOT / entry / "__init__.py").is_file())}


@pytest.mark.parametrize("name", list(stages()))
def test_stage_code_deps_are_exactly_its_closure(name):
    """No stale code entry either: a file a stage does not import must not re-run it."""
    listed = [dep if isinstance(dep, str) else next(iter(dep)) for dep in stages()[name].get("deps", [])]
    assert _code_entries(listed) == _code_entries(code_deps(stages()[name]))


def test_the_graph_counts_lazy_and_registry_imports():
    """A lazy import inside a function and the method catalog's pkgutil loop count as imports, so the
    stages that build a method depend on every method file and those that only load params on none."""
    assert ROOT / "pipeline" / "config" / "protocols.py" in imports_of(ROOT / "pipeline" / "config" / "params.py")
    assert "from pipeline.config.protocols import" not in (ROOT / "pipeline/config/params.py").read_text().split("\nclass")[0]
    train = _relative(closure(module_file("stages.train")))
    assert _relative((ROOT / "pipeline" / "methods").glob("*.py")) <= train
    for stage in ("stages.prepare", "stages.features", "stages.generate", "stages.auxiliary"):
        assert not (_relative(closure(module_file(stage))) & {"pipeline/methods/catalog.py", "pipeline/methods/grip.py"})


def test_a_package_import_runs_its_init():
    assert ROOT / "pipeline" / "core" / "__init__.py" in imports_of(ROOT / "pipeline" / "workspace.py")


def test_the_library_imports_no_stage_command():
    """Stages sit over the library, never under it (the demo models' CLI lives in scripts/)."""
    library = [p for p in project_files() if p.relative_to(ROOT).parts[0] == "pipeline"]
    reaching = {p.relative_to(ROOT).as_posix() for p in library
                if any(q.relative_to(ROOT).parts[0] == "stages" for q in imports_of(p))}
    assert reaching == set()


def test_the_library_is_packages_by_stage():
    top = sorted(p.name for p in (ROOT / "pipeline").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_module_is_too_long():
    long = {p.relative_to(ROOT).as_posix(): n for p in project_files()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_too_long():
    long = {}
    for path in project_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT).as_posix()}:{node.name}"] = length
    assert long == {}


def test_stage_commands_are_thin():
    """A stage command parses params, calls the library and logs; `_cli.py` is their shared harness."""
    long = {p.name: n for p in (ROOT / "stages").glob("*.py")
            if p.name != "_cli.py" and (n := len(p.read_text().splitlines())) > 60}
    assert long == {}


def test_imports_for_type_checking_only_do_not_count():
    """They never run: `evaluate` reads train's outputs without depending on the training loop."""
    outputs = ROOT / "pipeline" / "training" / "outputs.py"
    assert "from pipeline.training.loop import EnsembleResult" in outputs.read_text()
    assert ROOT / "pipeline" / "training" / "loop.py" not in imports_of(outputs)
