"""Exploration bonuses and how they combine with the group advantages."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from obe.rl.advantages import AdvantageConfig, group_advantages
from obe.rl.bonuses import (
    BONUSES,
    ExplorationConfig,
    apply_exploration,
    batch_bonus,
    compute_bonus,
    exploration_advantages,
    exploration_step,
    solved_groups,
    token_advantages,
    total_advantages,
    ucb_bonus,
    ucb_con_bonus,
    ucb_mean_bonus,
)
from obe.rl.counts import OutcomeCounts

torch.set_num_threads(1)

NO_ANSWER = "<no-answer-sentinel>"  # opaque, like obe.grading.NO_ANSWER_KEY
R2 = 1 / math.sqrt(2)


def bits(t: torch.Tensor) -> list[int]:
    """Exact bit patterns (distinguishes -0.0 from +0.0 and NaN payloads)."""
    t = t.detach().contiguous()
    return t.view({torch.float32: torch.int32, torch.float64: torch.int64}[t.dtype]).flatten().tolist()


def cfg(method: str, **kw) -> ExplorationConfig:
    return ExplorationConfig(method=method, **kw)


KEYS4 = [["a", "b", "c", "d"]]


# -- the registry and the individual bonuses ----------------------------------------------


def test_registry_and_config():
    assert set(BONUSES) == {"grpo", "ucb", "ucb_mean", "ucb_con", "batch"}
    c = cfg("ucb")
    assert (c.coef, c.b0, c.leave_one_out, c.count_before_update, c.gate_solved, c.mask_answer_tokens,
            c.bonus_in_reward) == (0.2, 0.5, False, True, True, True, False)
    assert c.uses_counts and not cfg("batch").uses_counts and not cfg("grpo").uses_counts
    with pytest.raises(ValueError):
        cfg("count")
    with pytest.raises(ValueError):
        cfg("ucb", coef=float("nan"))
    with pytest.raises(Exception):
        c.coef = 1.0  # frozen
    for name, fn in BONUSES.items():
        assert fn.__doc__, name


def test_grpo_is_zero():
    b = compute_bonus([["x", "x"], ["y", "z"]], None, cfg("grpo"))
    assert b.shape == (2, 2) and (b == 0).all()


def test_ucb_by_hand_and_n0_convention():
    # N = 0 -> min(1, 1/sqrt(max(0,1))) = 1;  N = 1 -> 1;  N = 4 -> 1/2;  N = 2 -> 1/sqrt(2)
    b = ucb_bonus(KEYS4, [[0, 1, 4, 2]], cfg("ucb"))
    assert b.dtype == torch.float64
    # 1/sqrt(2) to the last bit depends on the CPU's sqrt kernel (0.7071067811865475 or ...476)
    assert b.tolist()[0] == pytest.approx([1.0, 1.0, 0.5, R2], rel=1e-15, abs=0)
    with pytest.raises(ValueError):
        ucb_bonus(KEYS4, None, cfg("ucb"))  # counts are required
    with pytest.raises(ValueError):
        ucb_bonus(KEYS4, [[1, 1, 1]], cfg("ucb"))  # shape mismatch


def test_ucb_mean_by_hand():
    # N = [1, 4, 4, 1] -> b = [1, .5, .5, 1], group mean .75 -> [.25, -.25, -.25, .25]
    b = ucb_mean_bonus(KEYS4, [[1, 4, 4, 1]], cfg("ucb_mean"))
    assert b.tolist() == [[0.25, -0.25, -0.25, 0.25]]
    # leave-one-out: b_0 - mean(.5, .5, 1) = 1 - 2/3 = 1/3 = 4/3 * .25;  b_1 - mean(1, .5, 1) = .5 - 5/6 = -1/3
    loo = ucb_mean_bonus(KEYS4, [[1, 4, 4, 1]], cfg("ucb_mean", leave_one_out=True))
    torch.testing.assert_close(loo, torch.tensor([[1 / 3, -1 / 3, -1 / 3, 1 / 3]], dtype=torch.float64))
    # n = 1: the group mean is the sample itself -> 0 (and LOO is defined as 0, not NaN)
    assert ucb_mean_bonus([["a"]], [[0]], cfg("ucb_mean", leave_one_out=True)).tolist() == [[0.0]]


def test_ucb_con_by_hand():
    # b = [1, .5, .5, 1] minus b0 = .5 -> [.5, 0, 0, .5];  with b0 = .25 -> [.75, .25, .25, .75]
    assert ucb_con_bonus(KEYS4, [[1, 4, 4, 1]], cfg("ucb_con")).tolist() == [[0.5, 0.0, 0.0, 0.5]]
    assert ucb_con_bonus(KEYS4, [[1, 4, 4, 1]], cfg("ucb_con", b0=0.25)).tolist() == [[0.75, 0.25, 0.25, 0.75]]


def test_batch_by_hand():
    # n = 4, keys [a, a, b, none]: a has 1 other copy -> -1/4; b and none are unique -> 0
    # n = 4, all the same: 3 other copies each -> -3/4
    # n = 5, [a, b, a, b, a]: a -> -2/5, b -> -1/5 (counts need not be given)
    assert batch_bonus([["a", "a", "b", NO_ANSWER]], None, cfg("batch")).tolist() == [[-0.25, -0.25, 0.0, 0.0]]
    assert batch_bonus([["z"] * 4], None, cfg("batch")).tolist() == [[-0.75] * 4]
    assert batch_bonus([["a", "b", "a", "b", "a"]], None, cfg("batch")).tolist() == [[-0.4, -0.2, -0.4, -0.2, -0.4]]


def test_no_answer_repeats_like_any_key():
    # two no-answer samples are the same outcome: they penalise each other in `batch`
    assert batch_bonus([[NO_ANSWER, NO_ANSWER, "1"]], None, cfg("batch")).tolist() == [[-1 / 3, -1 / 3, 0.0]]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from("abc"), min_size=1, max_size=8))
def test_batch_bonus_properties(keys):
    b = batch_bonus([keys], None, cfg("batch"))[0].tolist()
    n = len(keys)
    for k, bi in zip(keys, b):
        assert bi == -(keys.count(k) - 1) / n
        assert -(n - 1) / n <= bi <= 0 and (bi == 0) == (keys.count(k) == 1)


# -- exploration_advantages ----------------------------------------------------------------

ADV = AdvantageConfig(eps=0.0)  # sample std, eps 0: clean hand numbers


def test_exploration_advantages_ucb_by_hand():
    # rewards [1,0,0,0] -> sample-std adv [1.5, -.5, -.5, -.5] (mean .25, std .5)
    # N = [4, 1, 1, 0] -> b = [.5, 1, 1, 1];  total = adv + .2 b = [1.6, -.3, -.3, -.3]
    adv, bonus = exploration_advantages([[1, 0, 0, 0]], [["4", "7", "7", "9"]], [[4, 1, 1, 0]], cfg("ucb"), ADV)
    assert adv.tolist() == [[1.5, -0.5, -0.5, -0.5]]
    assert bonus.dtype == torch.float32 and bonus.tolist() == [[0.5, 1.0, 1.0, 1.0]]
    torch.testing.assert_close(total_advantages(adv, bonus, 0.2), torch.tensor([[1.6, -0.3, -0.3, -0.3]]))


def test_exploration_advantages_batch_all_wrong_group():
    # all wrong: adv = 0; batch bonus for [x, x, y, y] = [-1/4]*4; total = .2 * -.25 = -.05 each
    adv, bonus = exploration_advantages([[0, 0, 0, 0]], [["x", "x", "y", "y"]], None, cfg("batch"), ADV)
    assert adv.tolist() == [[0.0] * 4] and bonus.tolist() == [[-0.25] * 4]
    torch.testing.assert_close(total_advantages(adv, bonus, 0.2), torch.full((1, 4), -0.05))


def test_gate_solved():
    # group 0 all correct -> bonus gated to 0; group 1 mixed keeps it
    rewards, keys, N = [[1, 1], [1, 0]], [["4", "4"], ["4", "5"]], [[4, 4], [4, 0]]
    _, bonus = exploration_advantages(rewards, keys, N, cfg("ucb"), ADV)
    assert bonus.tolist() == [[0.0, 0.0], [0.5, 1.0]]
    _, ungated = exploration_advantages(rewards, keys, N, cfg("ucb", gate_solved=False), ADV)
    assert ungated.tolist() == [[0.5, 0.5], [0.5, 1.0]]
    assert solved_groups(rewards).tolist() == [True, False]


def test_bonus_in_reward_trains_all_wrong_groups_at_full_strength():
    # all wrong, N = [0, 5, 5, 5] -> b = [1, .4472, .4472, .4472]; reward r + .2 b = [.2, .0894, .0894, .0894]
    # mean .11708, deviations [.08292, -.02764 x3], sample std .05528 -> adv [1.5, -.5, -.5, -.5]:
    # as strong as a correct answer's advantage, towards a never-seen WRONG answer (the documented failure)
    keys, N = [["u", "w", "w", "w"]], [[0, 5, 5, 5]]
    adv, bonus = exploration_advantages([[0, 0, 0, 0]], keys, N, cfg("ucb", bonus_in_reward=True), ADV)
    torch.testing.assert_close(adv, torch.tensor([[1.5, -0.5, -0.5, -0.5]]))
    assert (bonus == 0).all()  # nothing left to add after normalisation
    # default (after normalisation): only c*b = [.2, .0894, .0894, .0894]
    adv2, bonus2 = exploration_advantages([[0, 0, 0, 0]], keys, N, cfg("ucb"), ADV)
    torch.testing.assert_close(total_advantages(adv2, bonus2, 0.2), 0.2 * torch.tensor([[1.0] + [1 / math.sqrt(5)] * 3]))


def test_two_steps_with_count_table_ucb_mean():
    table, c = OutcomeCounts(), cfg("ucb_mean")
    keys, rewards = [["4", "4", "5", "6"]], [[1, 1, 0, 0]]
    # step 1 (before update): N = 0 for all -> b = 1 each -> ucb_mean = 0
    N1 = table.observe_batch(["q"], keys, before_update=c.count_before_update)
    assert N1 == [[0, 0, 0, 0]]
    _, b1 = exploration_advantages(rewards, keys, N1, c)
    assert b1.tolist() == [[0.0] * 4]
    # step 2: N = [2, 2, 1, 1] -> b = [.7071, .7071, 1, 1], mean .85355 -> [-.14645, -.14645, .14645, .14645]
    N2 = table.observe_batch(["q"], keys, before_update=c.count_before_update)
    assert N2 == [[2, 2, 1, 1]]
    _, b2 = exploration_advantages(rewards, keys, N2, c)
    d = (1 - R2) / 2
    torch.testing.assert_close(b2, torch.tensor([[-d, -d, d, d]]))


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError):
        exploration_advantages([[1, 0]], [["a", "b", "c"]], None, cfg("batch"))
    with pytest.raises(ValueError):
        exploration_advantages([[1, 0], [0, 1]], [["a", "b"], ["c"]], None, cfg("batch"))


# -- c = 0 reproduces grpo bit for bit ----------------------------------------------------


def _random_step(seed: int, B: int = 6, n: int = 4):
    g = torch.Generator().manual_seed(seed)
    rewards = (torch.rand(B, n, generator=g) < 0.5).float()
    rewards[0] = 1.0  # one solved group
    rewards[1] = 0.0  # one all-wrong group
    keys = [[str(int(k)) for k in row] for row in torch.randint(0, 3, (B, n), generator=g)]
    counts = torch.randint(0, 6, (B, n), generator=g).tolist()
    answer_mask = (torch.rand(B * n, 7, generator=g) < 0.3).float()
    return rewards, keys, counts, answer_mask


@pytest.mark.parametrize("method", sorted(BONUSES))
@pytest.mark.parametrize("std", ["sample", "population"])
def test_coef_zero_equals_grpo_bit_for_bit(method, std):
    adv_cfg = AdvantageConfig(std=std)
    for seed in range(3):
        rewards, keys, counts, amask = _random_step(seed)
        ref_adv, ref_b = exploration_advantages(rewards, keys, counts, cfg("grpo"), adv_cfg)
        ref_seq = total_advantages(ref_adv, ref_b, 0.2)
        ref_tok = token_advantages(ref_adv.flatten(), ref_b.flatten(), amask, 0.2)
        assert bits(ref_seq) == bits(group_advantages(rewards, std=std))
        flags = itertools.product([False, True], repeat=4)
        for loo, gate, mask, in_reward in flags:
            c = cfg(method, coef=0.0, leave_one_out=loo, gate_solved=gate, mask_answer_tokens=mask,
                    bonus_in_reward=in_reward)
            adv, b = exploration_advantages(rewards, keys, counts, c, adv_cfg)
            assert bits(adv) == bits(ref_adv)
            assert bits(total_advantages(adv, b, c.coef)) == bits(ref_seq)
            tok = token_advantages(adv.flatten(), b.flatten(), amask, c.coef, c.mask_answer_tokens)
            assert bits(tok) == bits(ref_tok)


def test_zero_term_never_touches_the_floats():
    adv = torch.tensor([-0.0, 1.0, -2.0])
    # c = 0 with any bonus (even inf: 0 * inf would be NaN) leaves adv bit-identical, -0.0 kept
    for b in (torch.tensor([1.0, -1.0, 0.5]), torch.tensor([float("inf"), 1.0, 1.0])):
        assert bits(total_advantages(adv, b, 0.0)) == bits(adv)
    # an all-zero bonus (grpo) with c > 0 is skipped too: -0.0 + 0.0 would give +0.0
    assert bits(total_advantages(adv, torch.zeros(3), 0.2)) == bits(adv)
    assert bits(token_advantages(adv, torch.zeros(3), torch.zeros(3, 2), 0.2)) == bits(adv[:, None].expand(3, 2))


# -- token-level combination and answer masking -------------------------------------------


def test_token_advantages_masking_by_hand():
    adv, bonus = torch.tensor([1.5, -0.5]), torch.tensor([0.5, 1.0])
    amask = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 0]])
    # row 0: reasoning 1.5 + .2*.5 = 1.6, answer tokens keep 1.5
    # row 1: reasoning -.5 + .2*1 = -.3, answer token keeps -.5
    tok = token_advantages(adv, bonus, amask, 0.2)
    torch.testing.assert_close(tok, torch.tensor([[1.6, 1.6, 1.5, 1.5], [-0.3, -0.5, -0.3, -0.3]]))
    # masking off: the exploration term on every token
    tok_all = token_advantages(adv, bonus, amask, 0.2, mask_answer_tokens=False)
    torch.testing.assert_close(tok_all, torch.tensor([[1.6] * 4, [-0.3] * 4]))


def test_token_advantages_accepts_B_n_leading_shape():
    adv, bonus = torch.tensor([[1.0, -1.0]]), torch.tensor([[1.0, 0.0]])
    amask = torch.tensor([[[0, 1], [0, 1]]])  # [B=1, n=2, T=2]
    # sample 0: [1 + .2, 1], sample 1: [-1, -1]
    torch.testing.assert_close(token_advantages(adv, bonus, amask, 0.2), torch.tensor([[[1.2, 1.0], [-1.0, -1.0]]]))
    with pytest.raises(ValueError):
        token_advantages(adv, bonus, amask[0], 0.2)


def test_exploration_step_reads_then_updates_the_table():
    table = OutcomeCounts()
    table.update("q", ["4", "4", "4"])  # history N(q,4) = 3
    rewards, keys = [[1, 0]], [["4", "5"]]
    # before update (default): N = [3, 0] -> ucb b = [1/sqrt 3, 1]
    adv, b = exploration_step(rewards, keys, ["q"], table, cfg("ucb"), ADV)
    torch.testing.assert_close(b, torch.tensor([[1 / math.sqrt(3), 1.0]]))
    assert table.count("q", "4") == 4 and table.count("q", "5") == 1
    # after update: N = [4 + 1, 1 + 1] = [5, 2] -> b = [1/sqrt 5, 1/sqrt 2]
    _, b = exploration_step(rewards, keys, ["q"], table, cfg("ucb", count_before_update=False), ADV)
    torch.testing.assert_close(b, torch.tensor([[1 / math.sqrt(5), R2]]))
    # grpo / batch need no table; count methods do
    exploration_step(rewards, keys, ["q"], None, cfg("batch"))
    with pytest.raises(ValueError):
        exploration_step(rewards, keys, ["q"], None, cfg("ucb_con"))


# -- apply_exploration: the one entry point of every trainer ------------------------------


def test_apply_exploration_by_hand_and_row_slices():
    # one group: rewards [1, 0, 0, 0], keys a a b c, empty table, ucb_con, counts read before:
    # N = 0 for all -> bonus 1 - 0.5 = 0.5 each; sample adv = group adv + 0.2 * 0.5
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    keys = [["a", "a", "b", "c"]]
    c = cfg("ucb_con")
    cm = torch.ones(4, 3)
    amask = torch.tensor([[0.0, 0.0, 1.0]] * 4)
    calls = []

    def answer_mask():
        calls.append(1)
        return amask

    table = OutcomeCounts()
    out = apply_exploration(rewards, keys, ["q"], table, c, ADV, cm, answer_mask)
    adv = group_advantages(rewards)
    torch.testing.assert_close(out.adv_Bn, adv)
    torch.testing.assert_close(out.bonus_Bn, torch.full((1, 4), 0.5))
    torch.testing.assert_close(out.sample_Bn, adv + 0.1)
    expect = adv.reshape(4, 1) + torch.tensor([[0.1, 0.1, 0.0]])  # the answer token gets no term
    torch.testing.assert_close(out.token_RT, expect)
    assert table.question_counts("q") == {"a": 2, "b": 1, "c": 1} and calls == [1]
    # a rank's slice of the same step gives the same rows (fresh table: same counts)
    part = apply_exploration(rewards, keys, ["q"], OutcomeCounts(), c, ADV, cm[2:], lambda: amask[2:], rows=slice(2, 4))
    torch.testing.assert_close(part.token_RT, expect[2:])
    with pytest.raises(ValueError):
        apply_exploration(rewards, keys, ["q"], OutcomeCounts(), c, ADV, cm, answer_mask, rows=slice(0, 2))
    # no term (c = 0, grpo, or mask off): the answer mask is never computed
    for c0 in (cfg("ucb_con", coef=0.0), cfg("grpo"), cfg("ucb_con", mask_answer_tokens=False)):
        calls.clear()
        apply_exploration(rewards, keys, ["q"], OutcomeCounts(), c0, ADV, cm, answer_mask)
        assert calls == []


def test_each_exploration_setting_is_defined_once():
    """ExplorationConfig defines the settings (name, default, help); the trainers' TrainConfig,
    their CLI help and the config schema's `methods.<m>` keys follow it."""
    import dataclasses

    from obe.rl.bonuses import EXPLORATION_FIELDS, METHOD_SETTINGS, exploration_defaults, exploration_help
    from obe.core.config import load_schema
    from obe.training.config import HELP, TrainConfig

    assert list(load_schema()["$defs"]["method_settings"]["properties"]) == list(METHOD_SETTINGS)
    train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for name, default in exploration_defaults().items():
        assert train_fields[name].default == default and train_fields[name].type == type(default).__name__, name
    assert all(HELP[name] == text for name, text in exploration_help().items())
    custom = TrainConfig(method="ucb_mean", coef=0.7, b0=0.1, leave_one_out=True, count_before_update=False,
                         gate_solved=False, mask_answer_tokens=False, bonus_in_reward=True)
    assert custom.exploration() == ExplorationConfig(**{k: getattr(custom, k) for k in EXPLORATION_FIELDS})
    assert dataclasses.asdict(custom.exploration()) == {k: getattr(custom, k) for k in EXPLORATION_FIELDS}
