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

For your own TRL scripts: ``from obe import ExplorationGRPOTrainer, ExplorationConfig`` (a drop-in
for TRL's ``GRPOTrainer`` with the paper's methods; examples/exploration_grpo.py runs one).
"""

__version__ = "0.1.0"
__all__ = ["ExplorationConfig", "ExplorationGRPOTrainer"]


def __getattr__(name: str):
    # built on first use: importing trl takes seconds, and the pipeline's stages do not need it
    if name == "ExplorationGRPOTrainer":
        from obe.engines.trl_trainer import trainer_class

        return trainer_class()
    if name == "ExplorationConfig":
        from obe.rl.bonuses import ExplorationConfig

        return ExplorationConfig
    raise AttributeError(f"module 'obe' has no attribute {name!r}")
