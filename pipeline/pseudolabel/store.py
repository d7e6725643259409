"""The pseudo-label store (`data/pseudolabels/`): the selected images' labels and candidate sets
(Parquet) and their summary (JSON), written by `pseudolabel`, read back by `train`; the summary's
keys are the ones `train` reports for its final round and `evaluate` copies into the metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core import paths
from pipeline.core.artifacts import read_table, write_json, write_table
from pipeline.core.candidates import Candidates

SUMMARY_KEYS = ("n_pseudo_labels", "pseudo_label_accuracy", "candidate_coverage", "mean_candidate_set_size")


def pseudo_label_summary(pseudo: Candidates, true_labels: np.ndarray) -> dict:
    """How many pseudo-labels, how many right, how often the true class is in the set, the sets' size
    (analysis only: the true labels never reach a method)."""
    return {"n_pseudo_labels": len(pseudo), "pseudo_label_accuracy": pseudo.accuracy(true_labels),
            "candidate_coverage": pseudo.coverage(true_labels), "mean_candidate_set_size": pseudo.mean_set_size()}


def pseudo_labels_frame(pool_ids: np.ndarray, pseudo: Candidates) -> pd.DataFrame:
    """One row per selected image: its assigned class, confidence, candidate classes and weights."""
    return pd.DataFrame({"id": pool_ids[pseudo.rows], "pseudo_label": pseudo.labels.astype(np.int64),
                         "confidence": pseudo.confidence.astype(np.float32),
                         "candidates": pseudo.sets(), "candidate_weights": pseudo.set_weights()})


def write_pseudo_labels(pool_ids: np.ndarray, pseudo: Candidates, true_labels: np.ndarray, method: str,
                        n_unlabeled: int, out: Path = paths.PSEUDOLABELS,
                        summary_file: Path = paths.PSEUDOLABEL_SUMMARY) -> dict:
    """The pseudo-label table and its summary; returns the summary."""
    write_table(out, pseudo_labels_frame(pool_ids, pseudo), metadata={"method": method})
    summary = {"method": method, "n_unlabeled": n_unlabeled, **pseudo_label_summary(pseudo, true_labels)}
    write_json(summary_file, summary)
    return summary


def read_pseudo_labels(pool_ids: np.ndarray, n_classes: int) -> Candidates:
    frame, _ = read_table(paths.PSEUDOLABELS)
    row_of = pd.Series(np.arange(len(pool_ids)), index=pool_ids)
    weights = np.zeros((len(frame), n_classes), dtype=np.float32)
    for index, (classes, values) in enumerate(zip(frame["candidates"], frame["candidate_weights"])):
        weights[index, np.asarray(classes, dtype=np.int64)] = values
    return Candidates(row_of[frame["id"]].to_numpy(), frame["pseudo_label"].to_numpy(dtype=np.int64), weights,
                      frame["confidence"].to_numpy(dtype=np.float32))
