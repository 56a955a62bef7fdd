"""The vectorised training pieces give the numbers of their straightforward versions: histories as bags of item
rows (profiles, ELSA's loss and its gradient without a users × items matrix), shallow's pair order and its
per-step hinge loss (each distinct vector through the head once), and the bounded validation sample."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recommenders.layers import Bags, elsa_loss, elsa_loss_bags, mean_profiles, multi_hot
from recommenders.shallow import PairBatch, ShallowNet, pair_order
from recommenders.training import validation_metric, validation_users


@pytest.fixture
def histories() -> list[list[int]]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 60, rng.integers(1, 25)).tolist() for _ in range(40)]


def test_mean_profiles_are_per_user_means_of_known_rows(histories):
    table = torch.randn(50, 8, dtype=torch.float64)  # rows 50..59 of the histories are unknown
    rows = histories + [[55, 58], []]
    expected = torch.stack([table[[r for r in seen if r < 50]].mean(0) if any(r < 50 for r in seen)
                            else table.mean(0) for seen in rows])
    torch.testing.assert_close(mean_profiles(table, rows, 50), expected)
    zeros = mean_profiles(table, rows, 50, fallback=torch.zeros(8, dtype=torch.float64))
    assert zeros[-1].abs().sum() == 0 and zeros[-2].abs().sum() == 0


def test_bags_from_csr_gather_the_chosen_rows(histories):
    bags = Bags.from_rows(histories, 60, unique=True)
    indptr = np.concatenate([[0], np.cumsum(bags.counts.numpy())])
    chosen = np.array([7, 2, 30])
    picked = Bags.from_csr(indptr, bags.items.numpy(), chosen)
    assert picked.counts.tolist() == [len(set(histories[u])) for u in chosen]
    for b, user in enumerate(chosen):
        start = int(picked.offsets[b])
        assert picked.items[start:start + int(picked.counts[b])].tolist() == sorted(set(histories[user]))


def test_elsa_loss_from_bags_equals_the_dense_loss_and_gradient(histories):
    torch.manual_seed(0)
    weight = torch.randn(60, 6, requires_grad=True)
    dense_x = multi_hot(histories, 60, torch.device("cpu"))
    dense = elsa_loss(dense_x, torch.nn.functional.normalize(weight, dim=-1))
    (dense_grad,) = torch.autograd.grad(dense, weight)
    sparse = elsa_loss_bags(Bags.from_rows(histories, 60, unique=True), torch.nn.functional.normalize(weight, dim=-1))
    (sparse_grad,) = torch.autograd.grad(sparse, weight)
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sparse_grad, dense_grad, rtol=1e-3, atol=1e-6)


def test_pair_order_visits_every_pair_once_in_runs_of_one_user():
    user_col = np.repeat(np.arange(5), [1, 7, 3, 12, 2])
    order = pair_order(user_col, 4, np.random.default_rng(1))
    assert sorted(order.tolist()) == list(range(len(user_col)))
    users = user_col[order]
    runs = np.split(users, np.flatnonzero(np.diff(users)) + 1)
    assert all(len(set(run)) == 1 for run in runs)
    counts = {u: sum(len(r) for r in runs if r[0] == u) for u in range(5)}
    assert counts == {0: 1, 1: 7, 2: 3, 3: 12, 4: 2}
    assert len(runs) >= 1 + 2 + 1 + 3 + 1  # a user's pairs come in runs of at most 4
    assert not np.array_equal(order, pair_order(user_col, 4, np.random.default_rng(2)))


def test_shallow_hinge_loss_equals_per_pair_loss():
    torch.manual_seed(0)
    net = ShallowNet(torch.randn(30, 5), torch.randn(4, 5), 6)
    users, tracks = torch.tensor([0, 3]), torch.tensor([1, 4, 9, 20, 29])
    pair_user, pair_track = torch.tensor([0, 0, 1]), torch.tensor([0, 2, 4])
    pool, negatives = torch.tensor([1, 3, 4]), torch.tensor([[0, 2], [1, 1], [2, 0]])
    loss = net.hinge_loss(PairBatch(users, tracks, pair_user, pair_track, pool, negatives), margin=0.2)
    expected = []
    for p in range(3):
        u = net.embed(net.users[users[pair_user[p]]][None])[0]
        pos = u @ net.embed(net.items[tracks[pair_track[p]]][None])[0]
        for n in negatives[p]:
            neg = u @ net.embed(net.items[tracks[pool[n]]][None])[0]
            expected.append(torch.relu(0.2 - pos + neg))
    torch.testing.assert_close(loss, torch.stack(expected).mean())


def test_validation_uses_a_fixed_sample_of_users_beyond_the_bound():
    users = [f"u{i:03d}" for i in range(300)][::-1]
    assert validation_users(users, None) == users and validation_users(users, 300) == users
    sample = validation_users(users, 50)
    assert len(sample) == 50 and sample == validation_users(users, 50)
    assert sample == [u for u in users if u in set(sample)]  # the given order is kept
    seen: list[int] = []

    def recommend(histories, k):
        seen.append(len(histories))
        return {u: ["t"] for u in histories}

    relevant = {u: {"t"} for u in users}
    histories = {u: ["s"] for u in users[:-10]}  # ten users without a history score 0
    assert validation_metric(recommend, (histories, relevant), k=5, max_users=None) == pytest.approx(290 / 300)
    assert seen == [290]
    validation_metric(recommend, (histories, relevant), k=5, max_users=50)
    assert seen[-1] <= 50
