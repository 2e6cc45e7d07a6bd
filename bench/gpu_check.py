"""GPU acceptance check (run by bench/gpu_check.sh): the paper-scale code paths on a tiny model.

No network: a tiny Qwen2-architecture model (head dim 64, so vLLM's attention kernels take it)
is built here with the embedded task's tokenizer and pre-trained for a few hundred steps on the
synthetic task on the GPU, so that rewards are not all zero. Then, each as its own part, through
the same CLIs the Snakemake rules call:

  sample-vllm     python -m obe.sampling --backend vllm (bf16, max_model_len, gpu_memory_utilization)
  sample-hf       python -m obe.sampling --backend hf --device cuda
  train-METHOD    python -m obe.train on cuda for grpo, ucb_con and batch: bf16 compute with fp32
                  master weights, gradient checkpointing, rollout and update micro-batches
  train-trl       the trl backend (python -m obe.engines.trl_backend), when the package has it
  evaluate        python -m obe.grade and python -m obe.evaluate on the vLLM (else hf) samples

and prints one line per part: PASS/FAIL/SKIP, tokens/s and the peak GPU memory (nvidia-smi's
memory.used polled every 0.2 s while the part runs: the whole GPU, vLLM's reservation included).
Exit status: the number of failed parts. ``--device cpu`` runs the parts that need no GPU (a
dry run of the script itself on a CPU machine; vLLM is skipped there).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
METHODS = ("grpo", "ucb_con", "batch")


class GpuMemoryPoller:
    """Peak ``nvidia-smi`` memory.used (MiB, summed over GPUs) while a part runs."""

    def __init__(self):
        self.peak, self._stop = "n/a", threading.Event()
        self.available = shutil.which("nvidia-smi") is not None

    def _read(self):
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
        return sum(int(x) for x in out.split())

    def _loop(self):
        while not self._stop.is_set():
            try:
                used = self._read()
                self.peak = used if self.peak == "n/a" else max(self.peak, used)
            except (OSError, ValueError, subprocess.SubprocessError):
                return
            self._stop.wait(0.2)

    def __enter__(self):
        if self.available:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.available:
            self._thread.join(timeout=5)


def run(cmd: list[str], log: Path, timeout: float) -> tuple[bool, float, str]:
    """Run one CLI; (ok, seconds, last lines of its output)."""
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'workflow'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    t0 = time.perf_counter()
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout, cwd=REPO).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
    return rc == 0, time.perf_counter() - t0, (f"exit {rc}: {tail}" if rc != 0 else tail)


def build_tiny_qwen2(out: Path, device: str, steps: int, seed: int = 0) -> dict:
    """A Qwen2 (hidden 128, 2 heads of 64, 1 KV head, 2 layers) on the embedded tokenizer,
    pre-trained on the synthetic task's student demonstrations (obe.base_model's data)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from obe import base_model as bm
    from obe.tasks import synthetic

    torch.manual_seed(seed)
    tok = bm.build_tokenizer()
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = Qwen2ForCausalLM(cfg).to(device)
    demos = synthetic.iter_demonstrations(synthetic.make_split("train", 2000, seed=seed), seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    model.train()
    t0, loss = time.perf_counter(), None
    for _ in range(steps):
        batch = [next(demos) for _ in range(64)]
        ids, mask, labels = (t.to(device) for t in bm.encode_examples(tok, [b[0] for b in batch], [b[1] for b in batch]))
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                                 labels[:, 1:].reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id, do_sample=True, temperature=1.0,
                                               top_k=0, max_new_tokens=64)
    model.to(torch.bfloat16).save_pretrained(str(out), safe_serialization=True)  # as hub checkpoints ship
    bm.save_tokenizer(tok, out)
    return {"seconds": time.perf_counter() - t0, "loss": float(loss.detach()) if loss is not None else None}


