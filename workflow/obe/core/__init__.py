"""Plumbing shared by every stage: records and JSONL, config, checkpoints, progress, W&B tracking."""
