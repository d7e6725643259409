import logging

import pytest
import torch

from pipeline.models import load_clip


@pytest.fixture(scope="session")
def tiny_clip():
    logging.getLogger().setLevel(logging.ERROR)
    return load_clip("tiny-clip", "random", torch.device("cpu"))
