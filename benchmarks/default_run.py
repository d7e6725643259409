"""What one experiment costs: a fresh default `dvc repro`, stage by stage, old code against new, and
the text tower's training step (the train stage's floor) through the old and the new forward.

    python benchmarks/default_run.py                      # both parts, baseline 192f5a7 vs HEAD
    python benchmarks/default_run.py --part tower         # the text-tower step only (a few minutes)
    python benchmarks/default_run.py --part repro --baseline 192f5a7 --current HEAD
    python benchmarks/default_run.py --part seeds --seeds 0 1 2   # the default run's accuracy over study seeds
    python benchmarks/default_run.py --part tests         # the README's test command, baseline vs current

`repro`: each revision is cloned into a scratch folder (committed code only, a fresh `.cache`) and
`dvc repro` runs there with this environment's Python; every stage's wall time is taken from when
DVC announces it to when the next one starts (so it includes the stage's process start-up). Each
revision's figures land in `results/default_run/<rev>.json` as it finishes, and a rerun reuses them
(`--fresh` measures again), so a long comparison survives an interrupted session.

`tower`: seconds of one training step's floor (the C prompts forward, a loss, backward) with
`PromptLearner.forward_reference` (the plain C-sequence tower) and `forward` (shared prefix), in
one process, interleaved; per text tower, class count and context length. `--compile` adds the
shared-prefix step under `torch.compile` (its one-off compile time printed apart).

`seeds`: the default run of the current revision with `seed = adapt.seed = generate.seed = s`, each in
a fresh clone; accuracies land in `results/default_run/<rev>-seeds.json` seed by seed (resumable).

`tests`: the README's test command as a new user runs it, for each revision: a fresh clone, a new
virtual environment, `pip install -e ".[test]"` (timed apart) and `python -m pytest`; pytest's wall
time and its counts land in `results/default_run/<rev>-tests.json` (resumable like `repro`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "default_run"
STAGE_LINE = re.compile(r"^Running stage '([^']+)'")
COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")


def _sha(revision: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()


def time_repro(revision: str) -> dict:
    """A fresh clone of `revision`, `dvc repro` in it; wall seconds per stage and in all."""
    with tempfile.TemporaryDirectory(prefix="default-run-") as scratch:
        clone = _fresh_clone(revision, scratch)
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        stages: dict[str, float] = {}
        current, mark = None, time.perf_counter()
        started = mark
        process = subprocess.Popen([str(Path(sys.executable).parent / "dvc"), "repro"], cwd=clone, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        log = []
        for line in process.stdout:
            log.append(line)
            found = STAGE_LINE.match(line)
            if found:
                now = time.perf_counter()
                if current is not None:
                    stages[current] = now - mark
                current, mark = found.group(1), now
        process.wait()
        end = time.perf_counter()
        if current is not None:
            stages[current] = end - mark
        if process.returncode:
            raise SystemExit(f"dvc repro failed at {revision}:\n{''.join(log[-30:])}")
        metrics = json.loads((clone / "metrics.json").read_text())
    return {"revision": revision, "seconds": end - started, "stages": stages, "accuracy": metrics["accuracy"]}


def _fresh_clone(revision: str, scratch: str) -> Path:
    clone = Path(scratch) / "project"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "--quiet", revision], cwd=clone, check=True)
    return clone


def seeds_part(current: str, seeds: list[int]) -> None:
    """The default run's target accuracy with every random choice of the run set by one seed."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    sha = _sha(current)
    path = RESULTS / f"{sha}-seeds.json"
    record = json.loads(path.read_text()) if path.exists() else {"revision": sha, "accuracy": {}, "seconds": {}}
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for seed in seeds:
        if str(seed) in record["accuracy"]:
            print(f"seed {seed}: reusing {path.relative_to(ROOT)}", flush=True)
            continue
        print(f"seed {seed}: fresh clone of {sha}, dvc exp run ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="default-seed-") as scratch:
            clone = _fresh_clone(sha, scratch)
            start = time.perf_counter()
            sets = [arg for key in ("seed", "adapt.seed", "generate.seed") for arg in ("-S", f"{key}={seed}")]
            done = subprocess.run([str(Path(sys.executable).parent / "dvc"), "exp", "run", *sets], cwd=clone, env=env,
                                  capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"dvc exp run failed for seed {seed}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
            record["seconds"][str(seed)] = time.perf_counter() - start
            record["accuracy"][str(seed)] = json.loads((clone / "metrics.json").read_text())["accuracy"]
        path.write_text(json.dumps(record, indent=2) + "\n")
    import numpy as np

    values = np.array([record["accuracy"][str(s)] for s in seeds]) * 100
    print(f"{sha}: target accuracy over seeds {seeds}: " + " / ".join(f"{v:.2f}" for v in values)
          + f"  mean {values.mean():.2f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.2f}")


def _both(baseline: str, current: str, suffix: str, measure, what: str, fresh: bool) -> list[dict]:
    """The record of each revision, measured where `results/default_run/<sha><suffix>.json` is missing."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs = []
    for revision in (baseline, current):
        sha = _sha(revision)
        path = RESULTS / f"{sha}{suffix}.json"
        if path.exists() and not fresh:
            print(f"{sha}: reusing {path.relative_to(ROOT)}", flush=True)
        else:
            print(f"{sha}: fresh clone, {what} ...", flush=True)
            path.write_text(json.dumps(measure(sha), indent=2) + "\n")
        runs.append(json.loads(path.read_text()))
    return runs


def time_tests(revision: str) -> dict:
    """The README's test command in a fresh clone with a new virtual environment."""
    with tempfile.TemporaryDirectory(prefix="test-suite-") as scratch:
        clone = _fresh_clone(revision, scratch)
        env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
        python = clone / ".venv" / "bin" / "python"
        start = time.perf_counter()
        subprocess.run(["python3", "-m", "venv", ".venv"], cwd=clone, env=env, check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", ".[test]"], cwd=clone, env=env, check=True,
                       capture_output=True)
        installed = time.perf_counter()
        env["PATH"] = f"{python.parent}:{env['PATH']}"
        done = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=clone, env=env,
                              capture_output=True, text=True)
        end = time.perf_counter()
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]
    return {"revision": revision, "install_seconds": installed - start, "seconds": end - installed,
            "returncode": done.returncode, "summary": summary,
            "counts": {kind.rstrip("s") if kind.startswith("error") else kind: int(n)
                       for n, kind in COUNT.findall(summary)}}


