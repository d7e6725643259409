"""The benchmark matrix's plan and its reading of `dvc exp show` (the queue itself runs in the README's study)."""

from __future__ import annotations

import pytest
import yaml

from pipeline.core.errors import PipelineError
from pipeline.experiments.matrix import collect, plan
from pipeline.experiments.tables import markdown_table

BASE = yaml.safe_load(open("params.yaml"))


def test_plan_crosses_methods_paradigms_seeds_and_the_grid_skipping_what_has_no_meaning():
    combos, notes = plan(BASE, ["zeroshot", "grip", "pll"], ["ul", "trzsl"], [0, 1, 2],
                         [("protocol", ["project", "grip"])], [("pseudolabel.rounds", "3")])
    # grip: 2 paradigms x 2 protocols x 3 seeds; zeroshot: one seed; pll: no meaning under ul / trzsl
    assert len(combos) == 2 * 2 * 3 + 2 * 2 * 1
    assert {c["method"] for c in combos} == {"zeroshot", "grip"}
    assert all(c["pseudolabel.rounds"] == "3" for c in combos)
    assert sorted({(c["paradigm"], c["protocol"]) for c in combos}) == [
        ("trzsl", "grip"), ("trzsl", "project"), ("ul", "grip"), ("ul", "project")]
    assert any("pll under ul" in n for n in notes) and any("zeroshot runs for the first seed" in n for n in notes)


def test_study_seeds_set_everything_random_and_run_every_method_for_every_seed():
    combos, notes = plan(BASE, ["zeroshot", "air"], ["ul"], [0, 2], [("dataset.demo.preset", ["easy", "hard"])], [],
                         study_seeds=True)
    assert len(combos) == 2 * 2 * 2  # zero-shot too: a study seed changes the world it is measured in
    for combo in combos:
        assert {combo[key] for key in ("seed", "adapt.seed", "generate.seed", "dataset.demo.seed")} in ({"0"}, {"2"})
    assert not any("first seed" in note for note in notes)


def test_plan_refuses_an_invalid_combination_before_queueing_anything():
    with pytest.raises(PipelineError) as error:
        plan(BASE, ["grip"], ["ul"], [0], [("protocol", ["project", "gripp"])], [])
    assert str(error.value).splitlines() == [
        "params.yaml with protocol=gripp method=grip paradigm=ul seed=0 is not valid:",
        "  protocol: unknown protocol 'gripp'; choose one of: project, grip, cpl (got 'gripp')"]


def test_collect_matches_typed_values_and_the_table_averages_seeds():
    rows = [({"method": "grip", "paradigm": "ul", "seed": s, "protocol": "grip", "train.lr": 0.1}, {"accuracy": a})
            for s, a in ((0, 0.5), (1, 0.6), (2, 0.7))]
    rows.append(({"method": "grip", "paradigm": "ul", "seed": 0, "protocol": "project"}, {"accuracy": 0.4}))
    combos = [{"method": "grip", "paradigm": "ul", "seed": str(s), "protocol": "grip"} for s in (0, 1, 2, 3)]
    found = collect(rows, combos)
    assert [params["seed"] for params, _ in found] == [0, 1, 2]   # seed 3 has not run; the project row is not it
    table = markdown_table(found, ["paradigm", "protocol", "method"])
    assert table.splitlines()[2] == "| ul | grip | grip | 60.0 ± 10.0 | 3 |"


def test_only_finished_experiments_are_read_from_dvc_exp_show():
    from pipeline.experiments.tables import experiments

    def exp(state, accuracy):
        data = {"params": {"params.yaml": {"data": {"method": "grip", "seed": 0}}},
                "metrics": {"metrics.json": {"data": {"accuracy": accuracy}}}}
        return {"executor": None if state is None else {"state": state}, "revs": [{"data": data}]}

    table = [{"experiments": [exp("running", 0.45), exp("queued", 0.45), exp("failed", 0.1), exp("success", 0.3),
                              exp(None, 0.2)]}]   # running / queued ones carry the workspace's metrics
    assert [metrics["accuracy"] for _, metrics in experiments(table)] == [0.3, 0.2]
