"""obe.bandits: outcome-based bandits simulated (arm-UCB vs outcome-UCB vs greedy)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from obe import bandits

SEEDS = list(range(6))
T = 2000


@pytest.fixture(scope="module")
def curves():
    """One shared grid, m=4, K in {64, 1024}: ~1-2 s on one core."""
    return bandits.run_grid(bandits.LEARNERS, [64, 1024], [4], T, SEEDS)


def _final(curves, learner, K, m=4):
    return curves[(learner, K, m)][:, -1].mean()


def test_outcome_ucb_beats_arm_ucb_when_K_much_larger_than_m(curves):
    assert _final(curves, "outcome_ucb", 1024) * 3 < _final(curves, "arm_ucb", 1024)
    assert _final(curves, "outcome_ucb", 64) < _final(curves, "arm_ucb", 64)


def test_outcome_ucb_regret_does_not_depend_on_K(curves):
    ratio = _final(curves, "outcome_ucb", 64) / _final(curves, "outcome_ucb", 1024)
    assert 0.8 < ratio < 1.25, ratio


def test_arm_ucb_regret_grows_with_K(curves):
    assert _final(curves, "arm_ucb", 1024) > 1.3 * _final(curves, "arm_ucb", 64)


def test_regret_is_non_decreasing_and_starts_at_one_gap(curves):
    for (learner, K, m), regret in curves.items():
        assert regret.shape == (len(SEEDS), T)
        assert np.all(np.diff(regret, axis=1) >= 0), (learner, K, m)
        assert np.all((regret[:, 0] == 0) | np.isclose(regret[:, 0], 0.4)), (learner, K, m)


@pytest.mark.parametrize("m", [4, 16])
def test_outcome_ucb_tracks_sqrt_m_T_log_T(m):
    regret = bandits.simulate_batch("outcome_ucb", 64, m, T, SEEDS).mean(axis=0)
    grid = bandits.t_grid(T)
    grid = grid[grid >= m]
    ratio = regret[grid - 1] / bandits.sqrt_mtlogt(grid, m)
    assert 0.05 <= ratio.min() and ratio.max() <= 5, ratio


def test_greedy_gets_stuck_on_some_seeds_and_ucb_does_not():
    seeds = list(range(10))
    greedy = bandits.simulate_batch("greedy", 64, 4, T, seeds)
    ucb = bandits.simulate_batch("outcome_ucb", 64, 4, T, seeds)
    tail = T // 10
    wrong_greedy = (np.diff(greedy, axis=1)[:, -tail:] > 0).mean(axis=1)
    wrong_ucb = (np.diff(ucb, axis=1)[:, -tail:] > 0).mean(axis=1)
    assert (wrong_greedy == 1).any()  # linear regret: every late pull is wrong
    assert (wrong_greedy == 0).any()  # and some seeds are lucky
    assert wrong_ucb.max() < 0.5


def test_simulate_is_a_row_of_simulate_batch_and_deterministic():
    batch = bandits.simulate_batch("arm_ucb", 32, 4, 300, [3, 7])
    np.testing.assert_array_equal(bandits.simulate("arm_ucb", 32, 4, 300, seed=7), batch[1])
    np.testing.assert_array_equal(bandits.simulate("arm_ucb", 32, 4, 300, seed=3), batch[0])


def test_hand_computed_noiseless_cases():
    # K = m = 2, noiseless verifier: discovery pulls both arms once (one wrong pull), then
    # greedy never leaves the correct outcome: regret is exactly 1 from t = 2 on.
    for seed in range(4):
        r = bandits.simulate("greedy", 2, 2, 50, seed, p_correct=1.0, p_wrong=0.0)
        assert r[0] in (0.0, 1.0) and np.all(r[1:] == 1.0)
    # arm-UCB's first round pulls every arm once: K=8, m=2 -> 4 wrong arms -> regret 4 at t=8.
    r = bandits.simulate("arm_ucb", 8, 2, 8, 0, p_correct=1.0, p_wrong=0.0)
    assert r[-1] == 4.0
    # One outcome, or equal means: nothing to regret.
    for learner in bandits.LEARNERS:
        assert bandits.simulate(learner, 16, 1, 100, 0)[-1] == 0.0
        assert bandits.simulate(learner, 16, 4, 100, 0, p_correct=0.5, p_wrong=0.5)[-1] == 0.0


def test_make_instances_is_balanced():
    inst = bandits.make_instances(K=10, m=4, T=5, seeds=[0, 1])
    for row in inst.outcome_of_arm:
        assert sorted(np.bincount(row, minlength=4)) == [2, 2, 3, 3]
    assert np.allclose(inst.gaps[np.arange(2), inst.correct], 0.0)


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="allowed: outcome_ucb, arm_ucb, greedy"):
        bandits.simulate("thompson", 8, 2, 10, 0)
    with pytest.raises(ValueError, match="m <= K"):
        bandits.simulate("greedy", 2, 4, 10, 0)


def test_cli_writes_its_files(tmp_path, capsys):
    out = tmp_path / "bandits"
    argv = ["--out-dir", str(out), "--T", "200", "--seeds", "2", "--m", "2", "4", "--K", "8", "32"]
    rc = bandits.main(argv + ["--points", "10"])
    assert rc == 0
    lines = (out / "regret.tsv").read_text().splitlines()
    assert lines[0].split("\t") == list(bandits.TSV_COLUMNS)
    n_grid = len(bandits.t_grid(200, 10))
    assert len(lines) - 1 == 3 * 2 * 2 * 2 * n_grid  # learners x K x m x seeds x horizons
    assert {ln.split("\t")[4] for ln in lines[1:]} >= {"1", "200"}
    assert "| outcome_ucb | 32 | 4 |" in (out / "regret.md").read_text()
    assert (out / "regret.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["T"] == 200
    assert len(summary["results"]) == 12
    assert set(summary["by_learner"]) == set(bandits.LEARNERS)
    for res in summary["results"]:
        assert {"exponent", "ratio_sqrt_mTlogT", "frac_stuck", "final_regret_mean"} <= set(res)
    assert "outcome_ucb" in capsys.readouterr().out
