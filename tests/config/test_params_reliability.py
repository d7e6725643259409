"""Params a user can write that used to pass `check` and fail (or silently misbehave) later: infinite
numbers, repeated keys, seeds past 2**32, unusable thread variables, VPT on a tower without tokens.
Each is refused up front as one line naming the key, and the stage exits with status 2."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel
from typer.testing import CliRunner

from pipeline.clip.models import load_clip
from pipeline.config.params import Params, load_params, parse_params
from pipeline.core.errors import PipelineError
from pipeline.runtime.devices import CoreShare
from pipeline.training.learners import LearnerSpec, build_visual
from stages import check
from stages._cli import stage

ROOT = Path(__file__).resolve().parents[2]


def invoke(stage_module):
    result = CliRunner().invoke(stage_module.app, [])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def schema_keys(model: type[BaseModel] = Params, prefix: str = "") -> dict[str, object]:
    """Every leaf key of the schema, dotted, with its annotation."""
    keys = {}
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys.update(schema_keys(field.annotation, f"{prefix}{name}."))
        else:
            keys[prefix + name] = field.annotation
    return keys


def mentions(annotation, kind: type) -> bool:
    return annotation is kind or any(mentions(arg, kind) for arg in typing.get_args(annotation))


def nested(key: str, value) -> dict:
    data: dict = {}
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return data


FLOAT_KEYS = sorted(key for key, annotation in schema_keys().items() if mentions(annotation, float))
SEED_KEYS = sorted(key for key in schema_keys() if key.split(".")[-1].endswith("seed"))


def test_the_schema_walk_finds_the_keys_of_the_issue():
    assert {"pseudolabel.fusion_lambda", "auxiliary.temperature", "pseudolabel.cpl.beta", "train.lr",
            "dataset.demo.contrast", "coft.phase1_share"} <= set(FLOAT_KEYS)
    assert SEED_KEYS == ["adapt.seed", "dataset.demo.seed", "dataset.split_seed", "generate.seed",
                         "paradigm_options.candidate_seed", "paradigm_options.split_seed", "seed"]


# --- item 4: non-finite numbers ---------------------------------------------------------------------

def test_fusion_lambda_inf_in_params_yaml_is_refused_naming_the_key(tmp_path):
    (tmp_path / "params.yaml").write_text("pseudolabel:\n  fusion_lambda: .inf\n")
    with pytest.raises(PipelineError, match=r"pseudolabel.fusion_lambda: give a finite number; "
                                            r"\.inf and \.nan are not allowed \(got inf\)"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_every_float_key_refuses_non_finite_values(key, value):
    listed = typing.get_origin(schema_keys()[key]) is list
    with pytest.raises(PipelineError) as error:
        parse_params(nested(key, [0.5, value] if listed else value))
    message = str(error.value)
    assert message.count("\n") == 1, message  # one line under the header: one problem, one key
    if listed:
        assert f"{key}.1: Input should be a finite number" in message
    else:
        assert f"{key}: give a finite number; .inf and .nan are not allowed" in message


def test_non_finite_numbers_written_as_words_are_refused_too():
    with pytest.raises(PipelineError, match=r"pseudolabel.cpl.beta: beta is a quantile .* \(got 'auto\*inf'\)"):
        parse_params({"pseudolabel": {"cpl": {"beta": "auto*inf"}}})
    with pytest.raises(PipelineError, match=r"train.lr: Input should be a finite number \(got 'inf'\)"):
        parse_params({"train": {"lr": "inf"}})
    params = parse_params({"auxiliary": {"temperature": "auto"}, "pseudolabel": {"fusion_lambda": 1e6,
                                                                                 "cpl": {"beta": "auto*2"}}})
    assert params.pseudolabel.fusion_lambda == 1e6 and params.pseudolabel.cpl.beta == "auto*2"


# --- item 8: repeated keys -------------------------------------------------------------------------

def test_a_repeated_key_is_refused_naming_it_and_both_lines(project):
    text = Path("params.yaml").read_text()
    Path("params.yaml").write_text(text + "seed: 7\n")
    first = text.splitlines().index("seed: 0") + 1
    code, output = invoke(check)
    assert code == 2, output
    assert (f"params.yaml: key seed appears twice (lines {first} and {len(text.splitlines()) + 1}); "
            "DVC refuses such a file: keep one of them") in output
    assert not Path("data").exists()

    lines = text.splitlines()
    train = lines.index("train:")
    epochs = next(n for n in range(train, len(lines)) if lines[n].startswith("  epochs:"))
    Path("params.yaml").write_text("\n".join(lines[:train + 1] + ["  epochs: 2"] + lines[train + 1:]) + "\n")
    with pytest.raises(PipelineError, match=rf"key train.epochs appears twice \(lines {train + 2} and {epochs + 2}\)"):
        load_params("params.yaml")


def test_yaml_merge_keys_override_without_counting_as_repeats(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  <<: {epochs: 3, lr: 0.5}\n  epochs: 4\n")
    params = load_params(tmp_path / "params.yaml")
    assert params.train.epochs == 4 and params.train.lr == 0.5
    (tmp_path / "params.yaml").write_text("train:\n  <<: {epochs: 3}\n  lr: 0.5\n  lr: 0.1\n")
    with pytest.raises(PipelineError, match=r"key train.lr appears twice \(lines 3 and 4\)"):
        load_params(tmp_path / "params.yaml")


# --- item 12: thread variables ---------------------------------------------------------------------

@pytest.fixture
def threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("PIPELINE_THREADS", raising=False)
    before = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(before)


def test_an_openmp_nesting_list_takes_its_first_entry(threads, tmp_path):
    threads.setenv("OMP_NUM_THREADS", "2,1")
    assert CoreShare(tmp_path / "running").threads() == 2
    threads.setenv("OMP_NUM_THREADS", " 3 , 2")
    assert CoreShare(tmp_path / "running").threads() == 3


def test_an_unusable_omp_num_threads_is_ignored_with_a_warning(threads, tmp_path, caplog):
    for value in ("abc", "0", "-2"):
        threads.setenv("OMP_NUM_THREADS", value)
        share = CoreShare(tmp_path / "running")
        share.cores = 4
        assert share.threads() == 4  # the rule: all cores for the one running stage
        assert f"OMP_NUM_THREADS={value!r} is not a thread count" in caplog.text


@pytest.mark.parametrize("value", ["abc", "0", "-1", "2,1", "1.5"])
def test_a_bad_pipeline_threads_stops_the_stage_with_one_line(threads, project, value):
    threads.setenv("PIPELINE_THREADS", value)
    code, output = invoke(check)
    assert code == 2, output
    assert (f"error in stage check: PIPELINE_THREADS={value!r} is not a thread count; set it to a whole number "
            "of 1 or more, or unset it to share the cores among the running stages") in output
    assert "Traceback" not in output and not Path("data").exists()


def test_check_runs_with_an_openmp_list_and_pipeline_threads_wins(threads, project):
    threads.setenv("OMP_NUM_THREADS", "2,1")
    code, output = invoke(check)
    assert code == 0, output
    assert torch.get_num_threads() == 2
    threads.setenv("PIPELINE_THREADS", "1")
    assert CoreShare(Path("running")).threads() == 1


# --- item 17: seeds ----------------------------------------------------------------------------------

@pytest.mark.parametrize("key", SEED_KEYS)
def test_seeds_past_2_32_are_refused_naming_the_key(key):
    for value in (2 ** 64, 2 ** 32):
        with pytest.raises(PipelineError, match=rf"{key}: Input should be less than 4294967296 \(got {value}\)"):
            parse_params(nested(key, value))
    assert parse_params(nested(key, 2 ** 32 - 1)) is not None


def test_check_refuses_the_seed_of_the_issue(project):
    project(seed=18446744073709551616)
    code, output = invoke(check)
    assert code == 2 and "seed: Input should be less than 4294967296 (got 18446744073709551616)" in output


# --- item 18: VPT on a tower without tokens -------------------------------------------------------

@pytest.fixture(scope="module")
def demo_clip():
    return load_clip("demo-clip", str(ROOT / "data/demo/demo-clip.safetensors"), torch.device("cpu"))


def test_vpt_on_the_demo_resnet_stops_the_stage_with_one_line(demo_clip, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    params = parse_params({"train": {"prompt": "visual", "visual_prompt_kind": "vpt"}})
    config = LearnerSpec.from_train(params.train).visual_config()  # what train's learner factory builds
    with pytest.raises(SystemExit) as exit_:
        with stage("train"):
            build_visual(demo_clip, config)
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error == ("error in stage train: VPT needs a ViT image tower (train.visual_prompt_kind: vpt), but this "
                     "CLIP's is a ModifiedResNet, with no tokens to prompt; set train.visual_prompt_kind: padding "
                     "(or auto)")
    auto = parse_params({"train": {"prompt": "visual", "visual_prompt_kind": "auto"}})
    assert build_visual(demo_clip, LearnerSpec.from_train(auto.train).visual_config()).kind == "padding"
