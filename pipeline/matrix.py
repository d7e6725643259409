"""The benchmark matrix: methods × paradigms × seeds (× a grid of params) on one dataset, as queued
DVC experiments, then the results table (mean ± std over seeds) from `dvc exp show`.

    python -m pipeline.matrix --methods zeroshot,grip,air --paradigms ul,ssl,trzsl --seeds 0,1,2 \\
        --grid protocol=project,grip --set dataset.name=flowers102 --set dataset.root=/data --out table.md

Every combination is checked against the params schema before anything is queued; a method without a
meaning under a paradigm (pll outside `candidates`) is skipped with a note, and a method that
trains nothing (zeroshot) runs for the first seed only. A combination already run (an experiment with exactly
these params) is not queued again, so an interrupted matrix resumes where it stopped. `--table-only`
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

from pipeline.errors import PipelineError
from pipeline.experiments import experiments, flatten, markdown_table
from pipeline.params import parse_params

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


def plan(base: dict, methods: list[str], paradigms: list[str], seeds: list[int], grid: list[tuple[str, list[str]]],
         fixed: list[tuple[str, str]], study_seeds: bool = False) -> tuple[list[dict[str, str]], list[str]]:
    """The combinations to run, each as {key: value as typed on a `-S`}, and notes on those skipped.
    Each is validated as params.yaml would be after its assignments. With `study_seeds` a seed sets
    every key of STUDY_SEED_KEYS."""
    from pipeline.methods import registry

    combos, notes, untrained = [], [], set()
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
            data = json.loads(json.dumps(base))
            for key, value in combo.items():
                assign(data, key, yaml.safe_load(value))
            parse_params(data, "params.yaml with " + " ".join(f"{k}={v}" for k, v in combo.items()))
            combos.append(combo)
    if untrained and len(seeds) > 1 and not study_seeds:
        notes.append(f"{', '.join(sorted(untrained))} runs for the first seed only: it trains nothing, so every "
                     "seed gives the same numbers")
    return combos, notes


def _matches(params: dict, combo: dict[str, str]) -> bool:
    return all(params.get(key) == yaml.safe_load(value) for key, value in combo.items())


def collect(rows: list[tuple[dict, dict]], combos: list[dict[str, str]]) -> list[tuple[dict, dict]]:
    """For each combination, the first experiment whose params match it (dvc lists the newest first)."""
    found = []
    for combo in combos:
        match = next((row for row in rows if _matches(row[0], combo)), None)
        if match is not None:
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
        base = yaml.safe_load(params_file.read_text())
        axes = [(key, _split(values)) for key, values in _pairs(grid, "--grid")]
        combos, notes = plan(base, _split(methods), _split(paradigms), [int(s) for s in _split(seeds)], axes,
                             _pairs(set_, "--set"), study_seeds)
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
    header = (f"<!-- python -m pipeline.matrix {' '.join(sys.argv[1:])} | "
              f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC | {len(rows)} of {len(combos)} experiments -->\n")
    typer.echo(table, nl=False)
    if missing:
        typer.echo(f"{missing} combination(s) have no results yet (failed or not run)", err=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(header + table)


if __name__ == "__main__":
    app()
