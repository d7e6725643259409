"""The benchmark matrix command on bad or colliding input: each experiment queued and counted once, and
every refusal a one-line error (exit status 2) before anything is queued. `dvc` is a fake that records
its calls and answers `exp show` with the experiments a test gives it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.experiments import matrix

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dvc(tmp_path, monkeypatch):
    """The shipped params in tmp_path and a fake `dvc`: `dvc.done` lists (params, accuracy) of finished
    experiments, `dvc.calls` the argument lists it was called with."""
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text((ROOT / "params.yaml").read_text())

    class Fake:
        def __init__(self):
            self.done: list[tuple[dict, float]] = []
            self.calls: list[list[str]] = []

        def queued(self) -> list[list[str]]:
            return [call[3:] for call in self.calls if call[:3] == ["exp", "run", "--queue"]]

    fake = Fake()

    def run(args, **kwargs):
        assert args[0] == "dvc"
        fake.calls.append(args[1:])
        out = ""
        if args[1:3] == ["exp", "show"]:
            out = json.dumps([{"experiments": [
                {"executor": None, "revs": [{"data": {"params": {"params.yaml": {"data": params}},
                                                      "metrics": {"metrics.json": {"data": {"accuracy": acc}}}}}]}
                for params, acc in fake.done]}])
        return subprocess.CompletedProcess(args, 0, stdout=out, stderr="")

    monkeypatch.setattr(matrix.subprocess, "run", run)
    monkeypatch.setattr(matrix.time, "sleep", lambda seconds: None)
    return fake


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(matrix.app, list(args))
    return result.exit_code, result.output   # stdout and stderr


def grip(seed: int) -> dict:
    return {"method": "grip", "paradigm": "ul", "seed": seed, "protocol": "project"}


# --- item 3: colliding combinations are one experiment ---------------------------------------------

@pytest.mark.parametrize("args", [["--seeds", "0,0,1"], ["--seeds", "0,1", "--grid", "train.lr=0.1,0.10"]])
def test_repeated_values_queue_each_experiment_once(dvc, args):
    code, output = invoke("--methods", "grip", "--paradigms", "ul", *args)
    assert code == 0, output
    assert sorted(call[-1] for call in dvc.queued()) == ["-Sseed=0", "-Sseed=1"]


def test_the_table_counts_each_experiment_once(dvc):
    dvc.done = [(grip(0), 0.40), (grip(1), 0.50)]
    code, output = invoke("--methods", "grip", "--paradigms", "ul", "--seeds", "0,0,1")
    assert code == 0, output
    assert dvc.queued() == []   # both have run
    assert "| ul | grip | 45.0 ± 7.1 | 2 |" in output.splitlines()


def test_collect_counts_an_experiment_two_combinations_match_once():
    rows = [(grip(0), {"accuracy": 0.4})]
    assert matrix.collect(rows, [{"seed": "0"}, {"seed": "0.0"}]) == rows


@pytest.mark.parametrize("args, message", [
    (["--set", "seed=7"], "error: --set seed collides with --seeds, which sets seed in every experiment; "
                          "give its values in --seeds instead"),
    (["--grid", "seed=5,6"], "error: --grid seed collides with --seeds, which sets seed in every experiment; "
                             "give its values in --seeds instead"),
    (["--grid", "method=air,upl"], "error: --grid method collides with --methods, which sets method in every "
                                   "experiment; give its values in --methods instead"),
    (["--study-seeds", "--set", "adapt.seed=3"], "error: --set adapt.seed collides with --study-seeds, which sets "
                                                 "adapt.seed in every experiment; drop it, or drop --study-seeds"),
    (["--grid", "protocol=project", "--set", "protocol=grip"],
     "error: --set protocol=grip collides with --grid protocol: a key is fixed or an axis, not both; drop one of them"),
    (["--grid", "protocol=project", "--grid", "protocol=grip"],
     "error: --grid protocol is given twice; give it once with all its values, e.g. --grid protocol=V1,V2"),
    (["--set", "train.lr=0.1", "--set", "train.lr=0.2"], "error: --set train.lr is given twice; give it once"),
    (["--grid", "protocol="], "error: --grid protocol= lists no values; give at least one, e.g. --grid protocol=V1,V2"),
    (["--methods", ","], "error: --methods lists nothing; give at least one, e.g. --methods grip"),
    (["--paradigms", ""], "error: --paradigms lists nothing; give at least one, e.g. --paradigms ul"),
    (["--seeds", " , "], "error: --seeds lists nothing; give at least one, e.g. --seeds 0,1,2"),
    (["--set", "dataset.root="], "error: --set dataset.root= has no value; give one (null for none), "
                                 "e.g. --set dataset.root=VALUE"),
    (["--seeds", "0,a"], "error: --seeds '0,a': 'a' is not a whole number; list whole numbers, e.g. --seeds 0,1,2"),
    (["--jobs", "0"], "error: --jobs 0 must be 1 or more (experiments at a time), e.g. --jobs 2"),
    (["--jobs", "-1"], "error: --jobs -1 must be 1 or more (experiments at a time), e.g. --jobs 2"),
])
def test_colliding_empty_or_bad_options_are_refused_before_anything_is_queued(dvc, args, message):
    code, output = invoke("--methods", "grip,air", "--paradigms", "ul", "--seeds", "0,1", *args)
    assert code == 2
    assert output.splitlines() == [message]
    assert dvc.calls == []


# --- item 16: a bad --params file ------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    (None, "error: --params p.yaml not found; run from the project root or pass --params PATH"),
    ("- seed: 0\n- method: grip\n", "error: --params p.yaml holds a list, not a mapping of keys to values; "
                                    "pass a params file such as the shipped params.yaml"),
    ("", "error: --params p.yaml is empty; restore it (git checkout p.yaml) or pass a full params file such as "
         "the shipped params.yaml"),
    ("# nothing but a comment\n", "error: --params p.yaml is empty; restore it (git checkout p.yaml) or pass a "
                                  "full params file such as the shipped params.yaml"),
    ("seed: 0\ndataset:\n\tname: demo\n", "error: --params p.yaml line 3 has a tab; YAML indents with spaces: "
                                          "replace the tab with spaces"),
    ("seed: 0\nmethod: [grip\n", "error: --params p.yaml line 3 is not valid YAML (expected ',' or ']', but got "
                                 "'<stream end>'); fix it or restore it (git checkout p.yaml)"),
])
def test_a_bad_params_file_is_refused_before_anything_is_queued(dvc, text, message):
    if text is not None:
        Path("p.yaml").write_text(text)
    code, output = invoke("--methods", "grip", "--paradigms", "ul", "--params", "p.yaml")
    assert code == 2
    assert output.splitlines() == [message]
    assert dvc.calls == []


def test_a_tab_inside_a_quoted_value_is_fine(dvc):
    params = yaml.safe_load(Path("params.yaml").read_text())
    Path("p.yaml").write_text(yaml.safe_dump(params) + 'eval_tag: "a\tb"\n')   # a tab that YAML accepts
    code, output = invoke("--methods", "grip", "--paradigms", "ul", "--seeds", "0", "--params", "p.yaml")
    assert code == 2 and output.startswith("error: params.yaml with method=grip paradigm=ul seed=0 is not valid:")
    assert "eval_tag: unknown key" in output   # read as YAML: the schema names the key, not the tab
    assert dvc.calls == []
