"""Every param a stage's code reads is declared in that stage's `params` in dvc.yaml (or is one of the
few keys that cannot change an output), so `dvc exp run -S key=value` re-runs every stage the key
reaches. Measured, not read: each stage runs in-process on the tiny demo project while every read of
a params field is recorded."""

from __future__ import annotations

import importlib

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.config.params import Params
from pipeline.config.sections import _Strict

pytestmark = pytest.mark.e2e

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]

# Read by stages, yet no output depends on them (each is held by its own test): where work runs,
# where caches live, how often a resumable state is saved, and what a log line names.
OUTPUT_NEUTRAL = {
    "compute": "where shards run: tests/runtime/test_compute.py (the same bytes for any backend and worker count)",
    "clip.device": "where CLIP runs", "generate.device": "where the generator runs",
    "adapt.device": "where the adapter trains", "train.device": "where training runs",
    "generate.cache_dir": "where finished shards are kept (keyed by everything that sets their pixels)",
    "train.checkpoint_every": "how often a resumable state is saved: tests/training (resumed = uninterrupted)",
    "clip.num_workers": "how many loader processes decode images (the same rows, in order)",
}

# The DAG in order: (dvc.yaml stage, module, command arguments).
STAGES = [("check", "check", []), ("prepare", "prepare", []), ("features_real", "features", ["real"]),
          ("adapt", "adapt", []), ("generate", "generate", []), ("features_synthetic", "features", ["synthetic"]),
          ("auxiliary", "auxiliary", []), ("diagnose", "diagnose", []), ("pseudolabel", "pseudolabel", []),
          ("train", "train", []), ("evaluate", "evaluate", [])]


def _section_paths(model: type[_Strict], prefix: str = "") -> dict[type, str]:
    """Each schema class and the dotted prefix of its fields (every section class appears once)."""
    paths = {model: prefix}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, _Strict):
            paths.update(_section_paths(annotation, f"{prefix}{name}."))
    return paths


def _covered(key: str, declared: list[str]) -> bool:
    return any(key == entry or key.startswith(entry + ".") for entry in declared)


@pytest.fixture
def recorded_reads(monkeypatch):
    """The dotted params keys whose values are read (leaves only), cleared when a stage's params load.

    A section copied with updates (`generate.model_copy(update={"images_per_class": 0})`, a plan) keeps
    the original's other fields, so reading those counts; reading an updated field does not, since its
    value came from whatever computed the update, and that read was recorded where it happened."""
    paths = _section_paths(Params)
    reads: set[str] = set()
    overridden: dict[int, set[str]] = {}
    copies = []  # kept alive so that no later object takes a copy's id
    original_getattribute, original_copy = _Strict.__getattribute__, _Strict.model_copy

    def getattribute(self, name):
        value = original_getattribute(self, name)
        cls = type(self)
        if (cls in paths and name in cls.model_fields and not isinstance(value, _Strict)
                and name not in overridden.get(id(self), ())):
            reads.add(paths[cls] + name)  # a leaf value; reaching a section on the way reads nothing yet
        return value

    def model_copy(self, *, update=None, deep=False):
        copy = original_copy(self, update=update, deep=deep)
        overridden[id(copy)] = set(update or ()) | overridden.get(id(self), set())
        copies.append(copy)
        return copy

    monkeypatch.setattr(_Strict, "__getattribute__", getattribute)
    monkeypatch.setattr(_Strict, "model_copy", model_copy)
    return reads


def test_every_param_a_stage_reads_is_a_declared_param(project, recorded_reads, monkeypatch):
    project(train__epochs=2, pseudolabel__rounds=2)
    declared = {name: [p if isinstance(p, str) else next(iter(p)) for p in stage.get("params", [])]
                for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items()}
    undeclared = {}
    for name, module_name, arguments in STAGES:
        module = importlib.import_module(f"stages.{module_name}")
        load = module.load_params

        def loaded(*args, _load=load, **kwargs):
            params = _load(*args, **kwargs)
            recorded_reads.clear()  # validation reads every field; what counts is what the stage reads after
            return params

        monkeypatch.setattr(module, "load_params", loaded)
        result = CliRunner().invoke(module.app, arguments)
        assert result.exit_code == 0, (name, result.output)
        if name == "check":  # it validates every key by design (always_changed; its outputs are fingerprints)
            continue
        missed = sorted(key for key in recorded_reads
                        if not _covered(key, declared[name]) and not _covered(key, list(OUTPUT_NEUTRAL)))
        if missed:
            undeclared[name] = missed
    assert undeclared == {}, undeclared
