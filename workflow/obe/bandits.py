"""Outcome-based bandits: the paper's theory, simulated.

``python -m obe.bandits --out-dir DIR [--T 10000] [--seeds 10] [--m 4 16] [--K 64 1024]``

Writes ``regret.tsv`` (learner, K, m, seed, T, regret at a log-spaced grid of T),
``regret.md`` (final regrets), ``regret.png`` (regret vs T) and ``summary.json`` (fitted
exponents, ratios to sqrt(m T log T)). Runs on CPU in seconds; no torch.

Song, Kempe & Munos (arXiv 2509.06941) model RL on one question as a bandit whose arms are
reasoning traces and whose reward depends only on the trace's final answer (its outcome).
Without further structure a learner must treat every trace as its own arm and pays for the
K traces; if an update on one trace generalises to every trace with the same answer, the
learner can explore over the m << K answers, with regret of order sqrt(m T log T).

The model simulated here (our reading, stated so it can be checked):

1. Arms and outcomes. K arms map onto m outcomes by a balanced map (each outcome owns
   K/m arms, up to rounding), drawn at random per seed. Exactly one outcome is correct.
   The learner knows K and m, not the map.
2. Rewards. Bernoulli with outcome-level means: ``p_correct`` for arms of the correct
   outcome, ``p_wrong`` for all others (defaults 0.7 / 0.3: a gap of 0.4; read it as a noisy
   verifier, or as the chance a trace's answer is graded correct). A noiseless
   verifier is ``p_correct=1, p_wrong=0``; it makes greedy never get stuck, so the
   default keeps noise. Every arm of one outcome has the same reward distribution.
3. Feedback. Pulling an arm reveals its reward and its outcome (the answer is read off
   the trace).
4. Regret is the pseudo-regret ``sum_t (mu* - mu(outcome of arm_t))``: non-decreasing in
   t, and free of reward noise given the actions.
5. Learners, chosen by key in :data:`LEARNERS`:
   - ``arm_ucb``: UCB1 over the K arms, no sharing: index
     ``mean_a + c * sqrt(2 log t / n_a)``, unpulled arms first.
   - ``outcome_ucb``: the generalisation assumption. Statistics (pulls, rewards) are kept
     per outcome and shared by all its arms; once an outcome has been seen the learner can
     play it again (pull any arm known to map to it; all are alike). UCB1's "play each arm
     once" becomes "pull fresh arms until all m outcomes have been seen" (a coupon
     collector over m balanced outcomes, about m ln m pulls, whatever K is); then
     UCB1 over the m outcomes.
   - ``greedy``: as ``outcome_ucb`` (same sharing, same discovery) but no bonus: the
     outcome with the best empirical mean. Its analogue is RL without an exploration
     bonus; it can lock onto a wrong outcome for ever (linear regret).
   Ties go to the lowest index; the map is random, so this favours no outcome.
6. Randomness. Each seed owns a ``numpy`` Generator that draws the correct outcome, one
   uniform per step (reward of step t is ``u_t < mu(outcome)``) and the map, in that
   order: learners, K values and T prefixes share the correct outcome and reward noise
   for a seed (common random numbers). Seeds are simulated together, vectorised;
   ``simulate(seed=s)`` equals row s of ``simulate_batch``.

Deviations and caveats:

1. For a fixed instance UCB's regret is eventually O(m log T / gap); sqrt(m T log T) is
   the worst case over instances. With gap 0.4 and T <= 1e4 the m=16 runs sit near the
   sqrt regime (log-log slope ~0.6) and the m=4 runs bend towards log T (~0.4).
   ``summary.json`` gives the fitted log-log exponent and the ratio to sqrt(m T log T)
   over the grid: evidence, not a proof.
2. The paper's learners move a policy (the LLM); here a learner is an index rule. The
   generalisation assumption is taken as exact sharing of statistics within an outcome.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

LEARNERS = ("outcome_ucb", "arm_ucb", "greedy")
TSV_COLUMNS = ("learner", "K", "m", "seed", "T", "regret")


@dataclass(frozen=True)
class Instances:
    """A batch of S bandit instances (one per seed), arrays indexed by seed first."""

    outcome_of_arm: np.ndarray  # (S, K) int: the arm -> outcome map
    means: np.ndarray  # (S, m) float: Bernoulli mean of each outcome
    correct: np.ndarray  # (S,) int: the correct outcome
    noise: np.ndarray  # (S, T) float in [0, 1): reward at step t is noise < mean

    @property
    def gaps(self) -> np.ndarray:
        """(S, m): mu* - mu_o, the regret of one pull of outcome o."""
        best = self.means[np.arange(len(self.correct)), self.correct]
        return best[:, None] - self.means


def make_instances(
    K: int, m: int, T: int, seeds: Sequence[int], p_correct: float = 0.7, p_wrong: float = 0.3
) -> Instances:
    """Draw one instance per seed (see the module docstring, points 1, 2 and 6)."""
    if not (1 <= m <= K):
        raise ValueError(f"need 1 <= m <= K, got m={m}, K={K}")
    if T < 1:
        raise ValueError(f"need T >= 1, got T={T}")
    if not (0.0 <= p_wrong <= p_correct <= 1.0):
        raise ValueError(f"need 0 <= p_wrong <= p_correct <= 1, got {p_wrong}, {p_correct}")
    S = len(seeds)
    outcome_of_arm = np.empty((S, K), dtype=np.int64)
    correct = np.empty(S, dtype=np.int64)
    noise = np.empty((S, T))
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(int(seed))
        correct[i] = rng.integers(m)
        noise[i] = rng.random(T)
        outcome_of_arm[i] = rng.permutation(np.arange(K) % m)
    means = np.full((S, m), float(p_wrong))
    means[np.arange(S), correct] = float(p_correct)
    return Instances(outcome_of_arm, means, correct, noise)


def _log_t(t: int) -> float:
    return math.log(max(t, 1))


def _run_arm_ucb(inst: Instances, T: int, c: float) -> np.ndarray:
    S, K = inst.outcome_of_arm.shape
    rows = np.arange(S)
    gaps = inst.gaps
    pulls = np.zeros((S, K))
    wins = np.zeros((S, K))
    regret = np.empty((S, T))
    total = np.zeros(S)
    for t in range(T):
        n = np.maximum(pulls, 1.0)
        index = wins / n + c * np.sqrt(2.0 * _log_t(t) / n)
        index[pulls == 0] = np.inf  # unpulled arms first, lowest index first
        arm = np.argmax(index, axis=1)
        outcome = inst.outcome_of_arm[rows, arm]
        reward = inst.noise[:, t] < inst.means[rows, outcome]
        pulls[rows, arm] += 1.0
        wins[rows, arm] += reward
        total += gaps[rows, outcome]
        regret[:, t] = total
    return regret


def _run_outcome(inst: Instances, T: int, c: float) -> np.ndarray:
    """Outcome-level learner: ``c > 0`` is outcome-UCB, ``c == 0`` is greedy."""
    S, K = inst.outcome_of_arm.shape
    m = inst.means.shape[1]
    rows = np.arange(S)
    gaps = inst.gaps
    pulls = np.zeros((S, m))
    wins = np.zeros((S, m))
    fresh = np.zeros(S, dtype=np.int64)  # next never-pulled arm (the map is random)
    regret = np.empty((S, T))
    total = np.zeros(S)
    for t in range(T):
        seen = pulls > 0
        discovering = ~seen.all(axis=1) & (fresh < K)
        n = np.maximum(pulls, 1.0)
        index = wins / n
        if c > 0:
            index = index + c * np.sqrt(2.0 * _log_t(t) / n)
        index[~seen] = -np.inf  # an unseen outcome cannot be asked for
        chosen = np.argmax(index, axis=1)
        new_outcome = inst.outcome_of_arm[rows, np.minimum(fresh, K - 1)]
        outcome = np.where(discovering, new_outcome, chosen)
        fresh += discovering
        reward = inst.noise[:, t] < inst.means[rows, outcome]
        pulls[rows, outcome] += 1.0
        wins[rows, outcome] += reward
        total += gaps[rows, outcome]
        regret[:, t] = total
    return regret


def simulate_batch(
    learner: str,
    K: int,
    m: int,
    T: int,
    seeds: Sequence[int],
    *,
    p_correct: float = 0.7,
    p_wrong: float = 0.3,
    c: float = 1.0,
) -> np.ndarray:
    """Cumulative pseudo-regret, shape (len(seeds), T): entry [i, t] is the regret after t+1 pulls."""
    inst = make_instances(K, m, T, seeds, p_correct, p_wrong)
    if learner == "arm_ucb":
        return _run_arm_ucb(inst, T, c)
    if learner == "outcome_ucb":
        return _run_outcome(inst, T, c)
    if learner == "greedy":
        return _run_outcome(inst, T, 0.0)
    raise ValueError(f"unknown learner {learner!r}; allowed: {', '.join(LEARNERS)}")


def simulate(learner: str, K: int, m: int, T: int, seed: int, **kwargs) -> np.ndarray:
    """Cumulative pseudo-regret of one run, shape (T,): entry t is the regret after t+1 pulls."""
    return simulate_batch(learner, K, m, T, [seed], **kwargs)[0]


def run_grid(
    learners: Sequence[str],
    Ks: Sequence[int],
    ms: Sequence[int],
    T: int,
    seeds: Sequence[int],
    **kwargs,
) -> dict[tuple[str, int, int], np.ndarray]:
    """``{(learner, K, m): (len(seeds), T) regret}`` for every combination."""
    return {
        (learner, K, m): simulate_batch(learner, K, m, T, seeds, **kwargs)
        for m in ms
        for K in Ks
        for learner in learners
    }


def t_grid(T: int, points: int = 25) -> np.ndarray:
    """Log-spaced horizons 1..T (ints, unique, T included) at which regret is reported."""
    return np.unique(np.geomspace(1, T, points).round().astype(np.int64))


def sqrt_mtlogt(t: np.ndarray | float, m: int) -> np.ndarray:
    """The reference rate sqrt(m t log t) (natural log, log t floored at log 2)."""
    t = np.asarray(t, dtype=float)
    return np.sqrt(m * t * np.log(np.maximum(t, 2.0)))


def regret_table(
    curves: dict[tuple[str, int, int], np.ndarray], seeds: Sequence[int], points: int = 25
) -> list[dict]:
    """Rows (learner, K, m, seed, T, regret) at :func:`t_grid` horizons, from :func:`run_grid`."""
    rows = []
    for (learner, K, m), regret in curves.items():
        grid = t_grid(regret.shape[1], points)
        for i, seed in enumerate(seeds):
            for t in grid:
                rows.append(
                    {"learner": learner, "K": K, "m": m, "seed": int(seed), "T": int(t),
                     "regret": float(regret[i, t - 1])}
                )
    return rows


def _fit_exponent(t: np.ndarray, r: np.ndarray) -> float:
    ok = r > 0
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(t[ok]), np.log(r[ok]), 1)[0])


def summarize(
    curves: dict[tuple[str, int, int], np.ndarray], points: int = 25, tail: float = 0.1
) -> list[dict]:
    """Per (learner, K, m): final regret, log-log exponent, ratios to sqrt(m T log T), stuck seeds.

    The exponent is the least-squares slope of log mean regret on log t over grid horizons
    t >= T/100 (two decades at T = 1e4); ``ref_exponent`` is the same fit of sqrt(m t log t).
    ``tail_wrong_share`` is the share of the last ``tail`` fraction of pulls spent on wrong
    outcomes (seed mean); a seed is *stuck* when at least 99% of those pulls were wrong.
    """
    out = []
    for (learner, K, m), regret in curves.items():
        S, T = regret.shape
        grid = t_grid(T, points)
        fit = grid[grid >= max(2, T // 100)]
        mean_at = regret.mean(axis=0)
        ratio_grid = grid[grid >= max(2, m)]
        ratios = mean_at[ratio_grid - 1] / sqrt_mtlogt(ratio_grid, m)
        n_tail = max(1, int(round(tail * T)))
        wrong = np.diff(regret, axis=1, prepend=0.0)[:, -n_tail:] > 0
        final = regret[:, -1]
        out.append(
            {
                "learner": learner, "K": K, "m": m, "T": T, "seeds": S,
                "final_regret_mean": float(final.mean()),
                "final_regret_std": float(final.std(ddof=1)) if S > 1 else 0.0,
                "exponent": _fit_exponent(fit.astype(float), mean_at[fit - 1]),
                "ref_exponent": _fit_exponent(fit.astype(float), sqrt_mtlogt(fit, m)),
                "ratio_sqrt_mTlogT": float(final.mean() / sqrt_mtlogt(T, m)),
                "ratio_sqrt_mTlogT_min": float(ratios.min()),
                "ratio_sqrt_mTlogT_max": float(ratios.max()),
                "ratio_sqrt_KTlogT": float(final.mean() / sqrt_mtlogt(T, K)),
                "tail_wrong_share": float(wrong.mean()),
                "frac_stuck": float((wrong.mean(axis=1) >= 0.99).mean()),
            }
        )
    return out


def by_learner(summary: list[dict]) -> dict[str, dict]:
    """Headline per learner: exponent range, ratio range, and regret(K max) / regret(K min) per m."""
    out: dict[str, dict] = {}
    for learner in sorted({s["learner"] for s in summary}):
        rows = [s for s in summary if s["learner"] == learner]
        k_ratio = {}
        for m in sorted({s["m"] for s in rows}):
            by_k = sorted((s["K"], s["final_regret_mean"]) for s in rows if s["m"] == m)
            if len(by_k) > 1 and by_k[0][1] > 0:
                k_ratio[f"m={m}"] = by_k[-1][1] / by_k[0][1]
        out[learner] = {
            "exponent_min": min(s["exponent"] for s in rows),
            "exponent_max": max(s["exponent"] for s in rows),
            "ratio_sqrt_mTlogT_min": min(s["ratio_sqrt_mTlogT_min"] for s in rows),
            "ratio_sqrt_mTlogT_max": max(s["ratio_sqrt_mTlogT_max"] for s in rows),
            "regret_Kmax_over_Kmin": k_ratio,
            "frac_stuck_max": max(s["frac_stuck"] for s in rows),
        }
    return out


def markdown_table(summary: list[dict]) -> str:
    head = (
        "| learner | K | m | T | seeds | regret (mean ± sd) | exponent | R / sqrt(mT log T) "
        "| R / sqrt(KT log T) | wrong, last 10% | stuck |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| {s['learner']} | {s['K']} | {s['m']} | {s['T']} | {s['seeds']} | "
        f"{s['final_regret_mean']:.1f} ± {s['final_regret_std']:.1f} | {s['exponent']:.2f} | "
        f"{s['ratio_sqrt_mTlogT']:.2f} | {s['ratio_sqrt_KTlogT']:.2f} | "
        f"{s['tail_wrong_share']:.0%} | {s['frac_stuck']:.0%} |"
        for s in sorted(summary, key=lambda s: (s["m"], s["learner"], s["K"]))
    ]
    note = (
        "\n\nregret: cumulative pseudo-regret at the final T; exponent: log-log slope of mean "
        "regret over t in [T/100, T] (sqrt(m t log t) itself gives ~0.55-0.6); wrong, last 10%: share "
        "of the last 10% of pulls spent on wrong outcomes; stuck: share of seeds for which that "
        "share is at least 99%.\n"
    )
    return head + "\n".join(lines) + note


_COLOURS = {"outcome_ucb": "tab:blue", "arm_ucb": "tab:red", "greedy": "tab:gray"}
_STYLES = ("-", "--", ":", "-.")


def plot_regret(curves: dict[tuple[str, int, int], np.ndarray], path: Path, points: int = 60) -> None:
    """Regret vs T (log-log), one panel per m, colour per learner, line style per K.

    Lines are seed means with a band of +-1 standard error; the black dotted line is
    c * sqrt(m T log T) with c fitted to the outcome-UCB curves of that panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = sorted({m for _, _, m in curves})
    Ks = sorted({K for _, K, _ in curves})
    learners = [lr for lr in LEARNERS if any(k[0] == lr for k in curves)]
    fig, axes = plt.subplots(1, len(ms), figsize=(5.5 * len(ms), 4.4), squeeze=False)
    for ax, m in zip(axes[0], ms):
        T = None
        c_fit = []
        for learner in learners:
            for j, K in enumerate(Ks):
                regret = curves.get((learner, K, m))
                if regret is None:
                    continue
                T = regret.shape[1]
                grid = t_grid(T, points)
                mean = regret.mean(axis=0)[grid - 1]
                se = regret.std(axis=0)[grid - 1] / math.sqrt(regret.shape[0])
                colour = _COLOURS.get(learner, "tab:green")
                ax.plot(grid, mean, color=colour, ls=_STYLES[j % len(_STYLES)], lw=1.8,
                        label=f"{learner}, K={K}")
                ax.fill_between(grid, np.maximum(mean - se, 1e-3), mean + se, color=colour, alpha=0.12)
                if learner == "outcome_ucb":
                    tail = grid[grid >= max(2, T // 100)]
                    c_fit.append(np.median(regret.mean(axis=0)[tail - 1] / sqrt_mtlogt(tail, m)))
        if T is not None:
            grid = t_grid(T, points)
            grid = grid[grid >= 2]
            c = float(np.mean(c_fit)) if c_fit else 1.0
            ax.plot(grid, c * sqrt_mtlogt(grid, m), color="black", ls=":", lw=1.5,
                    label=f"{c:.2f}·sqrt(m T log T)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.1)
        ax.set_title(f"m = {m} outcomes")
        ax.set_xlabel("T (pulls)")
        ax.set_ylabel("cumulative regret (mean over seeds)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Outcome-based bandits: arm-level vs outcome-level exploration")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file so a killed run never leaves a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m obe.bandits",
        description="Simulate outcome-based bandits: regret of arm-UCB, outcome-UCB and greedy.",
    )
    p.add_argument("--out-dir", type=Path, required=True, help="folder for regret.{tsv,md,png}, summary.json")
    p.add_argument("--T", type=int, default=10_000, help="horizon (pulls)")
    p.add_argument("--seeds", type=int, default=10, help="number of seeds: 0..N-1")
    p.add_argument("--m", type=int, nargs="+", default=[4, 16], help="numbers of outcomes")
    p.add_argument("--K", type=int, nargs="+", default=[64, 1024], help="numbers of arms")
    p.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=LEARNERS)
    p.add_argument("--p-correct", type=float, default=0.7, help="Bernoulli mean of the correct outcome")
    p.add_argument("--p-wrong", type=float, default=0.3, help="Bernoulli mean of every wrong outcome")
    p.add_argument("--c", type=float, default=1.0, help="bonus scale: c * sqrt(2 log t / n)")
    p.add_argument("--points", type=int, default=25, help="log-spaced horizons per run in regret.tsv")
    p.add_argument("--no-plot", action="store_true", help="skip regret.png")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seeds < 1:
        raise SystemExit("--seeds must be >= 1")
    for K in args.K:
        for m in args.m:
            if m > K:
                raise SystemExit(f"--m {m} exceeds --K {K}: every outcome needs an arm")
    seeds = list(range(args.seeds))
    curves = run_grid(args.learners, args.K, args.m, args.T, seeds,
                      p_correct=args.p_correct, p_wrong=args.p_wrong, c=args.c)

    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = regret_table(curves, seeds, args.points)
    tsv = "\t".join(TSV_COLUMNS) + "\n" + "".join(
        f"{r['learner']}\t{r['K']}\t{r['m']}\t{r['seed']}\t{r['T']}\t{r['regret']:.4f}\n" for r in rows
    )
    _write_text(out / "regret.tsv", tsv)
    summary = summarize(curves, args.points)
    _write_text(out / "regret.md", markdown_table(summary))
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report = {"config": config, "by_learner": by_learner(summary), "results": summary}
    _write_text(out / "summary.json", json.dumps(report, indent=2) + "\n")
    if not args.no_plot:
        plot_regret(curves, out / "regret.png")
    print(markdown_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
