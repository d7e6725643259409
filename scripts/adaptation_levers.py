"""Choose the adaptation levers' defaults without labels (issue 25): for each lever setting, adapt the
generator, generate, encode, and score the synthetic set by a criterion fixed before any run:

    score = class fidelity × gap closed,
    gap closed = (F_unadapted − F) / (F_unadapted − F_floor)    (Fréchet distances on CLIP features)

Fidelity (the share of synthetic images the frozen CLIP assigns to their prompt class) says whether the
images keep their class; the gap closed says how far they moved towards the real target training images
(1 = as close as the real test images are). The unadapted generator scores 0, an adapter that makes
target-looking images of the wrong classes scores low. Each setting is scored on all its images and on
the fidelity filter's kept set. Hidden-label pool accuracies (text, auxiliary, fused) are recorded beside,
for the report only; the choice reads the score alone.

Runs over the current workspace (`data/prepared`, `data/features/real`: after `dvc repro features_real`),
one setting at a time, each written to `results/adaptation_levers/<world>/<setting>.json` as it ends; a
rerun skips what exists. `--report` prints the table and the chosen setting.

    python scripts/adaptation_levers.py            # the grid below
    python scripts/adaptation_levers.py --report
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import paths  # noqa: E402
from pipeline.auxiliary.domain_gap import classifier_accuracies, frechet_distance  # noqa: E402
from pipeline.auxiliary.prototypes import class_fidelity, class_prototypes, synthetic_selection  # noqa: E402
from pipeline.clip.features import encode_images  # noqa: E402
from pipeline.clip.models import load_clip  # noqa: E402
from pipeline.config.params import load_params  # noqa: E402
from pipeline.core.artifacts import read_json, read_table, write_json  # noqa: E402
from pipeline.diffusion.adapt import adapt_generator, prior_images, target_training_images  # noqa: E402
from pipeline.diffusion.generate import generate_synthetic  # noqa: E402
from pipeline.diffusion.loading import load_generator  # noqa: E402
from pipeline.diffusion.lora import save_adapter  # noqa: E402
from pipeline.diffusion.synthetic import read_synthetic  # noqa: E402
from pipeline.workspace import load_workspace  # noqa: E402

# name: (captions, prior_weight, adapter_scale); None = the unadapted generator (the reference)
GRID = {
    "unadapted": None,
    "domain": ("domain", 0.0, 1.0),
    "domain-scale0.5": ("domain", 0.0, 0.5),
    "domain-prior0.1": ("domain", 0.1, 1.0),
    "domain-prior0.3": ("domain", 0.3, 1.0),
    "domain-prior1": ("domain", 1.0, 1.0),
    "domain-prior1-scale0.5": ("domain", 1.0, 0.5),
    "pseudolabel": ("pseudolabel", 0.0, 1.0),
    "pseudolabel-prior1": ("pseudolabel", 1.0, 1.0),
}


def _world(params) -> str:
    demo = params.dataset.demo
    return f"{params.dataset.name}-{demo.preset}-seed{demo.seed}" if params.dataset.name == "demo" else params.dataset.name


def _synthetic(params, setting, workspace, scratch: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    device, timings = torch.device("cpu"), {}
    adapter, generate = None, params.generate
    if setting is not None:
        captions, prior_weight, scale = setting
        settings = params.adapt.model_copy(update={"enabled": True, "captions": captions, "prior_weight": prior_weight})
        manifest, _ = read_table(paths.MANIFEST, columns=["id", "split", "path", "image"])
        run_params = params.model_copy(update={"adapt": settings})
        data = target_training_images(run_params, manifest, workspace)
        generate_synthetic(run_params.prior_sample_plan(), workspace.class_names, params.generate.seed, scratch / "prior", progress=False)
        pipe = load_generator(params.generate.model, device, torch.float32)
        started = time.perf_counter()
        state = adapt_generator(pipe, data, settings, device, progress=False,
                                prior=prior_images(read_synthetic(scratch / "prior")))
        timings["adapt_s"] = time.perf_counter() - started
        adapter = scratch / "adapter"
        save_adapter(state, adapter)
        generate = generate.model_copy(update={"adapter_scale": scale})
    started = time.perf_counter()
    generate_synthetic(generate, workspace.class_names, generate.seed, scratch / "synthetic", progress=False,
                       adapter=adapter)
    timings["generate_s"] = time.perf_counter() - started
    frame = read_synthetic(scratch / "synthetic")
    clip = load_clip(params.clip.arch, params.clip.pretrained, device)
    features = encode_images(clip, frame, batch_size=256, num_workers=0, device=device, desc="synthetic")
    return features, frame["label"].to_numpy(dtype=np.int64), timings


def measure(name: str, out: Path) -> dict:
    params = load_params(ROOT / "params.yaml")
    workspace = load_workspace(with_synthetic=False)
    train, test = workspace.split("train"), workspace.split("test")
    real, truth = workspace.real[train], workspace.manifest.loc[train, "label"].to_numpy()
    with tempfile.TemporaryDirectory() as scratch:
        features, labels, timings = _synthetic(params, GRID[name], workspace, Path(scratch))
    result = {"setting": name, "grid": GRID[name], "timings": timings,
              "frechet_floor": frechet_distance(real, workspace.real[test])}
    weights = workspace.zero_shot_weights
    for subset, fidelity_filter in (("all", False), ("kept", True)):
        kept = synthetic_selection(features, labels, weights, None, fidelity_filter)
        fidelity, per_class = class_fidelity(features[kept], labels[kept], weights)
        prototypes = class_prototypes(features[kept], labels[kept], len(workspace.class_names), None, "prototype")
        hidden = {f"tau_{tau}": classifier_accuracies(real, truth, weights, prototypes, tau, 1.0) for tau in (100.0, "auto")}
        result[subset] = {"images": int(kept.sum()), "fidelity": fidelity, "frechet": frechet_distance(features[kept], real),
                          "fidelity_per_class": per_class.tolist(), "hidden_label_pool_accuracy": hidden}
    write_json(out / f"{name}.json", result)
    return result


def report(out: Path) -> None:
    runs = {path.stem: read_json(path) for path in sorted(out.glob("*.json"))}
    if "unadapted" not in runs:
        raise SystemExit("no unadapted reference measured yet")
    reference, floor = runs["unadapted"]["all"]["frechet"], runs["unadapted"]["frechet_floor"]
    rows = []
    for name, run in runs.items():
        for subset in ("all", "kept"):
            part = run[subset]
            closed = (reference - part["frechet"]) / (reference - floor)
            hidden = part["hidden_label_pool_accuracy"]
            rows.append((part["fidelity"] * closed, name, subset, part["images"], part["fidelity"], part["frechet"],
                         closed, hidden["tau_100.0"]["auxiliary"], hidden["tau_auto"]["fused"],
                         hidden["tau_100.0"]["text"]))
    print(f"{'setting':<24} {'set':<5} {'images':>6} {'fidelity':>8} {'Fréchet':>8} {'closed':>7} {'score':>6}"
          f"   hidden: {'aux':>5} {'fused(auto)':>11} {'text':>5}")
    for score, name, subset, images, fidelity, frechet, closed, aux, fused, text in sorted(rows, reverse=True):
        print(f"{name:<24} {subset:<5} {images:>6} {100 * fidelity:>7.1f}% {frechet:>8.3f} {closed:>7.2f} {score:>6.3f}"
              f"           {100 * aux:>5.1f} {100 * fused:>11.1f} {100 * text:>5.1f}")
    best = max(rows)
    print(f"\nchosen by the label-free score: {best[1]} ({best[2]} images), score {best[0]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="*", default=list(GRID))
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    out = ROOT / "results" / "adaptation_levers" / _world(load_params(ROOT / "params.yaml"))
    out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        torch.set_num_threads(2)
        for name in args.settings:
            if (out / f"{name}.json").exists():
                print(f"{name}: measured already", flush=True)
                continue
            result = measure(name, out)
            print(f"{name}: fidelity {100 * result['all']['fidelity']:.1f}%, Fréchet {result['all']['frechet']:.3f}, "
                  f"{result['timings']}", flush=True)
    report(out)


if __name__ == "__main__":
    main()
