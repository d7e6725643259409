"""The methods' home: one registered object per method, the schema's list comes from the registry,
and nothing outside `pipeline/methods/` branches on a method's name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.config.params import parse_params
from pipeline.core.errors import PipelineError
from pipeline.methods.base import _REGISTRY, Method, register
from pipeline.methods.catalog import build_method, check_method, method_names, selection_rules

ROOT = Path(__file__).resolve().parents[2]


def test_registry_lists_exactly_the_methods_the_schema_accepts():
    files = sorted(p.stem for p in (ROOT / "pipeline/methods").glob("*.py") if p.stem not in ("__init__", "base", "catalog"))
    assert method_names() == ("air", "coft", "coft_plus", "cpl", "fpl", "grip", "ifpl", "pll", "upl", "zeroshot")
    built = [build_method(parse_params({"method": name, "paradigm": _REGISTRY[name].paradigms[0]}))
             for name in method_names()]
    assert sorted(method.name for method in built) == files
    assert parse_params({"method": "airr"}).method == "airr"  # the schema leaves method names to the catalog
    with pytest.raises(PipelineError) as error:
        check_method(parse_params({"method": "airr"}))
    assert ("method: unknown method 'airr'; choose one of: air, coft, coft_plus, cpl, fpl, grip, ifpl, pll, upl, zeroshot"
            in str(error.value))


def test_a_new_registered_method_is_accepted_by_the_schema_without_other_edits():
    @register
    class Oracle(Method):
        name = "oracle-test"

    try:
        assert check_method(parse_params({"method": "oracle-test"})).method == "oracle-test"
        assert "oracle-test" in selection_rules()
        assert isinstance(build_method(parse_params({"method": "oracle-test"})), Oracle)
    finally:
        del _REGISTRY["oracle-test"]
    with pytest.raises(PipelineError):
        check_method(parse_params({"method": "oracle-test"}))


def test_air_selection_is_any_labelling_method():
    assert selection_rules() == ("cpl", "fpl", "grip", "ifpl", "upl")
    with pytest.raises(PipelineError, match=r"pseudolabel.selection: unknown selection 'balanced'; choose one of: cpl"):
        check_method(parse_params({"pseudolabel": {"selection": "balanced"}}))
    air = build_method(parse_params({"method": "air", "pseudolabel": {"selection": "cpl", "rounds": 4}}))
    assert air.base.name == "cpl" and air.rounds() == 4 and air.needs_prototypes


@pytest.mark.parametrize("name, rounds, trains", [("zeroshot", 1, False), ("upl", 1, True), ("fpl", 1, True),
                                                  ("ifpl", 7, True), ("grip", 7, True), ("cpl", 7, True)])
def test_methods_declare_rounds_and_training(name, rounds, trains):
    method = build_method(parse_params({"method": name, "pseudolabel": {"rounds": 7}}))
    assert method.rounds() == rounds and method.trains == trains and not method.needs_prototypes


def test_cpl_thresholds_default_per_dataset_and_paradigm():
    def thresholds(paradigm="ul", dataset="demo", **cpl):
        data = {"method": "cpl", "paradigm": paradigm, "pseudolabel": {"cpl": cpl}}
        if dataset != "demo":
            data["dataset"] = {"name": dataset, "root": "/data"}
        return build_method(parse_params(data)).thresholds(24)

    assert thresholds(dataset="eurosat") == (0.75, 0.80)
    assert thresholds(dataset="flowers102") == (0.60, 0.99)
    assert thresholds("trzsl", "eurosat") == (0.75, pytest.approx(1 - 3 / 24))  # auto*3 over 24 classes
    assert thresholds() == (0.75, pytest.approx(1 - 2 / 24))                     # fallback: auto*2
    assert thresholds(alpha=0.5, beta="auto*1") == (0.5, pytest.approx(1 - 1 / 24))
    for bad, key in (({"alpha": 1.5}, "alpha"), ({"beta": "auto*0"}, "beta"), ({"beta": 1.0}, "beta")):
        with pytest.raises(PipelineError, match=rf"pseudolabel.cpl.{key}"):
            parse_params({"pseudolabel": {"cpl": bad}})


def test_no_branch_on_a_method_name_outside_the_methods_home():
    names = "|".join(method_names())
    pattern = re.compile(rf"method\s*(==|!=|\bin\b)|[\"']({names})[\"']\s*(==|!=|\bin\b)|(==|!=)\s*[\"']({names})[\"']")
    offenders = []
    for path in list((ROOT / "pipeline").rglob("*.py")) + list((ROOT / "stages").rglob("*.py")):
        if "methods" in path.relative_to(ROOT).parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_ensemble_size_is_validated():
    assert parse_params({"train": {"ensemble": 16}}).train.ensemble == 16
    with pytest.raises(PipelineError, match=r"train.ensemble"):
        parse_params({"train": {"ensemble": 0}})