def sample_tokens(path: Path) -> int:
    return sum(json.loads(line)["num_tokens"] for line in path.read_text().splitlines())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/obe_gpu_check"), help="scratch folder (wiped)")
    ap.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a dry run of this script)")
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--train-steps", type=int, default=4)
    ap.add_argument("--questions", type=int, default=64, help="test questions sampled (x 16 samples)")
    args = ap.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    py, dev = sys.executable, args.device
    results: list[tuple[str, str, str]] = []

    def report(part: str, status: str, detail: str) -> None:
        results.append((part, status, detail))
        print(f"{status:4s}  {part:12s}  {detail}", flush=True)

    # -- environment ---------------------------------------------------------------
    import torch

    versions = {"torch": torch.__version__}
    for mod in ("transformers", "vllm", "trl", "accelerate"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception as exc:  # noqa: BLE001 -- any import failure is reported, not raised
            versions[mod] = f"missing ({type(exc).__name__})"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    ok = dev == "cpu" or torch.cuda.is_available()
    report("environment", "PASS" if ok else "FAIL", f"gpu {gpu}; " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if not ok:
        return 1

    # -- model and data --------------------------------------------------------------
    model, data = args.work / "qwen2", args.work / "data"
    data.mkdir()
    with GpuMemoryPoller() as mem:
        try:
            built = build_tiny_qwen2(model, dev, args.pretrain_steps)
            report("build-qwen2", "PASS", f"{args.pretrain_steps} pre-training steps in {built['seconds']:.1f} s, "
                                          f"final loss {built['loss']:.3f}; peak GPU MiB {mem.peak}")
        except Exception as exc:  # noqa: BLE001
            report("build-qwen2", "FAIL", f"{type(exc).__name__}: {exc}")
            return 1
    for split, n in (("train", 128), ("test", args.questions)):
        ok, _, tail = run([py, "-m", "obe.data", "--source", "synthetic", "--split", split, "--n", str(n),
                           "--seed", "0", "--out", str(data / f"{split}.jsonl")], args.work / f"data_{split}.log", 120)
        if not ok:
            report("data", "FAIL", tail)
            return 1

    common = ["--model", str(model), "--data", str(data / "test.jsonl"), "--n", "16", "--seed", "1234",
              "--max-new-tokens", "64", "--no-progress", "--dtype", "bfloat16"]
    # -- sampling --------------------------------------------------------------------
    graded_from = None
    if dev == "cpu":
        report("sample-vllm", "SKIP", "vLLM needs a GPU")
    elif versions["vllm"].startswith("missing"):
        report("sample-vllm", "FAIL", f"vllm not importable ({versions['vllm']}); pip install -e '.[gpu]'")
    else:
        out = args.work / "samples_vllm.jsonl"
        with GpuMemoryPoller() as mem:
            ok, secs, tail = run([py, "-m", "obe.sampling", *common, "--backend", "vllm", "--max-model-len", "512",
                                  "--gpu-memory-utilization", "0.5", "--out", str(out)], args.work / "sample_vllm.log", 300)
        if ok:
            graded_from = out
            report("sample-vllm", "PASS", f"tokens/s {sample_tokens(out) / secs:.0f} (incl. engine start, {secs:.0f} s); "
                                          f"peak GPU MiB {mem.peak}")
        else:
            report("sample-vllm", "FAIL", tail)
    out = args.work / "samples_hf.jsonl"
    with GpuMemoryPoller() as mem:
        ok, secs, tail = run([py, "-m", "obe.sampling", *common, "--backend", "hf", "--device", dev,
                              "--batch-size", "256", "--out", str(out)], args.work / "sample_hf.log", 300)
    report("sample-hf", "PASS" if ok else "FAIL",
           f"tokens/s {sample_tokens(out) / secs:.0f} (incl. load, {secs:.0f} s); peak GPU MiB {mem.peak}" if ok else tail)
    graded_from = graded_from or (out if ok else None)

    # -- training (the obe backend on the GPU path) ------------------------------------
    train_common = ["--model", str(model), "--train-data", str(data / "train.jsonl"), "--steps", str(args.train_steps),
                    "--batch-questions", "16", "--n", "8", "--max-new-tokens", "64", "--lr", "1e-4",
                    "--device", dev, "--dtype", "bfloat16", "--master-weights", "float32", "--gradient-checkpointing",
                    "--micro-batch", "32", "--rollout-batch", "64", "--checkpoint-every", "2", "--threads", "4"]
    for method in METHODS:
        out = args.work / f"train_{method}"
        with GpuMemoryPoller() as mem:
            ok, secs, tail = run([py, "-m", "obe.train", *train_common, "--method", method, "--out", str(out)],
                                 args.work / f"train_{method}.log", 300)
        if ok:
            rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            tps = statistics.median(r["perf/tokens_per_sec"] for r in rows)
            report(f"train-{method}", "PASS", f"tokens/s {tps:.0f} (median step); reward {rows[-1]['reward']:.2f}, "
                                              f"bonus/mean {rows[-1]['bonus/mean']:.3f}; {secs:.0f} s; peak GPU MiB {mem.peak}")
        else:
            report(f"train-{method}", "FAIL", tail)
    import importlib.util

    if importlib.util.find_spec("obe.engines.trl_backend") is None:  # found, not imported: the CLI imports it
        report("train-trl", "SKIP", "obe.engines.trl_backend is not in this checkout")
    else:
        out = args.work / "train_trl"
        with GpuMemoryPoller() as mem:
            ok, secs, tail = run([py, "-m", "obe.engines.trl_backend", *train_common, "--method", "ucb_con", "--out", str(out)],
                                 args.work / "train_trl.log", 300)
        report("train-trl", "PASS" if ok else "FAIL", f"{secs:.0f} s; peak GPU MiB {mem.peak}" if ok else tail)

    # -- evaluation ------------------------------------------------------------------
    if graded_from is None:
        report("evaluate", "FAIL", "no samples to evaluate")
    else:
        graded, summary = args.work / "graded.jsonl", args.work / "summary.json"
        ok, secs, tail = run([py, "-m", "obe.grade", "--samples", str(graded_from), "--data", str(data / "test.jsonl"),
                              "--out", str(graded)], args.work / "grade.log", 300)
        if ok:
            ok, secs2, tail = run([py, "-m", "obe.evaluate", "--graded", str(graded), "--out-questions",
                                   str(args.work / "per_question.jsonl"), "--out-summary", str(summary)],
                                  args.work / "evaluate.log", 120)
        if ok:
            s = json.loads(summary.read_text())
            report("evaluate", "PASS", f"{graded_from.name}: pass@1 {s['pass_at_k']['1']:.3f}, "
                                       f"pass@16 {s['pass_at_k']['16']:.3f}, distinct {s['distinct_answers']:.2f}")
        else:
            report("evaluate", "FAIL", tail)
    failed = sum(status == "FAIL" for _, status, _ in results)
    print(f"gpu_check: {len(results) - failed} of {len(results)} parts did not fail; logs in {args.work}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