def tests_part(baseline: str, current: str, fresh: bool) -> None:
    old, new = _both(baseline, current, "-tests", time_tests, "a new environment and the test command", fresh)
    print(f"\n{'':<20} {old['revision']:>10} {new['revision']:>10} {'ratio':>7}")
    print(f"{'install':<20} {old['install_seconds']:>9.1f}s {new['install_seconds']:>9.1f}s")
    print(f"{'pytest':<20} {old['seconds']:>9.1f}s {new['seconds']:>9.1f}s {new['seconds'] / old['seconds']:>7.3f}"
          f"   ({old['seconds'] / new['seconds']:.2f}x faster)")
    for kind in sorted(set(old["counts"]) | set(new["counts"])):
        print(f"{kind:<20} {old['counts'].get(kind, 0):>10} {new['counts'].get(kind, 0):>10}")
    per_test = [run["seconds"] / max(1, run["counts"].get("passed", 0)) for run in (old, new)]
    print(f"{'seconds per test':<20} {per_test[0]:>9.2f}s {per_test[1]:>9.2f}s {per_test[1] / per_test[0]:>7.3f}")
    for run in (old, new):
        if run["returncode"]:
            print(f"{run['revision']}: pytest exited {run['returncode']}: {run['summary']}")


def repro_part(baseline: str, current: str, fresh: bool) -> None:
    old, new = _both(baseline, current, "", time_repro, "dvc repro", fresh)
    print(f"\n{'stage':<20} {old['revision']:>10} {new['revision']:>10} {'ratio':>7}")
    for name in old["stages"]:
        a, b = old["stages"][name], new["stages"].get(name, float("nan"))
        print(f"{name:<20} {a:>9.1f}s {b:>9.1f}s {b / a:>7.3f}")
    print(f"{'dvc repro':<20} {old['seconds']:>9.1f}s {new['seconds']:>9.1f}s {new['seconds'] / old['seconds']:>7.3f}"
          f"   ({old['seconds'] / new['seconds']:.2f}x faster)")
    print(f"{'accuracy':<20} {100 * old['accuracy']:>9.2f}% {100 * new['accuracy']:>9.2f}%")


