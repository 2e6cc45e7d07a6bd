"""Group-relative advantages, checked against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from obe.rl.advantages import AdvantageConfig, binary_rewards, group_advantages, group_advantages_cfg

torch.set_num_threads(1)


def test_population_std_example():
    # r = [1, 0, 0, 1]: mean 0.5, deviations +-0.5, population var = 4*0.25/4 = 0.25, std 0.5
    # A = +-0.5 / (0.5 + 1e-6) = +-0.999998
    adv = group_advantages([[1, 0, 0, 1]], std="population")
    assert adv.shape == (1, 4)
    torch.testing.assert_close(adv, torch.tensor([[1.0, -1.0, -1.0, 1.0]]), rtol=0, atol=1e-5)
    # with eps = 0 it is exact
    assert group_advantages([[1, 0, 0, 1]], std="population", eps=0.0).tolist() == [[1.0, -1.0, -1.0, 1.0]]


def test_sample_std_example_is_default():
    # sample var = 4*0.25/3 = 1/3, std = 0.57735; A = +-0.5/0.57735 = +-sqrt(3)/2 = +-0.866025
    adv = group_advantages([[1, 0, 0, 1]])
    h = math.sqrt(3) / 2
    torch.testing.assert_close(adv, torch.tensor([[h, -h, -h, h]]), rtol=0, atol=1e-5)
    assert AdvantageConfig().std == "sample"
    torch.testing.assert_close(group_advantages_cfg([[1, 0, 0, 1]]), adv, rtol=0, atol=0)


def test_uneven_group_by_hand():
    # r = [1, 0, 0, 0]: mean 0.25, deviations [0.75, -0.25, -0.25, -0.25]
    # sum of squares = 0.5625 + 3*0.0625 = 0.75
    # population std = sqrt(0.75/4) = 0.4330127 -> A = [1.7320508, -0.5773503 x3]
    # sample std = sqrt(0.75/3) = 0.5 -> A = [1.5, -0.5 x3]
    pop = group_advantages([[1, 0, 0, 0]], std="population", eps=0.0)
    torch.testing.assert_close(pop, torch.tensor([[math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3)]]))
    samp = group_advantages([[1, 0, 0, 0]], std="sample", eps=0.0)
    assert samp.tolist() == [[1.5, -0.5, -0.5, -0.5]]


def test_scale_none_only_centres():
    # r - mean: [1,0,0,0] -> [0.75, -0.25, -0.25, -0.25]; [1,1,0,1] -> [0.25,0.25,-0.75,0.25]
    adv = group_advantages([[1, 0, 0, 0], [1, 1, 0, 1]], scale="none")
    assert adv.tolist() == [[0.75, -0.25, -0.25, -0.25], [0.25, 0.25, -0.75, 0.25]]


def test_rows_are_independent_and_tensor_input():
    r = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # n = 2, sample std of [1, 0] = sqrt(0.5/1) = 0.7071 -> +-0.5/0.7071 = +-0.7071
    adv = group_advantages(r, eps=0.0)
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(adv, torch.tensor([[s, -s], [-s, s], [0.0, 0.0]]))
    assert adv.dtype == torch.float32


@pytest.mark.parametrize("scale", ["group", "none"])
@pytest.mark.parametrize("std", ["sample", "population"])
@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_constant_groups_are_exact_positive_zero(scale, std, eps):
    # all right / all wrong / a single sample: no signal, exactly +0.0, never NaN (eps = 0, n = 1)
    for rows in ([[1, 1, 1, 1]], [[0, 0, 0]], [[1]], [[0.3, 0.3, 0.3]]):
        adv = group_advantages(rows, scale=scale, std=std, eps=eps)
        assert not torch.isnan(adv).any()
        assert (adv == 0).all() and not torch.signbit(adv).any()


def test_keeps_float64():
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]], dtype=torch.float64), std="population", eps=0.0)
    assert adv.dtype == torch.float64 and adv.tolist() == [[1.0, -1.0, -1.0, 1.0]]


def test_binary_rewards():
    assert binary_rewards([[True, False], [0, 1]]).tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_bad_options_and_shapes():
    with pytest.raises(ValueError):
        group_advantages([[1, 0]], scale="batch")
    with pytest.raises(ValueError):
        group_advantages([[1, 0]], std="unbiased")
    with pytest.raises(ValueError):
        group_advantages([1, 0, 1])  # not [B, n]
    with pytest.raises(ValueError):
        AdvantageConfig(eps=-1.0)
    with pytest.raises(Exception):
        AdvantageConfig().eps = 0.1  # frozen


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 8).flatmap(
    lambda n: st.lists(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n).filter(lambda r: len(set(r)) > 1),
                       min_size=1, max_size=4)))
def test_normalised_rows_have_zero_mean_unit_std(rows):
    # with eps = 0, each non-constant row has mean 0 and std 1 under the SAME ddof it was scaled with
    for std, ddof in (("population", 0), ("sample", 1)):
        adv = group_advantages(torch.tensor(rows, dtype=torch.float64), std=std, eps=0.0)
        torch.testing.assert_close(adv.mean(1), torch.zeros(len(rows), dtype=torch.float64))
        torch.testing.assert_close(adv.std(1, correction=ddof), torch.ones(len(rows), dtype=torch.float64))
