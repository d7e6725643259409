"""The benchmark matrix: methods × paradigms × seeds (× a grid of params) on one dataset, as queued
DVC experiments, then the results table (mean ± std over seeds) from `dvc exp show`.

    python -m pipeline.experiments.matrix --methods zeroshot,grip,air --paradigms ul,ssl,trzsl --seeds 0,1,2 \\
        --grid protocol=project,grip --set dataset.name=flowers102 --set dataset.root=/data --out table.md

Every combination is checked against the params schema before anything is queued; a method without a
meaning under a paradigm (pll outside `candidates`) is skipped with a note, and a method that
trains nothing (zeroshot) runs for the first seed only. A combination already run (an experiment with exactly
these params) is not queued again, so an interrupted matrix resumes where it stopped, and one the options
name twice (`--seeds 0,0`) is queued and counted once; a key two options set (`--set seed=7` with
`--seeds`) is refused, as is an empty axis. `--table-only`
prints the table of what has run. `--study-seeds` makes each seed a study seed: it sets everything
random (`seed`, `adapt.seed`, `generate.seed`, `dataset.demo.seed`: the world too), so every method
runs for every seed.
"""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import typer
import yaml

from pipeline.config.params import parse_params
from pipeline.core.errors import PipelineError
from pipeline.experiments.tables import experiments, markdown_table

log = logging.getLogger(__name__)
app = typer.Typer(add_completion=False)


