"""Shared test settings."""
import os

import pytest
import torch

# Triton reads TRITON_INTERPRET when it is first imported (its own library functions are
# decorated then): without a GPU, the fused kernel's tests run in the interpreter, so set it
# before any test module can import triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests use tiny models, which gain nothing from intra-op threads; on a busy 2-core
    machine the threads' barriers make them many times slower. Run every test on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