def tower_part(archs: list[str], classes: list[int], contexts: list[int], repeats: int, compiled: bool) -> None:
    import numpy as np
    import torch

    from pipeline.clip.models import load_clip
    from pipeline.clip.prompts import PromptLearner

    def step(forward, learner) -> None:
        learner.ctx.grad = None
        features = forward()
        (100 * images @ features.T).logsumexp(dim=1).mean().backward()

    print(f"text-tower step (forward + backward over the C prompts, batch 32), {torch.get_num_threads()} threads, "
          f"median of {repeats}")
    header = f"{'tower':<10} {'C':>5} {'ctx':>4} {'old s':>9} {'new s':>9} {'new/old':>8}"
    print(header + (f" {'compiled s':>11} {'comp/new':>9} {'compile s':>10}" if compiled else ""))
    for arch in archs:
        clip = load_clip(arch, "random", torch.device("cpu"))
        images = torch.nn.functional.normalize(torch.randn(32, clip.model.visual.output_dim), dim=-1)
        for count in classes:
            names = [f"class number {c}" for c in range(count)]
            for n_ctx in contexts:
                ctx_init = "a photo of a" if n_ctx == 4 else ""
                learner = PromptLearner(clip.model, clip.tokenizer, names, n_ctx=n_ctx, ctx_init=ctx_init)
                arms = {"old": learner.forward_reference, "new": learner.forward}
                compile_seconds = None
                if compiled:
                    arms["compiled"] = torch.compile(learner.forward)
                    start = time.perf_counter()
                    step(arms["compiled"], learner)  # compiles forward and backward
                    compile_seconds = time.perf_counter() - start
                times = {name: [] for name in arms}
                for forward in arms.values():
                    step(forward, learner)  # warm-up
                for _ in range(repeats):  # interleaved, so drifting load hits both arms alike
                    for name, forward in arms.items():
                        start = time.perf_counter()
                        step(forward, learner)
                        times[name].append(time.perf_counter() - start)
                old, new = (float(np.median(times[name])) for name in ("old", "new"))
                line = f"{arch:<10} {count:>5} {n_ctx:>4} {old:>9.4f} {new:>9.4f} {new / old:>8.3f}"
                if compiled:
                    fast = float(np.median(times["compiled"]))
                    line += f" {fast:>11.4f} {fast / new:>9.3f} {compile_seconds:>10.1f}"
                print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "repro", "tower", "seeds", "tests"], default="all")
    parser.add_argument("--baseline", default="192f5a7")
    parser.add_argument("--current", default="HEAD")
    parser.add_argument("--fresh", action="store_true", help="measure again even where results exist")
    parser.add_argument("--archs", nargs="+", default=["demo-clip", "ViT-B-32"])
    parser.add_argument("--classes", type=int, nargs="+", default=[24, 102, 1000])
    parser.add_argument("--contexts", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="tower: add the torch.compile'd shared-prefix step")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    if args.part in ("all", "tower"):
        tower_part(args.archs, args.classes, args.contexts, args.repeats, args.compile)
    if args.part in ("all", "repro"):
        repro_part(args.baseline, args.current, args.fresh)
    if args.part == "seeds":
        seeds_part(args.current, args.seeds)
    if args.part == "tests":
        tests_part(args.baseline, args.current, args.fresh)


if __name__ == "__main__":
    main()
