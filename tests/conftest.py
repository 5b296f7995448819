"""Suite-wide settings."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The tests' tensors are tiny: a second thread only adds synchronisation, and on a shared
    2-core machine it made small kernels 10x slower. Results do not depend on it (checked)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
