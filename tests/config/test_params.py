from pathlib import Path

import pytest
import yaml

from pipeline.config.params import load_params, parse_params
from pipeline.core.errors import PipelineError
from pipeline.methods.catalog import check_method

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.method == "air" and params.paradigm == "ul" and params.dataset.name == "demo"


def test_unknown_method_names_key_value_and_choices():
    with pytest.raises(PipelineError) as error:
        check_method(parse_params({"method": "airr"}))
    message = str(error.value)
    assert "method" in message and "'airr'" in message and "air, coft, coft_plus, cpl, fpl, grip, ifpl, pll, upl, zeroshot" in message


def test_unknown_dataset_and_missing_root():
    with pytest.raises(PipelineError, match=r"dataset.name.*unknown dataset 'imagenette'.*demo, folder"):
        parse_params({"dataset": {"name": "imagenette"}})
    with pytest.raises(PipelineError, match=r"dataset.name='folder' needs dataset.root"):
        parse_params({"dataset": {"name": "folder"}})


def test_misspelled_key_and_bad_choice():
    with pytest.raises(PipelineError, match=r"train.epoch: unknown key"):
        parse_params({"train": {"epoch": 3}})
    with pytest.raises(PipelineError, match=r"pseudolabel.selection: unknown selection 'zeroshot'; choose one of: cpl, fpl"):
        check_method(parse_params({"pseudolabel": {"selection": "zeroshot"}}))
    with pytest.raises(PipelineError, match=r"dataset.demo.contrast: .*\[low, high\]"):
        parse_params({"dataset": {"demo": {"contrast": [0.9, 0.5]}}})
    with pytest.raises(PipelineError, match=r"dataset.demo.backgrounds.0: .*'plain', 'gradient'"):
        parse_params({"dataset": {"demo": {"backgrounds": ["zebra"]}}})
    with pytest.raises(PipelineError, match=r"template 'a photo' must have exactly one '\{\}' slot .*found 0"):
        parse_params({"clip": {"templates": ["a photo"]}})


def test_every_dvc_param_key_exists_in_params_yaml():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in stages.items():
        for key in stage.get("params", []):
            node = params
            for part in key.split("."):
                assert part in node, f"stage {name} declares param {key}, missing from params.yaml"
                node = node[part]
