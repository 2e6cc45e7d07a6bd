"""Outcome-based exploration in your own TRL script: ``ExplorationGRPOTrainer`` is TRL's
``GRPOTrainer`` with the paper's 0/1 correctness reward and exploration bonus on final answers.

    python examples/exploration_grpo.py [--method ucb_con] [--coef 1.0] [--steps 8]

On CPU in about a minute: pre-trains a tiny model on obe's synthetic arithmetic task (the smoke
size of ``obe.base_model``), trains it a few GRPO steps with the chosen exploration method, and
prints pass@1 and pass@8 on held-out questions before and after. At this size and length the
numbers move little and noisily; the point is the few lines a TRL user adds (marked below).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))  # run from a checkout, installed or not


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="ucb_con", help="grpo | ucb | ucb_mean | ucb_con | batch")
    ap.add_argument("--coef", type=float, default=1.0, help="exploration coefficient c")
    ap.add_argument("--steps", type=int, default=8, help="GRPO steps")
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

    import torch
    import transformers
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from obe import ExplorationConfig, ExplorationGRPOTrainer  # <- the exploration trainer
    from obe.base_model import build, format_prompt, sample_completions, score_completions
    from obe.tasks.synthetic import make_split

    torch.set_num_threads(2)
    transformers.utils.logging.disable_progress_bar()
    work = Path(args.out or tempfile.mkdtemp(prefix="obe_example_"))
    base = work / "base"
    build(base, seed=0, size="smoke", threads=2, difficulty=2, steps=1500, eval_questions=0, log_every=10**6)
    tokenizer = AutoTokenizer.from_pretrained(base)
    test = make_split("test", 32, seed=0, difficulty=2)

    def scores(model) -> dict:
        comps = sample_completions(model, tokenizer, [r.problem for r in test], 8, max_new_tokens=40, seed=1)
        return score_completions(comps, [r.answer for r in test])

    before = scores(AutoModelForCausalLM.from_pretrained(base))

    train = make_split("train", 64, seed=0, difficulty=2)
    dataset = Dataset.from_dict({"prompt": [format_prompt(r.problem) for r in train],
                                 "answer": [r.answer for r in train],  # <- the gold answer, graded by obe.grading
                                 "question_id": [r.id for r in train]})  # <- optional: keys the count table N(x, a)
    config = GRPOConfig(output_dir=str(work / "checkpoints"), use_cpu=True, report_to="none", seed=0,
                        max_steps=args.steps, per_device_train_batch_size=32, num_generations=8,
                        max_completion_length=40, temperature=1.0, learning_rate=5e-4, logging_steps=args.steps,
                        save_strategy="no", disable_tqdm=True, dataloader_num_workers=0, beta=0.0)
    trainer = ExplorationGRPOTrainer(
        model=str(base), args=config, train_dataset=dataset, processing_class=tokenizer,
        exploration=ExplorationConfig(method=args.method, coef=args.coef))  # <- the method and its coefficient
    trainer.train()

    after = scores(trainer.model.eval())
    print(f"{args.method} c={args.coef:g}, {args.steps} steps; {len(test)} test questions x 8 samples: "
          f"pass@1 {before['pass@1']:.3f} -> {after['pass@1']:.3f}, pass@8 {before['pass@8']:.3f} -> {after['pass@8']:.3f}; "
          f"count table N(x, a): {trainer.counts.num_entries()} (question, answer) pairs")


if __name__ == "__main__":
    main()
