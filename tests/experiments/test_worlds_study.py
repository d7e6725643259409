"""The suite-of-worlds study script: every planned run is a valid params.yaml, study seeds set every
random key, and the page's paired differences are computed per seed from the record."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import worlds_study  # noqa: E402

from pipeline.config.params import parse_params  # noqa: E402
from pipeline.experiments.matrix import assign  # noqa: E402


def test_every_cell_is_a_valid_run_with_one_study_seed_and_none_repeats():
    cells = worlds_study.cells()
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    for cell in cells:
        data = json.loads(json.dumps(base))
        for key, value in cell["overrides"].items():
            assign(data, key, value)
        params = parse_params(data)
        seed = cell["seed"]
        assert (params.seed, params.adapt.seed, params.generate.seed, params.dataset.demo.seed) == (seed,) * 4
        assert params.dataset.demo.preset == cell["world"]
        assert params.train.epochs == 50 and params.pseudolabel.rounds == 10  # the recipe, never cut
    assert len({worlds_study.run_key(c) for c in cells}) == len(cells)
    ul = [c for c in cells if c["group"] == "ul"]
    assert len(ul) == len(worlds_study.METHODS) * 3 * 3
    assert cells[0]["world"] == "default"  # the most important cells first


def test_report_pairs_seeds_and_flags_the_fusion_margin(tmp_path, monkeypatch):
    rows = []
    accuracy = {"air_grip": [0.50, 0.46], "air_grip_unadapted": [0.47, 0.47], "grip": [0.44, 0.45]}
    for name, values in accuracy.items():
        for seed, value in enumerate(values):
            rows.append({"group": "ul", "cell": name, "world": "default", "seed": seed, "commit": "abcdef0",
                         "overrides": {}, "metrics": {"accuracy": value},
                         "diagnostics": {"fidelity": 0.5, "fidelity_unadapted": 0.98, "frechet": 0.1,
                                         "train_pool_accuracy": {"text": 0.34, "auxiliary": 0.40, "fused": 0.38}}})
    record = tmp_path / "runs.jsonl"
    record.write_text("".join(json.dumps(row) + "\n" for row in rows))
    monkeypatch.setattr(worlds_study, "RECORD", record)
    worlds_study.report(tmp_path / "worlds.md", tmp_path / "worlds.png")
    page = (tmp_path / "worlds.md").read_text()
    # adapted - unadapted per seed: +3.0 and -1.0 -> mean +1.0, sample std 2.83
    assert "| air_grip − air_grip_unadapted | – | +1.0 ± 2.8 [+3.0, -1.0] | – |" in page
    # fused - max(text, aux) = 38 - 40 = -2.0 on every run
    assert "-2.0 ± 0.0 (n=2)" in page
    assert (tmp_path / "worlds.png").stat().st_size > 0
    assert "| air_grip | – | 48.0 ± 2.8 (n=2) | – |" in page


def test_rows_of_a_mended_cell_from_before_the_mend_are_superseded_not_results(tmp_path, monkeypatch):
    head = worlds_study._git("rev-parse", "HEAD")
    parent = worlds_study._git("rev-parse", "HEAD~1")
    record = tmp_path / "runs.jsonl"
    rows = [{"group": "ul", "cell": "coft", "commit": parent}, {"group": "ul", "cell": "coft", "commit": head},
            {"group": "ul", "cell": "grip", "commit": parent}]
    record.write_text("".join(json.dumps(row) + "\n" for row in rows))
    monkeypatch.setattr(worlds_study, "RECORD", record)
    monkeypatch.setattr(worlds_study, "MENDED", {"coft": head})
    assert [(r["cell"], r["commit"]) for r in worlds_study.recorded()] == [("coft", head), ("grip", parent)]
    assert len(worlds_study.recorded(include_superseded=True)) == 3


def _ul_row(name: str, world: str, seed: int, accuracy: float, first: float, last: float) -> dict:
    return {"group": "ul", "cell": name, "world": world, "seed": seed, "commit": "abcdef0", "overrides": {},
            "metrics": {"accuracy": accuracy},
            "rounds": [{"pseudo_label_accuracy": first}, {"pseudo_label_accuracy": last}],
            "diagnostics": {"train_pool_accuracy": {"text": 0.30, "auxiliary": 0.30 + 0.02 * (seed + 1),
                                                    "fused": 0.36}}}


def test_goals_read_each_verdict_from_the_paired_seeds():
    # adapted - unadapted: +3 points in easy and default, -0.6 in hard -> average +1.8: missed (< 2)
    gain = {"easy": 0.03, "default": 0.03, "hard": -0.006}
    tables = {world: {} for world in worlds_study.WORLDS}
    for world in worlds_study.WORLDS:
        for seed in worlds_study.SEEDS:
            for name, accuracy in (("air_grip", 0.40 + gain[world]), ("air_grip_unadapted", 0.40)):
                row = _ul_row(name, world, seed, accuracy, 0.5 if name == "air_grip" else 0.4, 0.3)
                tables[world].setdefault(name, {})[seed] = row
    lines = worlds_study.goals(tables, {})
    assert lines[0] == ("- Adapted AiR on GRIP ≥ unadapted + 2 points over the worlds and ≥ 0 in each: **missed** — "
                        "easy +3.0, default +3.0, hard -0.6; average +1.8")
    assert "not measured yet" in lines[1]  # no CPL rows
    assert "easy first +10.0, last +0.0 (n=3)" in lines[2]
    # auxiliary - text per seed: +2, +4, +6 -> the first seed misses 5
    assert lines[3].endswith("**missed** — [+2.0, +4.0, +6.0]")
    # fused 36 >= max(30, 32|34|36) on every seed -> met, worst seed +0.0
    assert "**met**" in lines[4] and "hard +2.0 (worst seed +0.0)" in lines[4]
