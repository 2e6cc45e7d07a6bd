"""Fixed completions for the TRL backend's tests, and a CLI that runs ``obe.engines.trl_backend`` with them.

``FixedRollouts`` replaces TRL's generation (``GRPOTrainer``'s ``rollout_func`` hook): the
completion of a row is a function of (prompt, training step, the row's position in the GLOBAL
batch), so a 1-process run and a 2-process run see the same completions. Some questions
always get correct answers (solved groups), the others a mix of right, wrong, repeated and
missing answers.

    python tests/trl_backend_worker.py [--kill-at-step K] [--dump-counts] -- <obe.engines.trl_backend flags>

``--kill-at-step K``: SIGKILL this process when step K starts generating (after the
checkpoints of the steps before); ``--term-at-step K``: SIGTERM it there instead (``--term-rank R``:
only rank R's process); ``--dump-counts``: each rank writes its final count table and solved
set to ``OUT/counts_rank{r}.json``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))


def pool(gold: str) -> list[str]:
    """Candidate completions for a question with gold answer ``gold`` (``</s>``: ends with EOS)."""
    try:
        w1, w2 = str(int(gold) + 1), str(int(gold) + 2)
    except ValueError:
        w1, w2 = gold + "1", gold + "2"
    return [f"so \\boxed{{{gold}}}</s>", f"\\boxed{{{w1}}}</s>", f"it is \\boxed{{{gold}}} ok</s>", "no idea",
            f"\\boxed{{{w2}}}</s>", f"maybe \\boxed{{{w1}}}</s>"]


def always_solved(prompt: str) -> bool:
    return zlib.crc32(prompt.encode()) % 4 == 0


def completion_text(prompt: str, gold: str, step: int, pos: int) -> str:
    cands = pool(gold)
    if always_solved(prompt):
        cands = [cands[0], cands[2]]
    return cands[zlib.crc32(f"{step}|{pos}|{prompt}".encode()) % len(cands)]


def encode_completion(tok, text: str, max_new: int) -> list[int]:
    body, stop = (text[: -len("</s>")], True) if text.endswith("</s>") else (text, False)
    ids = tok(body, add_special_tokens=False)["input_ids"][:max_new]
    if stop and len(ids) < max_new:
        ids = ids + [tok.eos_token_id]
    return ids


class FixedRollouts:
    """A ``rollout_func(prompts, trainer)`` for TRL serving :func:`completion_text`.

    ``by="position"``: the row's position in the global batch (same completions whatever the
    number of processes); ``by="occurrence"`` (one process): the k-th copy of a prompt in the
    step's batch (same completions whatever the order the sampler put the prompts in)."""

    def __init__(self, tok, gold_by_prompt: dict[str, str], max_new: int, kill_at_step: int = 0, by: str = "position",
                 term_at_step: int = 0, term_rank: int | None = None):
        self.tok, self.gold, self.max_new, self.kill_at_step = tok, gold_by_prompt, max_new, kill_at_step
        self.by, self.term_at_step, self.term_rank = by, term_at_step, term_rank

    def __call__(self, prompts, trainer):
        step = trainer.state.global_step + 1
        if step == self.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        rank = trainer.accelerator.process_index
        if step == self.term_at_step and self.term_rank in (None, rank):  # as Slurm at a time limit: the step
            os.kill(os.getpid(), signal.SIGTERM)                          # finishes, then checkpoint + exit 143
        base = rank * len(prompts)
        out = {"prompt_ids": [], "completion_ids": [], "logprobs": None}
        seen: dict[str, int] = {}
        for i, p in enumerate(prompts):
            if isinstance(p, list):  # chat messages (a chat-template model): the text the model sees
                p = self.tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
            seen[p] = seen.get(p, -1) + 1
            pos = base + i if self.by == "position" else seen[p]
            out["prompt_ids"].append(self.tok(p)["input_ids"])
            out["completion_ids"].append(encode_completion(self.tok, completion_text(p, self.gold[p], step, pos),
                                                           self.max_new))
        return out


def main(argv: list[str]) -> int:
    from transformers import AutoTokenizer

    from obe.engines import trl_backend
    from obe.engines.models import render_template
    from obe.core.records import read_jsonl

    kill, term, term_rank, dump = 0, 0, None, False
    while argv and argv[0] != "--":
        flag = argv.pop(0)
        if flag == "--kill-at-step":
            kill = int(argv.pop(0))
        elif flag == "--term-at-step":
            term = int(argv.pop(0))
        elif flag == "--term-rank":
            term_rank = int(argv.pop(0))
        elif flag == "--dump-counts":
            dump = True
        else:
            raise SystemExit(f"unknown worker flag {flag}")
    cfg, extra, _ = trl_backend.parse(argv[1:])
    tok = AutoTokenizer.from_pretrained(cfg.model)
    gold = {render_template(cfg.prompt_template, r.problem): r.answer for r in read_jsonl(cfg.train_data)}

    def on_end(trainer):
        if dump:
            rank = trainer.accelerator.process_index
            Path(cfg.out, f"counts_rank{rank}.json").write_text(
                json.dumps({"counts": trainer.counts.to_dict(), "solved": sorted(trainer.run.solved)}))

    trl_backend.run(cfg, extra, rollout_func=FixedRollouts(tok, gold, cfg.max_new_tokens, kill, term_at_step=term,
                                                                 term_rank=term_rank),
                    on_end=on_end)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
