"Shared pytest fixtures, and the hypothesis profile."
import os
import random

import numpy as np
import pytest
import torch
from hypothesis import settings

# `make test` draws the same examples on every machine, so that CI and a user's run agree and a failure reproduces;
# SR3LIT_HYPOTHESIS=explore draws new ones each run (and keeps failing ones in .hypothesis/) to search further.
settings.register_profile('repeatable', derandomize=True, database=None)
settings.register_profile('explore')
settings.load_profile(os.environ.get('SR3LIT_HYPOTHESIS', 'repeatable'))


@pytest.fixture(scope='module')
def one_thread():
    "Tiny tensors: one thread is fastest and does not fight other processes for the cores."
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same global random state, whatever ran before it, so that a failure reproduces when
    the test is run alone. Tests that use randomness still draw from their own generators where a property is claimed."""
    random.seed(0); np.random.seed(0); torch.manual_seed(0)
    yield
