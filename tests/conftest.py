import logging
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.clip.models import load_clip

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_clip():
    logging.getLogger().setLevel(logging.ERROR)
    return load_clip("tiny-clip", "random", torch.device("cpu"))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with the shipped params (tiny demo world); `project(key__sub=value)` edits them
    (the value `...` deletes the key)."""
    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["dataset"]["demo"].update(images_per_class=3, test_images_per_class=2)
    params["generate"]["model"] = str(ROOT / params["generate"]["model"])
    params["clip"]["pretrained"] = str(ROOT / params["clip"]["pretrained"])

    def write(**changes):
        for key, value in changes.items():
            node = params
            *parents, leaf = key.split("__")
            for part in parents:
                node = node[part]
            if value is ...:
                del node[leaf]
            else:
                node[leaf] = value
        Path("params.yaml").write_text(yaml.safe_dump(params))
    write()
    return write
