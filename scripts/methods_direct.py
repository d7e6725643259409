"""Run many method configurations at once, without DVC, from the cached artifacts of a finished run.

The DVC experiments of `scripts/run_methods.sh` re-run `pseudolabel`, `train` and `evaluate` per
configuration; when only those stages differ, this runs the same library calls in parallel worker
processes (one torch thread each) over the same `data/prepared`, `data/features` and
`data/auxiliary`, and writes one JSON row per configuration ({"params": overrides, "metrics": ...})
that `scripts/results_table.py --direct FILE` merges with `dvc exp show`. Used where a machine has
more cores than the experiment queue can use (e.g. 16 cores: 16 configurations at a time).

    python scripts/methods_direct.py out.json 'method=cpl,paradigm=trzsl,seed=1' 'method=upl,train.ensemble=16'

Two extra keys swap the synthetic images (what `scripts/adaptation_study.py` wrote) without re-running
`generate`: `@synthetic=studies/adaptation/domain-0-128/synthetic.parquet` and `@per_class=64` (the
first 64 images of each class); the auxiliary classifier is then rebuilt from them as the
`auxiliary` stage would, with the configuration's `auxiliary.*`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time

import yaml


def _override(data: dict, assignment: str) -> None:
    key, _, value = assignment.partition("=")
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = yaml.safe_load(value)


def run(spec: str) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from pipeline.auxiliary.prototypes import class_prototypes
    from pipeline.clip.models import load_clip
    from pipeline.clip.prompts import PromptLearner
    from pipeline.config.params import parse_params
    from pipeline.core.artifacts import read_table
    from pipeline.datasets.paradigms import apply_paradigm
    from pipeline.datasets.source import Dataset
    from pipeline.evaluation.metrics import predict, split_metrics
    from pipeline.methods.catalog import build_method
    from pipeline.training.loop import run_ensemble
    from pipeline.workspace import load_workspace, training_pool

    data = yaml.safe_load(open("params.yaml"))
    overrides = [item for item in spec.split(",") if item]
    extra = dict(item[1:].split("=", 1) for item in overrides if item.startswith("@"))
    for assignment in overrides:
        if not assignment.startswith("@"):
            _override(data, assignment)
    params = parse_params(data)
    started = time.perf_counter()
    workspace = load_workspace()
    frame = workspace.manifest.assign(path=None, image=None)  # the paradigm only needs ids, splits, labels
    workspace.manifest = apply_paradigm(Dataset(frame, workspace.class_names), params.paradigm,
                                        params.paradigm_options, params.seed, params.protocol).drop(columns=["path", "image"])
    method = build_method(params)
    if "synthetic" in extra:
        frame, embeddings = read_table(extra["synthetic"])
        keep = frame.groupby("label").cumcount().to_numpy() < int(extra.get("per_class", 10**9))
        workspace.synthetic, workspace.synthetic_labels = embeddings[keep], frame["label"].to_numpy(np.int64)[keep]
    pool = training_pool(workspace, params.paradigm, with_prototypes=method.needs_prototypes and "synthetic" not in extra,
                         with_candidate_sets=method.needs_candidate_sets)
    if "synthetic" in extra:
        pool.prototypes = class_prototypes(workspace.synthetic, workspace.synthetic_labels, len(workspace.class_names),
                                           params.auxiliary.keep, params.auxiliary.score)
    first = method.pseudo_label(pool, workspace.zero_shot_weights)
    device = torch.device("cpu")
    clip = load_clip(params.clip.arch, params.clip.pretrained, device) if method.trains else None
    make_learner = lambda seed: PromptLearner(clip.model, clip.tokenizer, workspace.class_names,  # noqa: E731
                                              params.train.n_ctx, params.train.ctx_init, seed)
    ensemble = run_ensemble(method, make_learner, pool, workspace.zero_shot_weights, first, device)
    test = workspace.split("test")
    true = workspace.manifest.loc[test, "label"].to_numpy()
    metrics = split_metrics(true, predict(workspace.real[test], ensemble.class_weights), params.paradigm,
                            workspace.manifest.loc[test, "seen"].to_numpy(dtype=bool))
    pseudo = ensemble.members[0].pseudo
    metrics.update({"pseudo_label_accuracy": pseudo.accuracy(pool.true_labels), "n_pseudo_labels": len(pseudo),
                    "candidate_coverage": pseudo.coverage(pool.true_labels),
                    "mean_candidate_set_size": pseudo.mean_set_size()})
    print(f"{spec}: {metrics} ({time.perf_counter() - started:.0f} s)", flush=True)
    return {"params": data, "overrides": overrides, "metrics": {k: float(v) for k, v in metrics.items()},
            "seconds": time.perf_counter() - started}


def main(out: str, specs: list[str]) -> None:
    processes = int(os.environ.get("WORKERS", len(specs)))  # one torch thread each: at most the cores
    with multiprocessing.get_context("spawn").Pool(processes) as workers:
        rows = workers.map(run, specs, chunksize=1)
    with open(out, "w") as handle:
        json.dump([{**row, "metrics": {k: (None if v != v else v) for k, v in row["metrics"].items()}}
                   for row in rows], handle, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
