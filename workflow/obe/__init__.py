"""obe: outcome-based exploration for RL post-training of language models.

A reproducible pipeline for Song, Kempe & Munos, "Outcome-based Exploration for LLM
Reasoning" (arXiv 2509.06941). Pure maths live in small modules (grading, metrics,
advantages, bonuses, loss); stage entry points run as ``python -m obe.<stage>``.
"""

__version__ = "0.1.0"
