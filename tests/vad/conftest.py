"""vad tests run torch on one thread: the CI machine has 2 cores shared by several jobs, and
oversubscribed intra-op threads make small models several times slower."""
import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)
