"""Analysis stage: evaluation and training outputs -> numbers, tables and figures.

``python -m obe.analysis --eval ... --train ... --base-train ... --out-dir DIR`` (``cli``).
One module per job, in the order the stage runs them:

- ``options``: what is asked for (:class:`Options`) and method order, labels and colours
  (from ``obe.rl.methods.METHODS``);
- ``inputs``: run names, the ``--eval`` / ``--train`` arguments, loading their folders;
- ``statistics``: t-intervals over seeds, paired differences, the base model's sampling error;
- ``evaluations``: test-set pass@k and scalars per method, step and seed;
- ``sampling_curve``: RL as a sampling process against sampling the base model (Fig. 2);
- ``training``: Tables 1-2 and the per-step training curves;
- ``claims``: the paper's claims as a table of rows, judged by one loop;
- ``tables``, ``figures``, ``formatting``: what is written (TSV/MD, PNG) and how numbers read;
- ``cli``: :func:`run_analysis` (every step above, then ``analysis.json``) and :func:`main`.

The names below are the package's public API.
"""

from obe.analysis.claims import CLAIMS, MAX_FEW_SEEDS, STATUSES, evaluate_claims, judge
from obe.analysis.cli import build_parser, main, run_analysis
from obe.analysis.evaluations import eval_values, test_analysis
from obe.analysis.figures import build_figures
from obe.analysis.formatting import fmt, fmt_ci, fmt_mean_std
from obe.analysis.inputs import load_eval_dir, load_train_dir, parse_run_name
from obe.analysis.options import (METHOD_COLORS, METHOD_LABELS, METHOD_ORDER, PAPER_KS, Options, color_map,
                                  method_label, order_methods)
from obe.analysis.sampling_curve import (SAMPLING_METRICS, base_sampling_stats, base_sequences, base_solved_se,
                                         expected_subset_stats, first_k_stats, question_sequences, sampling_analysis)
from obe.analysis.statistics import (bootstrap_ci, distinct_draw_var, distinct_se, paired_diff, pass_at_k_draw_var,
                                     pass_at_k_se, seed_stats, student_t_cdf, student_t_quantile, t_interval)
from obe.analysis.tables import build_tables, write_table
from obe.analysis.training import (TRAINING_KEYS, group_diversity, rollout_groups, training_curves, training_tables,
                                   window_steps)

__all__ = [
    "CLAIMS", "MAX_FEW_SEEDS", "STATUSES", "evaluate_claims", "judge",
    "build_parser", "main", "run_analysis",
    "eval_values", "test_analysis",
    "build_figures",
    "fmt", "fmt_ci", "fmt_mean_std",
    "load_eval_dir", "load_train_dir", "parse_run_name",
    "METHOD_COLORS", "METHOD_LABELS", "METHOD_ORDER", "PAPER_KS", "Options", "color_map", "method_label",
    "order_methods",
    "SAMPLING_METRICS", "base_sampling_stats", "base_sequences", "base_solved_se", "expected_subset_stats",
    "first_k_stats", "question_sequences", "sampling_analysis",
    "bootstrap_ci", "distinct_draw_var", "distinct_se", "paired_diff", "pass_at_k_draw_var", "pass_at_k_se",
    "seed_stats", "student_t_cdf", "student_t_quantile", "t_interval",
    "build_tables", "write_table",
    "TRAINING_KEYS", "group_diversity", "rollout_groups", "training_curves", "training_tables", "window_steps",
]
