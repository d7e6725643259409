"""The project's import graph read from the source (ast), for the layout tests.

Every import that can run counts: top-level and lazy (inside a function) alike. Imports under
`if TYPE_CHECKING:` never run, so they change no output and do not count. Importing `a.b.c` runs `a/__init__.py` and
`a/b/__init__.py` too. A package that imports its modules by `pkgutil.iter_modules(__path__)` or by
`importlib.import_module(f"{prefix}...")` imports every module under it (the method registry does).

`python tests/import_graph.py` prints each DVC stage's closure and what its deps miss; with `--write` it
rewrites the code entries of every stage's `deps` in dvc.yaml to the closure (a package folder where
every module of it is imported, else the modules), keeping the data and non-Python entries.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("pipeline", "stages")
# Data shipped inside the packages, read by a module whenever it runs: a stage importing the module
# depends on it. (`pipeline/demo/presets.yaml` is not here: it resolves only `dataset.demo`'s knobs,
# and the stages reading those, check and prepare, list it.)
READS = {"pipeline/clip/models.py": "pipeline/clip/model_configs",
         "pipeline/datasets/benchmark.py": "pipeline/datasets/class_names"}


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files() -> list[Path]:
    return sorted(p for package in PROJECT_PACKAGES for p in (ROOT / package).rglob("*.py"))


def _package_modules(package: str) -> set[Path]:
    return set((ROOT.joinpath(*package.split("."))).rglob("*.py"))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@functools.cache
def imports_of(path: Path) -> frozenset[Path]:
    """The project files `path` imports directly, its packages' `__init__.py` included."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[Path] = set()

    def add(name: str) -> None:
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            file = module_file(".".join(parts[:end]))
            if file is not None:
                found.add(file)

    typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
                   for statement in node.body for inner in ast.walk(statement)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            add(source)
            for alias in node.names:
                if module_file(f"{source}.{alias.name}"):
                    add(f"{source}.{alias.name}")
        elif isinstance(node, ast.Call):
            function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if function == "iter_modules":
                found |= _package_modules(package)
            elif function == "import_module" and node.args:
                argument = node.args[0]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    add(argument.value)
                elif isinstance(argument, ast.JoinedStr):  # f"{__name__}.{x}" or f"pipeline.methods.{x}"
                    head = argument.values[0]
                    prefix = head.value.rstrip(".") if isinstance(head, ast.Constant) else package
                    found |= _package_modules(prefix or package)
    return frozenset(p for p in found if p.is_relative_to(ROOT / "pipeline") or p.is_relative_to(ROOT / "stages"))


def closure(start: Path) -> set[Path]:
    seen, todo = set(), [start]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(imports_of(path))
    return seen


def cycles() -> list[list[str]]:
    """Each strongly connected component of more than one module (Tarjan), as sorted module names."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node: Path) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for successor in imports_of(node):
            if successor == node:
                continue
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(module_name(p) for p in component))

    for file in project_files():
        if file not in index:
            visit(file)
    return found


def _is_ancestor_init(init: Path, file: Path) -> bool:
    return init.name == "__init__.py" and file.is_relative_to(init.parent) and init != file


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def stage_module(stage: dict) -> Path:
    return module_file(stage["cmd"].split("-m", 1)[1].split()[0])


def stage_deps(stage: dict) -> list[str]:
    return [dep if isinstance(dep, str) else next(iter(dep)) for dep in stage.get("deps", [])]


def missing_deps(stage: dict) -> list[str]:
    """The project files the stage's command imports that none of its deps covers."""
    deps = stage_deps(stage)

    def covered(path: Path) -> bool:
        relative = path.relative_to(ROOT).as_posix()
        return any(relative == dep or relative.startswith(dep.rstrip("/") + "/") for dep in deps)

    needed = [p.relative_to(ROOT).as_posix() for p in closure(stage_module(stage))]
    needed += [READS[file] for file in needed if file in READS]
    return sorted(file for file in needed if not covered(ROOT / file))


def code_deps(stage: dict) -> list[str]:
    """The closure as dvc.yaml entries: a package folder when the stage imports all of its modules."""
    files = closure(stage_module(stage))
    entries, folded = [], set()
    for package in sorted({p.parent for p in files}, key=lambda d: len(d.parts)):
        modules = set(package.rglob("*.py"))
        if any(package.is_relative_to(done) for done in folded):
            continue
        if modules <= files and package != ROOT / "stages":
            folded.add(package)
            entries.append(package.relative_to(ROOT).as_posix())
    entries += [p.relative_to(ROOT).as_posix() for p in files
                if not any(p.is_relative_to(done) for done in folded)]
    entries += [READS[entry] for entry in list(entries) if entry in READS]
    return sorted(entries)


def _is_code_entry(entry: str) -> bool:
    path = ROOT / entry
    return entry.startswith(PROJECT_PACKAGES) and (path.suffix == ".py" or (path / "__init__.py").is_file()
                                                   or entry in READS.values())


def write_deps(dvc_file: Path = ROOT / "dvc.yaml") -> None:
    """Rewrite each stage's code deps to `code_deps`, in place, keeping every other line as it is."""
    text = dvc_file.read_text().splitlines(keepends=True)
    all_stages, out, name, in_deps = stages(), [], None, False
    for line in text:
        stripped = line.strip()
        if line.startswith("  ") and not line.startswith("   ") and stripped.endswith(":"):
            name, in_deps = stripped[:-1], False
        elif line.startswith("    ") and not line.startswith("     ") and stripped:
            in_deps = stripped == "deps:"
            out.append(line)
            if in_deps:
                code = code_deps(all_stages[name])
                out += [f"      - {entry}\n" for entry in code]
            continue
        if in_deps and stripped.startswith("- "):
            entry = stripped[2:].split("#")[0].strip().rstrip(":")
            code = code_deps(all_stages[name])
            if _is_code_entry(entry) or any(entry.startswith(c + "/") for c in code):
                continue
        out.append(line)
    dvc_file.write_text("".join(out))


if __name__ == "__main__":
    import sys

    if "--write" in sys.argv:
        write_deps()
    for name, stage in stages().items():
        files = sorted(p.relative_to(ROOT).as_posix() for p in closure(stage_module(stage)))
        print(f"{name}: {len(files)} files, missing {missing_deps(stage)}")
    print("cycles:", cycles())
