"""The analysis figures (PNG), each listed in ``analysis.json`` with a caption and a reading guide.

Figures: RL as a sampling process (paper Fig. 2), per test set the pass@k curves (Figs. 1, 4, 6),
pass@k over training steps and the paired difference from GRPO, and the training dynamics.
Lines are means over seeds with their 95% t-interval as a band; colours are fixed per method
(``obe.analysis.options.color_map``). matplotlib is imported only when figures are drawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from obe.analysis.options import method_label
from obe.analysis.sampling_curve import SAMPLING_METRICS
from obe.analysis.training import TRAINING_KEYS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 9})
    return plt


def _band(ax, x, stats, color, label, marker="o", ls="-"):
    xs = [xi for xi, s in zip(x, stats) if s and s.get("mean") is not None]
    ys = [s["mean"] for s in stats if s and s.get("mean") is not None]
    if not xs:
        return
    ax.plot(xs, ys, ls, color=color, label=label, marker=marker, ms=3, lw=1.6)
    ci = [(xi, s["lo"], s["hi"]) for xi, s in zip(x, stats) if s and s.get("lo") is not None]
    if ci:
        ax.fill_between([c[0] for c in ci], [c[1] for c in ci], [c[2] for c in ci], color=color, alpha=0.18, lw=0)


def _log2_axis(ax, n: int) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator([2 ** i for i in range(max(1, n).bit_length()) if 2 ** i <= n]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(ScalarFormatter())


def _const(v: Optional[float]) -> dict[str, Any]:
    return {"mean": v, "lo": None, "hi": None}


TRAINING_TITLES = {"reward": "mean reward (fraction correct)", "entropy": "token entropy (nats)",
                   "answers/distinct_per_group": "distinct answers per group of n",
                   "cumulative/questions_solved": "training questions solved so far",
                   "convention/read_plus": "reads '?' as '+' (right on ~70%)"}


def build_figures(a: Mapping[str, Any], out_dir: Path) -> list[dict[str, Any]]:
    plt = _plt()
    figs: list[dict[str, Any]] = []
    colors, methods = a["meta"]["colors"], a["meta"]["methods"]
    band_note = ("Lines: mean over seeds; shaded band: 95% t-interval over seeds (absent with one "
                 "seed). Colours are fixed per method in every figure; the base model is black.")

    def save(fig, name, title, caption, guide):
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=a["meta"]["options"].get("dpi", 120))
        plt.close(fig)
        figs.append({"file": name, "title": title, "caption": caption, "guide": guide})

    # Figure 2: RL as sampling
    sm = a["sampling"]
    if sm.get("methods"):
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
        titles = {"frac_solved": "training questions solved at least once", "distinct": "distinct answers per question",
                  "distinct_unsolved": "distinct answers, questions not yet solved"}
        kmax = max((max(r["k"]) for r in sm["methods"].values() if r["k"]), default=0)
        for ax, met in zip(axes, SAMPLING_METRICS):
            if sm.get("base"):
                bk = [k for k in sm["base"]["k"] if not kmax or k <= kmax]
                ax.plot(bk, sm["base"][met][:len(bk)], "-", color=colors["base"], lw=1.8,
                        label=f"Base ({sm['base_mode']} k-subsets)")
            for m in methods:
                r = sm["methods"].get(m)
                if r and r["k"]:
                    _band(ax, r["k"], r[met], colors[m], method_label(m))
            ax.set_xlabel("k = samples per question")
            ax.set_ylabel("fraction of questions" if met == "frac_solved" else "mean distinct answers")
            ax.set_title(titles[met])
        axes[0].legend(loc="lower right")
        save(fig, "fig_sampling.png", "RL as a sampling process (paper Fig. 2)",
             "Training rollouts seen as samples: after a question has been drawn t times it has k = n*t samples. Left: "
             "fraction of training questions solved at least once within k samples; middle: distinct final answers "
             "among them; right: the same on questions still unsolved. Black: the base model sampled k times per "
             "question on the same questions. " + band_note,
             "If RL only sharpened the base distribution, its curves would sit below black: fewer questions ever "
             "solved and fewer distinct answers at equal k. Exploration bonuses should move the coloured curves up, "
             "most visibly on the right panel.")
    # test pass@k curves per dataset
    for ds, res in a["test"].items():
        steps = res["steps"]
        if not steps and not res["base"]:
            continue
        ks_all = list(range(1, res["n"] + 1))
        show = steps[-3:] if steps else []
        fig, axes = plt.subplots(1, max(1, len(show)), figsize=(5.2 * max(1, len(show)), 4.2), squeeze=False)
        for ax, step in zip(axes[0], show or [None]):
            if res["base"]:
                ax.plot(ks_all, [res["base"]["pass_at_k"][str(k)] for k in ks_all], "-", color=colors["base"],
                        lw=1.8, label="Base")
            for m in methods:
                st = res["methods"].get(m, {}).get(str(step))
                if st:
                    _band(ax, ks_all, [st["pass_at_k"][str(k)] for k in ks_all], colors[m], method_label(m), marker="")
            _log2_axis(ax, res["n"])
            ax.set_xlabel("k (samples per question)")
            ax.set_ylabel("pass@k")
            ax.set_title(f"{ds}: step {step}" if step is not None else f"{ds}: base model")
            ax.legend(loc="lower right")
        save(fig, f"fig_test_passk_{ds}.png", f"Test pass@k curves on {ds} (paper Figs. 1, 4, 6)",
             f"pass@k (unbiased estimator from n = {res['n']} samples per test question) against k on a log2 axis, one "
             "panel per evaluated training step (last three), each method and the base model. " + band_note,
             "A method that only sharpens raises the left end (k = 1) and falls toward or below black at the right "
             "end (large k). Diversity-preserving methods keep the right end at or above black.")
        # pass@k at chosen k over steps
        ks = res["ks"]
        if steps:
            fig, axes = plt.subplots(1, len(ks), figsize=(3.8 * len(ks), 3.8), squeeze=False)
            for ax, k in zip(axes[0], ks):
                bval = res["base"]["pass_at_k"][str(k)] if res["base"] else None
                if bval is not None:
                    ax.axhline(bval, color=colors["base"], ls="--", lw=1.2, label="Base")
                for m in methods:
                    per = res["methods"].get(m, {})
                    xs = [st for st in steps if str(st) in per]
                    stats = [per[str(st)]["pass_at_k"][str(k)] for st in xs]
                    if bval is not None:
                        xs, stats = [0] + xs, [_const(bval)] + stats
                    _band(ax, xs, stats, colors[m], method_label(m))
                ax.set_xlabel("training step")
                ax.set_ylabel(f"pass@{k}")
                ax.set_title(f"{ds}: pass@{k}")
            axes[0][0].legend(loc="best")
            save(fig, f"fig_test_steps_{ds}.png", f"Test pass@k over training on {ds}",
                 f"pass@k at k in {ks} against the training step; every method starts from the base model at step 0 "
                 "(dashed black line). " + band_note,
                 "Read each panel left to right: pass@1 should rise for every method; at the largest k, GRPO's line "
                 "drifting down to the dashed line is the diversity collapse the paper reports.")
            # paired difference vs GRPO at the final step
            fs = res["final_step"]
            others = [m for m in methods if m != "grpo" and res["methods"].get(m, {}).get(str(fs), {}).get("pass_minus_grpo")]
            if others:
                fig, ax = plt.subplots(figsize=(6.4, 4.2))
                ax.axhline(0, color="grey", lw=1)
                for m in others:
                    d = res["methods"][m][str(fs)]["pass_minus_grpo"]
                    _band(ax, ks_all, [d.get(str(k)) for k in ks_all], colors[m], method_label(m), marker="")
                _log2_axis(ax, res["n"])
                ax.set_xlabel("k (samples per question)")
                ax.set_ylabel("pass@k(method) - pass@k(GRPO)")
                ax.set_title(f"{ds}: paired difference from GRPO, step {fs}")
                ax.legend(loc="best")
                save(fig, f"fig_diff_grpo_{ds}.png", f"Difference from GRPO on {ds}",
                     "Each exploration method's pass@k minus GRPO's, paired by seed, at the last evaluated step; band: "
                     "95% t-interval of the paired difference.",
                     "Above the grey zero line: better than GRPO at that k. Where the band clears 0 the seeds agree; "
                     "where it straddles 0 the difference is within seed noise.")
    # training dynamics
    tc = a["training"].get("curves", {})
    keys = [k for k in TRAINING_KEYS
            if any(tc.get(m, {}).get(k, {}).get("step") for m in tc)]
    if keys:
        fig, axes = plt.subplots(1, len(keys), figsize=(3.9 * len(keys), 3.7), squeeze=False)
        for ax, key in zip(axes[0], keys):
            for m in methods:
                c = tc.get(m, {}).get(key)
                if c and c["step"]:
                    _band(ax, c["step"], c["stats"], colors[m], method_label(m), marker="")
            ax.set_xlabel("training step")
            ax.set_title(TRAINING_TITLES.get(key, key))
        axes[0][0].legend(loc="best")
        save(fig, "fig_training.png", "Training dynamics",
             "Per-step training metrics from metrics.jsonl: mean reward of the batch, mean token entropy, distinct "
             "answers per group of n, training questions solved so far and, on the synthetic task, the share of "
             "rollouts reading its convention symbol '?' as '+' (right on ~70% of questions). " + band_note,
             "GRPO's entropy and distinct answers per group typically fall as reward rises; exploration bonuses "
             "should slow that fall without costing reward.")
    return figs
