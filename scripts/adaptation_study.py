"""Measure what generator adaptation does to the synthetic images, without DVC, from a finished run.

For each variant (`none`, `domain` or `pseudolabel` captions; a seed used for both the adapter and the
generator; images per class) this runs the same library calls as the `adapt`, `generate` and
`features synthetic` stages over the current `data/prepared` and `data/features/real`, then writes
`<out>/<variant>/synthetic.parquet` (the synthetic features, for `scripts/methods_direct.py`) and
`<out>/<variant>/diagnostics.json`: the domain gap and the training-pool accuracy of the text,
auxiliary and fused classifiers, for every prefix of the images (images are seeded per class and
index, so the first n of 128 are exactly what a 16-image run makes).

    python scripts/adaptation_study.py studies/adaptation none:0:32 domain:0:128 pseudolabel:1:32
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.auxiliary.domain_gap import classifier_accuracies, domain_gap
from pipeline.auxiliary.prototypes import class_prototypes
from pipeline.clip.features import encode_images
from pipeline.clip.models import load_clip
from pipeline.config.params import load_params
from pipeline.core import paths
from pipeline.core.artifacts import read_table, write_json, write_table
from pipeline.diffusion.adapt import adapt_generator, target_training_images
from pipeline.diffusion.generate import generate_synthetic
from pipeline.diffusion.loading import load_generator
from pipeline.diffusion.lora import save_adapter
from pipeline.diffusion.synthetic import read_synthetic
from pipeline.workspace import load_workspace

PREFIXES = (16, 32, 64, 128)


def study(out: Path, variant: str) -> dict:
    captions, seed, per_class = variant.split(":")
    seed, per_class = int(seed), int(per_class)
    params = load_params()
    device = torch.device("cpu")
    workspace = load_workspace(with_synthetic=False)
    folder = out / variant.replace(":", "-")
    folder.mkdir(parents=True, exist_ok=True)
    timings = {}
    adapter, caption_accuracy = None, None
    if captions != "none":
        settings = params.adapt.model_copy(update={"enabled": True, "captions": captions, "seed": seed})
        run_params = params.model_copy(update={"adapt": settings})
        manifest, _ = read_table(paths.MANIFEST, columns=["id", "split", "path", "image"])
        data = target_training_images(run_params, manifest, workspace if captions == "pseudolabel" else None)
        caption_accuracy = data.true_accuracy
        pipe = load_generator(params.generate.model, device, torch.float32)
        started = time.perf_counter()
        save_adapter(adapt_generator(pipe, data, settings, device, progress=False), folder)
        timings["adapt_s"] = time.perf_counter() - started
        adapter = folder
    generate = params.generate.model_copy(update={"seed": seed, "images_per_class": per_class})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as shards:
        generate_synthetic(generate, workspace.class_names, seed, Path(shards), progress=False, adapter=adapter)
        frame = read_synthetic(Path(shards))
    timings["generate_s"] = time.perf_counter() - started
    clip = load_clip(params.clip.arch, params.clip.pretrained, device)
    synthetic = encode_images(clip, frame, batch_size=256, num_workers=0, device=device, desc=variant)
    labels = frame["label"].to_numpy(dtype=np.int64)
    write_table(folder / "synthetic.parquet", frame[["id", "label"]], synthetic)

    train, test = workspace.split("train"), workspace.split("test")
    features, truth = workspace.real[train], workspace.manifest.loc[train, "label"].to_numpy()
    index = frame.groupby("label").cumcount().to_numpy()
    rows = {}
    for prefix in [p for p in PREFIXES if p <= per_class]:
        keep = index < prefix
        gap = domain_gap(synthetic[keep], features, workspace.real[test])
        accuracy = {}
        for score in ("prototype", "mean_similarity"):
            for kept in (None, max(1, prefix // 2)):
                prototypes = class_prototypes(synthetic[keep], labels[keep], len(workspace.class_names), kept, score)
                measured = classifier_accuracies(features, truth, workspace.zero_shot_weights, prototypes,
                                                 params.auxiliary.temperature, params.pseudolabel.fusion_lambda)
                name = f"{score}_keep{'all' if kept is None else kept}"
                accuracy.update({"text": measured["text"], f"auxiliary_{name}": measured["auxiliary"],
                                 f"fused_{name}": measured["fused"]})
        rows[prefix] = {"domain_gap": gap, "train_pool_accuracy": accuracy}
    result = {"variant": variant, "timings": timings, "by_images_per_class": rows,
              "caption_accuracy": caption_accuracy}
    write_json(folder / "diagnostics.json", result)
    print(json.dumps({"variant": variant, **timings, **{f"{p}": {"frechet": r["domain_gap"]["frechet"],
                      "cos": r["domain_gap"]["cosine_mean"], "aux": r["train_pool_accuracy"]["auxiliary_prototype_keepall"],
                      "text": r["train_pool_accuracy"]["text"]} for p, r in rows.items()}}), flush=True)
    return result


if __name__ == "__main__":
    torch.set_num_threads(2)
    for item in sys.argv[2:]:
        study(Path(sys.argv[1]), item)
