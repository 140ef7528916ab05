import os

import pytest
import torch

# The test machine has 2 cores shared by everything; keep each test process to one intra-op thread.
torch.set_num_threads(int(os.environ.get("LATTE_TEST_THREADS", "1")))

REFERENCE = os.path.join(os.path.dirname(__file__), "fixtures", "reference")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
