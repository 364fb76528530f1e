"""Stage-1 losses: known values computed independently with numpy, gradient direction, shift invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dear_train.distill_losses import (
    distill_loss,
    kl_distill_loss,
    rank_loss,
    ranknet_loss,
    softmax_ce_loss,
)

STUDENT = [[2.0, 1.0, 0.0], [0.5, 1.5, -1.0]]
TEACHER = [[3.0, 0.0, 1.0], [1.0, 2.0, 2.0]]


def _np_log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _np_ce(s: np.ndarray) -> float:
    return float(-_np_log_softmax(s)[:, 0].mean())


def _np_ranknet(s: np.ndarray, t: np.ndarray) -> float:
    terms = []
    for g in range(s.shape[0]):
        for i in range(s.shape[1]):
            for j in range(s.shape[1]):
                if t[g, i] > t[g, j]:
                    terms.append(math.log1p(math.exp(-(s[g, i] - s[g, j]))))
    return float(np.mean(terms))


def _np_kl(s: np.ndarray, t: np.ndarray, temp: float) -> float:
    p = np.exp(_np_log_softmax(t / temp))
    return float((p * (np.log(p) - _np_log_softmax(s / temp))).sum(axis=-1).mean() * temp * temp)


def test_softmax_ce_known_value():
    s = np.array(STUDENT)
    # first row by hand: -log(e^2 / (e^2 + e^1 + e^0)) = log(1 + e^-1 + e^-2)
    assert softmax_ce_loss(torch.tensor(STUDENT)[:1]).item() == pytest.approx(math.log(1 + math.exp(-1) + math.exp(-2)))
    assert softmax_ce_loss(torch.tensor(STUDENT)).item() == pytest.approx(_np_ce(s), rel=1e-6)


def test_ranknet_known_value_and_ties():
    s, t = np.array(STUDENT), np.array(TEACHER)
    # row 2 has a teacher tie (2.0, 2.0): that pair contributes nothing; 3 + 2 = 5 ordered pairs in all
    assert ranknet_loss(torch.tensor(STUDENT), torch.tensor(TEACHER)).item() == pytest.approx(_np_ranknet(s, t), rel=1e-6)
    # one pair by hand: teacher says 0 > 1, student margin 2 - 1 = 1 -> log(1 + e^-1)
    one = ranknet_loss(torch.tensor([[2.0, 1.0]]), torch.tensor([[1.0, 0.0]])).item()
    assert one == pytest.approx(math.log1p(math.exp(-1.0)))
    # all ties: no ordered pair, zero loss (and still differentiable)
    flat = torch.tensor([[1.0, 2.0]], requires_grad=True)
    zero = ranknet_loss(flat, torch.tensor([[5.0, 5.0]]))
    zero.backward()
    assert zero.item() == 0.0 and flat.grad is not None


def test_kl_known_value_and_zero_at_match():
    s, t = np.array(STUDENT), np.array(TEACHER)
    assert kl_distill_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), 2.0).item() == pytest.approx(
        _np_kl(s, t, 2.0), rel=1e-6)
    assert kl_distill_loss(torch.tensor(TEACHER), torch.tensor(TEACHER), 2.0).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("kind", ["ce", "ranknet", "mix"])
def test_distill_total_known_value(kind):
    s, t = np.array(STUDENT), np.array(TEACHER)
    main = {"ce": _np_ce(s), "ranknet": _np_ranknet(s, t), "mix": 0.5 * _np_ranknet(s, t) + 0.5 * _np_ce(s)}[kind]
    expected = 0.9 * main + 0.1 * _np_kl(s, t, 2.0)
    got = distill_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), kind=kind, alpha=0.1, temperature=2.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert rank_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), kind).item() == pytest.approx(main, rel=1e-6)


@pytest.mark.parametrize("kind", ["ce", "ranknet", "mix"])
def test_raising_the_positive_lowers_the_loss(kind):
    teacher = torch.tensor(TEACHER)
    student = torch.tensor(STUDENT, requires_grad=True)
    loss = distill_loss(student, teacher, kind=kind)
    loss.backward()
    # the positive (index 0) is the teacher's top in row 1: the gradient pushes its score up
    assert student.grad[0, 0].item() < 0
    bumped = torch.tensor(STUDENT)
    bumped[0, 0] += 0.5
    assert distill_loss(bumped, teacher, kind=kind).item() < loss.item()


@pytest.mark.parametrize("kind", ["ce", "ranknet", "mix"])
def test_invariant_to_constant_shifts(kind):
    s, t = torch.tensor(STUDENT), torch.tensor(TEACHER)
    base = distill_loss(s, t, kind=kind).item()
    shift = torch.tensor([[7.0], [-3.0]])  # a different constant per group
    assert distill_loss(s + shift, t, kind=kind).item() == pytest.approx(base, rel=1e-5)
    assert distill_loss(s, t + shift, kind=kind).item() == pytest.approx(base, rel=1e-5)


def test_bad_shapes_and_arguments_raise():
    with pytest.raises(ValueError, match="groups, group_size"):
        distill_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="alpha"):
        distill_loss(torch.zeros(1, 2), torch.zeros(1, 2), alpha=1.5)
    with pytest.raises(ValueError, match="unknown rank loss"):
        distill_loss(torch.zeros(1, 2), torch.zeros(1, 2), kind="listnet")  # type: ignore[arg-type]


def test_defaults_are_deans_and_the_alpha_and_temperature_bounds_are_exact():
    """DeAR's stage 1: L_rank = softmax CE, alpha 0.1, T = 2, the mix 0.5/0.5; alpha may be exactly 0 or 1 and
    any positive temperature (below 1 too) is accepted; at alpha = 1 only the KL term is left."""
    s, t = torch.tensor(STUDENT), torch.tensor(TEACHER)
    sn, tn = np.array(STUDENT), np.array(TEACHER)
    assert distill_loss(s, t).item() == pytest.approx(0.9 * _np_ce(sn) + 0.1 * _np_kl(sn, tn, 2.0), rel=1e-5)
    assert kl_distill_loss(s, t).item() == pytest.approx(_np_kl(sn, tn, 2.0), rel=1e-5)
    assert rank_loss(s, t).item() == pytest.approx(_np_ce(sn), rel=1e-5)
    assert rank_loss(s, t, "mix").item() == pytest.approx(0.5 * _np_ranknet(sn, tn) + 0.5 * _np_ce(sn), rel=1e-5)
    mixed = distill_loss(s, t, kind="mix", alpha=0.0, mix_weight=0.25).item()
    assert mixed == pytest.approx(0.25 * _np_ranknet(sn, tn) + 0.75 * _np_ce(sn), rel=1e-5)
    assert distill_loss(s, t, alpha=0.0).item() == pytest.approx(_np_ce(sn), rel=1e-5)
    assert distill_loss(s, t, alpha=1.0, temperature=3.0).item() == pytest.approx(_np_kl(sn, tn, 3.0), rel=1e-5)
    assert distill_loss(s, t, temperature=0.5).item() == pytest.approx(
        0.9 * _np_ce(sn) + 0.1 * _np_kl(sn, tn, 0.5), rel=1e-5)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature must be positive"):
            distill_loss(s, t, temperature=bad)
    with pytest.raises(ValueError, match="alpha must lie in"):
        distill_loss(s, t, alpha=-0.01)
