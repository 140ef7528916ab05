import os

import pytest
import torch

from helpers import write_lavie_dir

# The test machine has 2 cores shared by everything; keep each test process to one intra-op thread.
torch.set_num_threads(int(os.environ.get("LATTE_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def lavie_dir(tmp_path_factory):
    """pretrained_models/ in the official LaVie layout with tiny parts (see helpers.write_lavie_dir)."""
    return write_lavie_dir(tmp_path_factory.mktemp("pretrained_models"))
