"""obe: outcome-based exploration for RL post-training of language models.

A reproducible pipeline for Song, Kempe & Munos, "Outcome-based Exploration for LLM
Reasoning" (arXiv 2509.06941). The folder reads like the pipeline:

- stage entry points, each run as ``python -m obe.<stage>`` by one Snakemake rule:
  ``data`` -> ``base_model`` -> ``sampling`` -> ``grade`` -> ``train`` -> ``evaluate`` /
  ``log_evals`` -> ``bandits`` -> ``analysis`` -> ``report`` (and ``scale``, the GPU sizing table);
- ``rl/``: the paper's maths (the method registry, bonuses, outcome counts, advantages, loss);
- ``metrics``: pass@k and answer diversity;
- ``grading/``: answer extraction, equivalence and outcome keys (the public ``grade``,
  ``verify``, ``extract``, ``outcome_key``), with its number parser and sympy worker;
- ``engines/``: generation and training engines (Hugging Face / lean CPU forward / vLLM,
  rollouts, TRL's GRPOTrainer);
- ``core/``: records and JSONL, config validation, checkpoints, progress, W&B tracking;
- ``tasks/``: the embedded synthetic task.
"""

__version__ = "0.1.0"
