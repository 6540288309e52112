"Shared pytest fixtures."
import pytest
import torch


@pytest.fixture(scope='module')
def one_thread():
    "Tiny tensors: one thread is fastest and does not fight other processes for the cores."
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