def assign(data: dict, key: str, value) -> None:
    """Set a dotted key (`dataset.demo.preset`) in a params mapping, as `-S key=value` does."""
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _pairs(items: list[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PipelineError(f"{option} {item!r} must be KEY=VALUE, e.g. {option} protocol=grip")
        pairs.append((key, value))
    return pairs


STUDY_SEED_KEYS = ("seed", "adapt.seed", "generate.seed", "dataset.demo.seed")


def _typed(option: str, key: str, value: str):
    """A value as `-S` would set it, refused in one line when it is empty or not YAML."""
    if not value.strip():
        raise PipelineError(f"{option} {key}= has no value; give one (null for none), e.g. {option} {key}=VALUE")
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise PipelineError(f"{option} {key}={value} is not a valid value ({getattr(error, 'problem', error)}); "
                            "fix it or quote it") from None


def _check_keys(methods: list[str], paradigms: list[str], seeds: list[int], grid: list[tuple[str, list[str]]],
                fixed: list[tuple[str, str]], study_seeds: bool) -> None:
    """Refuse empty axes and a key set twice: the later setting would silently win over the other."""
    for option, values in (("--methods", methods), ("--paradigms", paradigms), ("--seeds", seeds)):
        if not values:
            raise PipelineError(f"{option} lists nothing; give at least one, e.g. {option} "
                                + {"--methods": "grip", "--paradigms": "ul", "--seeds": "0,1,2"}[option])
    seeder = "--study-seeds" if study_seeds else "--seeds"
    axes = {"method": "--methods", "paradigm": "--paradigms",
            **{key: seeder for key in (STUDY_SEED_KEYS if study_seeds else ("seed",))}}

    def collides(option: str, key: str) -> PipelineError:
        axis = axes[key]
        fix = "drop it, or drop --study-seeds" if axis == "--study-seeds" else f"give its values in {axis} instead"
        return PipelineError(f"{option} {key} collides with {axis}, which sets {key} in every experiment; {fix}")

    grid_keys: set[str] = set()
    for key, values in grid:
        if not values:
            raise PipelineError(f"--grid {key}= lists no values; give at least one, e.g. --grid {key}=V1,V2")
        if key in grid_keys:
            raise PipelineError(f"--grid {key} is given twice; give it once with all its values, "
                                f"e.g. --grid {key}=V1,V2")
        if key in axes:
            raise collides("--grid", key)
        grid_keys.add(key)
        for value in values:
            _typed("--grid", key, value)
    fixed_keys: set[str] = set()
    for key, value in fixed:
        if key in fixed_keys:
            raise PipelineError(f"--set {key} is given twice; give it once")
        if key in axes:
            raise collides("--set", key)
        if key in grid_keys:
            raise PipelineError(f"--set {key}={value} collides with --grid {key}: a key is fixed or an axis, not both; "
                                "drop one of them")
        fixed_keys.add(key)
        _typed("--set", key, value)


def plan(base: dict, methods: list[str], paradigms: list[str], seeds: list[int], grid: list[tuple[str, list[str]]],
         fixed: list[tuple[str, str]], study_seeds: bool = False) -> tuple[list[dict[str, str]], list[str]]:
    """The combinations to run, each as {key: value as typed on a `-S`}, and notes on those skipped.
    Each is validated as params.yaml would be after its assignments. With `study_seeds` a seed sets
    every key of STUDY_SEED_KEYS. Combinations that set the same typed values (a repeated seed, `0.1`
    and `0.10`) appear once: the same experiment queued twice would count twice in the table."""
    from pipeline.methods.base import registry
    from pipeline.methods.catalog import check_method

    _check_keys(methods, paradigms, seeds, grid, fixed, study_seeds)
    seeds = list(dict.fromkeys(seeds))
    combos, notes, untrained, seen = [], [], set(), set()
    grid_keys = [key for key, _ in grid]
    for method, paradigm, values in itertools.product(methods, paradigms,
                                                      itertools.product(*[v for _, v in grid])):
        cls = registry().get(method)   # None: unknown, and the schema names it below
        if cls is not None and paradigm not in cls.paradigms:
            notes.append(f"skipped {method} under {paradigm}: it has no meaning there")
            continue
        trains = cls is None or cls.trains
        if not trains:
            untrained.add(method)
        for seed in seeds if trains or study_seeds else seeds[:1]:
            seeded = {key: str(seed) for key in (STUDY_SEED_KEYS if study_seeds else ("seed",))}
            combo = {**dict(fixed), **dict(zip(grid_keys, values)), "method": method, "paradigm": paradigm, **seeded}
            typed = {key: yaml.safe_load(value) for key, value in combo.items()}
            identity = json.dumps(typed, sort_keys=True, default=str)
            if identity in seen:
                continue
            seen.add(identity)
            data = json.loads(json.dumps(base))
            for key, value in typed.items():
                assign(data, key, value)
            source = "params.yaml with " + " ".join(f"{k}={v}" for k, v in combo.items())
            check_method(parse_params(data, source), source)
            combos.append(combo)
    if untrained and len(seeds) > 1 and not study_seeds:
        notes.append(f"{', '.join(sorted(untrained))} runs for the first seed only: it trains nothing, so every "
                     "seed gives the same numbers")
    return combos, list(dict.fromkeys(notes))


def _matches(params: dict, combo: dict[str, str]) -> bool:
    return all(params.get(key) == yaml.safe_load(value) for key, value in combo.items())


def collect(rows: list[tuple[dict, dict]], combos: list[dict[str, str]]) -> list[tuple[dict, dict]]:
    """For each combination, the first experiment whose params match it (dvc lists the newest first);
    an experiment two combinations match is counted once."""
    found = []
    for combo in combos:
        match = next((row for row in rows if _matches(row[0], combo)), None)
        if match is not None and not any(match is row for row in found):
            found.append(match)
    return found


def _dvc(*args: str, capture: bool = True) -> str:
    result = subprocess.run(["dvc", *args], capture_output=capture, text=True)
    if result.returncode != 0:
        raise PipelineError(f"`dvc {' '.join(args)}` failed:\n{(result.stderr or result.stdout or '').strip()}")
    return result.stdout if capture else ""


def shown_experiments(all_commits: bool = False) -> list[tuple[dict, dict]]:
    """Experiments of the current commit (code and params.yaml as committed), or of every commit."""
    return experiments(json.loads(_dvc("exp", "show", "--json", *(["--all-commits"] if all_commits else [])) or "[]"))


def run_queue(combos: list[dict[str, str]], jobs: int) -> None:
    """Queue every combination, run the queue with `jobs` workers, wait, and name any failure."""
    for combo in combos:
        _dvc("exp", "run", "--queue", "-q", *[f"-S{k}={v}" for k, v in combo.items()])
    log.info("queued %d experiments; running them with %d worker(s)", len(combos), jobs)
    _dvc("queue", "start", "-j", str(jobs))
    started = time.monotonic()
    while True:
        time.sleep(10)
        status = _dvc("queue", "status")
        waiting = sum("Queued" in line or "Running" in line for line in status.splitlines())
        if not waiting:
            break
        log.info("%d experiment(s) queued or running (%.0f min so far)", waiting, (time.monotonic() - started) / 60)
    failed = [line.split()[0] for line in status.splitlines() if "Failed" in line]
    if failed:
        log.warning("%d experiment(s) failed: %s; read why with `dvc queue logs <task>`", len(failed),
                    ", ".join(failed))


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _seeds(value: str) -> list[int]:
    seeds = []
    for item in _split(value):
        try:
            seeds.append(int(item))
        except ValueError:
            raise PipelineError(f"--seeds {value!r}: {item!r} is not a whole number; list whole numbers, "
                                "e.g. --seeds 0,1,2") from None
    return seeds


def read_base(path: Path) -> dict:
    """The params file every combination is validated against, refused in one line naming --params:
    a YAML error's own message spans several lines and a missing file would be a traceback."""
    if not path.is_file():
        raise PipelineError(f"--params {path} not found; run from the project root or pass --params PATH")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        if mark is not None and text[mark.index:mark.index + 1] == "\t":
            raise PipelineError(f"--params {path}{where} has a tab; YAML indents with spaces: replace the tab "
                                "with spaces") from None
        problem = getattr(error, "problem", None) or " ".join(str(error).split())
        raise PipelineError(f"--params {path}{where} is not valid YAML ({problem}); fix it or restore it "
                            f"(git checkout {path})") from None
    if not data:
        raise PipelineError(f"--params {path} is empty; restore it (git checkout {path}) or pass a full params "
                            "file such as the shipped params.yaml")
    if not isinstance(data, dict):
        raise PipelineError(f"--params {path} holds a {type(data).__name__}, not a mapping of keys to values; "
                            "pass a params file such as the shipped params.yaml")
    return data


@app.command()
def main(methods: str = typer.Option("zeroshot,grip,air", help="comma-separated methods"),
         paradigms: str = typer.Option("ul,ssl,trzsl", help="comma-separated paradigms"),
         seeds: str = typer.Option("0,1,2", help="comma-separated seeds"),
         study_seeds: bool = typer.Option(False, help="a seed sets seed, adapt.seed, generate.seed and dataset.demo.seed"),
         grid: list[str] = typer.Option([], help="KEY=V1,V2: one more axis, e.g. protocol=project,grip"),
         set_: list[str] = typer.Option([], "--set", help="KEY=VALUE for every experiment"),
         jobs: int = typer.Option(1, help="experiments at a time (`dvc queue start -j`)"),
         out: Path = typer.Option(None, help="write the Markdown table here too"),
         table_only: bool = typer.Option(False, help="queue nothing; print the table of what has run"),
         all_commits: bool = typer.Option(False, help="read results of experiments on earlier commits too"),
         params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        if jobs < 1:
            raise PipelineError(f"--jobs {jobs} must be 1 or more (experiments at a time), e.g. --jobs 2")
        base = read_base(params_file)
        axes = [(key, _split(values)) for key, values in _pairs(grid, "--grid")]
        combos, notes = plan(base, _split(methods), _split(paradigms), _seeds(seeds), axes, _pairs(set_, "--set"),
                             study_seeds)
        for note in notes:
            log.info(note)
        if not table_only:
            done = collect(shown_experiments(), combos)
            todo = [c for c in combos if not any(_matches(params, c) for params, _ in done)]
            log.info("%d combination(s): %d already run, %d to run", len(combos), len(combos) - len(todo), len(todo))
            if todo:
                run_queue(todo, jobs)
        rows = collect(shown_experiments(all_commits), combos)
        columns = ["paradigm"] + [key for key, values in axes if len(values) > 1] + ["method"]
        table = markdown_table(rows, columns)
    except PipelineError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    missing = len(combos) - len(rows)
    header = (f"<!-- python -m pipeline.experiments.matrix {' '.join(sys.argv[1:])} | "
              f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC | {len(rows)} of {len(combos)} experiments -->\n")
    typer.echo(table, nl=False)
    if missing:
        typer.echo(f"{missing} combination(s) have no results yet (failed or not run)", err=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(header + table)


if __name__ == "__main__":
    app()
