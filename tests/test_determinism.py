"""A seeded fit is reproducible with several CPU threads (`training.seed_everything` asks torch for
deterministic kernels: without them shallow's user-table gradients are added in thread order)."""
from __future__ import annotations

import pytest
import torch

from catalog.synthetic import random_plays
from recommenders.shallow import Shallow


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_shallow_fit_is_bitwise_reproducible_with_two_threads(two_threads):
    train, items = random_plays(users=200, items=200, dim=64, plays=20)
    fits = [Shallow(max_epochs=1, batch_size=512).fit(train, items).net.state_dict() for _ in range(3)]
    for other in fits[1:]:
        assert all(torch.equal(fits[0][name], other[name]) for name in fits[0])
