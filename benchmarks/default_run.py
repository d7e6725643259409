"""What one experiment costs: a fresh default `dvc repro`, stage by stage, old code against new, and
the text tower's training step (the train stage's floor) through the old and the new forward.

    python benchmarks/default_run.py                      # both parts, baseline 192f5a7 vs HEAD
    python benchmarks/default_run.py --part tower         # the text-tower step only (a few minutes)
    python benchmarks/default_run.py --part repro --baseline 192f5a7 --current HEAD

`repro`: each revision is cloned into a scratch folder (committed code only, a fresh `.cache`) and
`dvc repro` runs there with this environment's Python; every stage's wall time is taken from when
DVC announces it to when the next one starts (so it includes the stage's process start-up). Each
revision's figures land in `results/default_run/<rev>.json` as it finishes, and a rerun reuses them
(`--fresh` measures again), so a long comparison survives an interrupted session.

`tower`: seconds of one training step's floor (the C prompts forward, a loss, backward) with
`PromptLearner.forward_reference` (the plain C-sequence tower) and `forward` (shared prefix), in
one process, interleaved; per text tower, class count and context length.
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


def _sha(revision: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()


def time_repro(revision: str) -> dict:
    """A fresh clone of `revision`, `dvc repro` in it; wall seconds per stage and in all."""
    with tempfile.TemporaryDirectory(prefix="default-run-") as scratch:
        clone = Path(scratch) / "project"
        subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "checkout", "--quiet", revision], cwd=clone, check=True)
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


def repro_part(baseline: str, current: str, fresh: bool) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs = []
    for revision in (baseline, current):
        sha = _sha(revision)
        path = RESULTS / f"{sha}.json"
        if path.exists() and not fresh:
            print(f"{sha}: reusing {path.relative_to(ROOT)}", flush=True)
        else:
            print(f"{sha}: fresh clone, dvc repro ...", flush=True)
            path.write_text(json.dumps(time_repro(sha), indent=2) + "\n")
        runs.append(json.loads(path.read_text()))
    old, new = runs
    print(f"\n{'stage':<20} {old['revision']:>10} {new['revision']:>10} {'ratio':>7}")
    for name in old["stages"]:
        a, b = old["stages"][name], new["stages"].get(name, float("nan"))
        print(f"{name:<20} {a:>9.1f}s {b:>9.1f}s {b / a:>7.3f}")
    print(f"{'dvc repro':<20} {old['seconds']:>9.1f}s {new['seconds']:>9.1f}s {new['seconds'] / old['seconds']:>7.3f}"
          f"   ({old['seconds'] / new['seconds']:.2f}x faster)")
    print(f"{'accuracy':<20} {100 * old['accuracy']:>9.2f}% {100 * new['accuracy']:>9.2f}%")


def tower_part(archs: list[str], classes: list[int], contexts: list[int], repeats: int) -> None:
    import numpy as np
    import torch

    from pipeline.models import load_clip
    from pipeline.prompts import PromptLearner

    def step(forward, learner) -> None:
        learner.ctx.grad = None
        features = forward()
        (100 * images @ features.T).logsumexp(dim=1).mean().backward()

    print(f"text-tower step (forward + backward over the C prompts, batch 32), {torch.get_num_threads()} threads, "
          f"median of {repeats}")
    print(f"{'tower':<10} {'C':>5} {'ctx':>4} {'old s':>9} {'new s':>9} {'new/old':>8}")
    for arch in archs:
        clip = load_clip(arch, "random", torch.device("cpu"))
        images = torch.nn.functional.normalize(torch.randn(32, clip.model.visual.output_dim), dim=-1)
        for count in classes:
            names = [f"class number {c}" for c in range(count)]
            for n_ctx in contexts:
                ctx_init = "a photo of a" if n_ctx == 4 else ""
                learner = PromptLearner(clip.model, clip.tokenizer, names, n_ctx=n_ctx, ctx_init=ctx_init)
                arms = {"old": learner.forward_reference, "new": learner.forward}
                times = {name: [] for name in arms}
                for forward in arms.values():
                    step(forward, learner)  # warm-up
                for _ in range(repeats):  # interleaved, so drifting load hits both arms alike
                    for name, forward in arms.items():
                        start = time.perf_counter()
                        step(forward, learner)
                        times[name].append(time.perf_counter() - start)
                old, new = (float(np.median(times[name])) for name in arms)
                print(f"{arch:<10} {count:>5} {n_ctx:>4} {old:>9.4f} {new:>9.4f} {new / old:>8.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "repro", "tower"], default="all")
    parser.add_argument("--baseline", default="192f5a7")
    parser.add_argument("--current", default="HEAD")
    parser.add_argument("--fresh", action="store_true", help="measure again even where results exist")
    parser.add_argument("--archs", nargs="+", default=["demo-clip", "ViT-B-32"])
    parser.add_argument("--classes", type=int, nargs="+", default=[24, 102, 1000])
    parser.add_argument("--contexts", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.part in ("all", "tower"):
        tower_part(args.archs, args.classes, args.contexts, args.repeats)
    if args.part in ("all", "repro"):
        repro_part(args.baseline, args.current, args.fresh)


if __name__ == "__main__":
    main()
