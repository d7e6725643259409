"""World design for the demo presets: the demo CLIP's zero-shot accuracy on a world's target test
split, for candidate shift-knob settings and study seeds (`dataset.demo.seed`).

    python scripts/calibrate_worlds.py                        # the presets in pipeline/demo/presets.yaml
    python scripts/calibrate_worlds.py --candidate 'contrast=[0.8,1.0]' 'noise=4' ...

Calibrating a world on its own labels is world design, not method tuning: no method's value is chosen
here. Every line lands in `results/worlds/calibration.csv` (appended), the record of how the presets
were chosen.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.clip.features import encode_images, encode_prompts  # noqa: E402
from pipeline.clip.models import load_clip  # noqa: E402
from pipeline.config.params import WORLD_SHIFT_KNOBS, WorldParams, world_presets  # noqa: E402
from pipeline.config.protocols import PROTOCOLS  # noqa: E402
from pipeline.datasets.demo import demo_dataset  # noqa: E402
from pipeline.workspace import zero_shot_weights  # noqa: E402

RECORD = ROOT / "results" / "worlds" / "calibration.csv"


def zero_shot(world: WorldParams, clip, templates: list[str]) -> float:
    dataset = demo_dataset(world.model_copy(update={"images_per_class": 2}))
    test = dataset.frame[dataset.frame["split"] == "test"]
    features = encode_images(clip, test, 256, 0, torch.device("cpu"), desc="test")
    text, embeddings = encode_prompts(clip, templates, dataset.class_names, torch.device("cpu"))
    weights = zero_shot_weights(text, embeddings, len(dataset.class_names))
    return float(((features @ weights.T).argmax(1) == test["label"].to_numpy()).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", nargs="*", action="append", default=[],
                        help="knob=value (YAML) assignments over the default preset; repeat the option per candidate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--test-images-per-class", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    clip = load_clip("demo-clip", str(ROOT / "data" / "demo" / "demo-clip.safetensors"), torch.device("cpu"))
    templates = PROTOCOLS["project"].templates
    candidates = [(name, {"preset": name}) for name in world_presets()] if not args.candidate else [
        (" ".join(items), {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in items)})
        for items in args.candidate]
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    new_file = not RECORD.exists()
    with RECORD.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new_file:
            writer.writerow(["candidate", "knobs", "seeds", "zero_shot_per_seed", "zero_shot_mean"])
        for label, knobs in candidates:
            world = WorldParams(test_images_per_class=args.test_images_per_class, **knobs)
            scores = [zero_shot(world.model_copy(update={"seed": seed}), clip, templates) for seed in args.seeds]
            resolved = {knob: getattr(world, knob) for knob in WORLD_SHIFT_KNOBS}
            writer.writerow([label, json.dumps(resolved), " ".join(map(str, args.seeds)),
                             " ".join(f"{100 * s:.1f}" for s in scores), f"{100 * np.mean(scores):.1f}"])
            handle.flush()
            print(f"{label:<60} zero-shot {' / '.join(f'{100 * s:.1f}' for s in scores)}  mean {100 * np.mean(scores):.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
