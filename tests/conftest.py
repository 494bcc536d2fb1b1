"""Shared test settings."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests use tiny models, which gain nothing from intra-op threads; on a busy 2-core
    machine the threads' barriers make them many times slower. Run every test on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
