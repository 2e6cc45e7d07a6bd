"""GPU acceptance check (run by bench/gpu_check.sh): the paper-scale code paths on a tiny model.

No network: a tiny Qwen2-architecture model (head dim 64, so vLLM's attention kernels take it)
is built here with the embedded task's tokenizer and pre-trained for a few hundred steps on the
synthetic task on the GPU, so that rewards are not all zero; a copy of it gets a chat template.
Then, each as its own part, through the same CLIs the Snakemake rules call:

  sample-vllm     python -m obe.sampling --backend vllm (bf16, max_model_len, gpu_memory_utilization)
  sample-hf       python -m obe.sampling --backend hf --device cuda
  sample-chat     the same on the chat copy with --use-chat-template always
  train-METHOD    python -m obe.train on cuda for grpo, ucb_con and batch: bf16 compute with fp32
                  master weights, gradient checkpointing, rollout and update micro-batches
  train-trl       the trl backend (python -m obe.engines.trl_backend), one process
  train-trl-chat  the same on the chat copy (TRL renders the chat messages)
  fsdp2           FSDP2 (fully_shard per decoder layer and at the root, world size 1, bf16 compute
                  on fp32 shards as accelerate builds it): obe.engines.fsdp.full_state_dict saved
                  with save_pretrained and reloaded; micro-batches accumulated with
                  sharded_accumulation inside no_sync against one large batch
  trl-fsdp        the trl backend under accelerate launch --config_file configs/accelerate/fsdp.yaml
                  --num_processes 1: snapshots/ and final/ must hold loadable weights
  evaluate        python -m obe.grade and python -m obe.evaluate on the vLLM (else hf) samples

and prints one line per part: PASS/FAIL/SKIP, tokens/s and the peak GPU memory (nvidia-smi's
memory.used polled every 0.2 s while the part runs: the whole GPU, vLLM's reservation included;
the fsdp2 part, which runs in one process, reports torch's own peak).
Exit status: the number of failed parts. ``--device cpu`` runs the parts that can run without a
GPU (a dry run of this script; vLLM and FSDP through accelerate are skipped there, with why).

``--requirements 3.11`` prints the pinned packages bench/wheelhouse.sh downloads for that
Python (the exact versions of this interpreter's environment; see that script).
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
# The check installs these (and what they require) from the wheelhouse.
WHEELHOUSE_TOP = ("transformers", "tokenizers", "safetensors", "huggingface-hub", "accelerate", "trl", "peft",
                  "datasets", "math-verify", "pyyaml", "jsonschema")
# ... and expects these from the GPU machine's image: torch and what torch requires, vLLM (no wheel
# without its own CUDA torch), numpy, pandas and pyarrow (too large for the 64 MiB that travel).
FROM_IMAGE = frozenset({"torch", "triton", "filelock", "typing-extensions", "sympy", "mpmath", "networkx", "jinja2",
                        "markupsafe", "fsspec", "setuptools", "numpy", "pandas", "pyarrow", "vllm"})
# Renders the plain prompt unchanged, so the pre-trained model still answers; the chat path
# (messages -> template -> ids) is what the chat parts exercise.
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
                 "{% if add_generation_prompt %}{% endif %}")


def requirements(python_version: str) -> list[str]:
    """``name==version`` of WHEELHOUSE_TOP and everything they require on CPython
    ``python_version`` (markers evaluated for it), at this environment's versions, less
    FROM_IMAGE; a requirement not installed here (another Python's only) is left unpinned."""
    import importlib.metadata as md
    import re

    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    env = dict(default_environment(), python_version=python_version, python_full_version=f"{python_version}.0",
               extra="")
    pins: dict[str, str] = {}
    todo = list(WHEELHOUSE_TOP)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in pins or name in FROM_IMAGE or name.startswith("nvidia-"):
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            pins[name] = name
            continue
        pins[name] = f"{name}=={dist.version}"
        todo += [r.name for r in map(Requirement, dist.requires or []) if r.marker is None or r.marker.evaluate(env)]
    return sorted(pins.values())


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


def run(cmd: list[str], log: Path, timeout: float, env: dict | None = None) -> tuple[bool, float, str]:
    """Run one CLI; (ok, seconds, last lines of its output)."""
    env = dict(os.environ, **(env or {}), PYTHONPATH=f"{REPO / 'workflow'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
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


def add_chat_template(model: Path, out: Path) -> None:
    """A copy of ``model`` whose tokenizer has :data:`CHAT_TEMPLATE`."""
    from transformers import AutoTokenizer

    from obe import base_model as bm

    shutil.copytree(model, out)
    tok = AutoTokenizer.from_pretrained(str(out))
    tok.chat_template = CHAT_TEMPLATE
    bm.save_tokenizer(tok, out)


def sample_tokens(path: Path) -> int:
    return sum(json.loads(line)["num_tokens"] for line in path.read_text().splitlines())


def has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors"))


# --------------------------------------------------------------------------- the fsdp2 part


def fsdp2_worker(model_dir: Path, out: Path, device: str) -> None:
    """The fsdp2 part, in its own process (a process group of one): writes ``out``/fsdp2.json."""
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.tensor import DTensor
    from transformers import AutoModelForCausalLM

    from obe.engines import fsdp

    cuda = device.startswith("cuda")
    torch.set_num_threads(2)
    dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(0)
    res: dict = {}

    def load():
        return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).to(device)

    def shard(model, policy=None):  # default: accelerate's for TrainingArguments(bf16=True), bf16 gather/compute/reduce
        policy = policy or MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16,
                                                output_dtype=torch.bfloat16)
        for layer in model.model.layers:
            fully_shard(layer, mp_policy=policy)
        return fully_shard(model, mp_policy=policy)

    vocab = load().config.vocab_size
    g = torch.Generator().manual_seed(0)
    k, b, T = 4, 8, 96
    micro = [torch.randint(4, vocab, (b, T), generator=g).to(device) for _ in range(k)]
    # the reference: the unsharded fp32 model on the whole batch
    ref = load()
    ref.train()
    ids = torch.cat(micro)
    ref(input_ids=ids, labels=ids).loss.backward()
    ref_grads = {n: p.grad.float() for n, p in ref.named_parameters()}
    with torch.no_grad():
        ref_logits = ref(input_ids=micro[0]).logits.float()
    ref_state = {n: v.detach().cpu().clone() for n, v in ref.state_dict().items()}
    del ref
    # sharded save: the gathered state dict as an HF folder, reloaded
    model = shard(load())
    state = fsdp.full_state_dict(model)
    saved = out / "fsdp2_saved"
    model.save_pretrained(str(saved), state_dict=state, safe_serialization=True)
    reloaded = AutoModelForCausalLM.from_pretrained(str(saved), dtype=torch.float32).to(device)
    # a tied lm_head is saved once (the embedding); the reload ties it again
    res["saved_equals_unsharded"] = all(torch.equal(v.cpu(), ref_state[n]) for n, v in reloaded.state_dict().items())
    with torch.no_grad():
        res["reload_logits_max_diff"] = float((reloaded(input_ids=micro[0]).logits.float() - ref_logits).abs().max())
        sharded_logits = model(input_ids=micro[0]).logits.float()
    res["bf16_logits_rel_diff"] = float((sharded_logits - ref_logits).norm() / ref_logits.norm())
    del reloaded
    # sharded accumulation, as the HF loop calls training_step: micro-batches 1..k-1 inside no_sync.
    # fp32 compute against the fp32 reference; bf16 (the presets', timed) against one large batch
    # through the same bf16 FSDP model, so that only the accumulation differs.
    del model
    bf16 = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16, output_dtype=torch.bfloat16)
    grads = {}
    for name, policy, batches in (("fp32", MixedPrecisionPolicy(), micro), ("bf16", bf16, micro), ("bf16_one", bf16, [ids])):
        model = shard(load(), policy)
        model.train()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for i, x in enumerate(batches):
            if i < len(batches) - 1:
                model.set_requires_gradient_sync(False)  # accelerate's no_sync
            fsdp.sharded_accumulation(model)
            (model(input_ids=x, labels=x).loss / len(batches)).backward()
            model.set_requires_gradient_sync(True)
        if cuda:
            torch.cuda.synchronize()
        res[f"{name}_tokens_per_s"] = k * b * T / (time.perf_counter() - t0)
        res[f"{name}_peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None
        res[f"{name}_grads_sharded_fp32"] = all(isinstance(p.grad, DTensor) and p.grad.dtype == torch.float32
                                                for p in model.parameters())
        grads[name] = {n: p.grad.full_tensor() for n, p in model.named_parameters()}
        del model

    def rel(a, b):  # ||a - b|| / ||b|| over all parameters
        return (sum(float((a[n] - b[n]).norm()) ** 2 for n in b) / sum(float(b[n].norm()) ** 2 for n in b)) ** 0.5
    res["fp32_grad_rel_error"] = rel(grads["fp32"], ref_grads)
    res["bf16_grad_rel_error"] = rel(grads["bf16"], grads["bf16_one"])
    res["bf16_vs_fp32_rel"] = rel(grads["bf16_one"], ref_grads)
    (out / "fsdp2.json").write_text(json.dumps(res))
    dist.destroy_process_group()


def fsdp2_verdict(res: dict) -> tuple[bool, str]:
    """fp32: the same sums as one large batch in another order (1e-4); bf16: micro-batches summed in
    fp32 against one large bf16 batch (2%: each micro-batch's gradient rounded to bf16 once);
    bf16 against fp32 is reported, not bounded (bf16 numerics, not FSDP's)."""
    ok = (res["saved_equals_unsharded"] and res["reload_logits_max_diff"] < 1e-4 and res["bf16_logits_rel_diff"] < 0.05
          and res["fp32_grads_sharded_fp32"] and res["bf16_grads_sharded_fp32"] and res["fp32_grad_rel_error"] < 1e-4
          and res["bf16_grad_rel_error"] < 0.02)
    peak = f"{res['bf16_peak_gpu_mib']:.0f}" if res["bf16_peak_gpu_mib"] is not None else "n/a"
    return ok, (f"tokens/s {res['bf16_tokens_per_s']:.0f} (bf16, 4 micro-batches, sharded accumulation); saved = "
                f"unsharded: {res['saved_equals_unsharded']}, reload logits max diff {res['reload_logits_max_diff']:.1e}, "
                f"bf16 vs fp32 logits {res['bf16_logits_rel_diff']:.1e}; sharded fp32 grads vs one batch: fp32 "
                f"{res['fp32_grad_rel_error']:.1e}, bf16 {res['bf16_grad_rel_error']:.1e} (bf16 vs fp32 "
                f"{res['bf16_vs_fp32_rel']:.1e}); peak GPU MiB (torch) {peak}")


# --------------------------------------------------------------------------- the check


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/obe_gpu_check"), help="scratch folder (wiped)")
    ap.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a dry run of this script)")
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--train-steps", type=int, default=4)
    ap.add_argument("--questions", type=int, default=64, help="test questions sampled (x 16 samples)")
    ap.add_argument("--methods", default=",".join(METHODS), help="obe.train methods to train (comma-separated)")
    ap.add_argument("--requirements", metavar="PYTHON_VERSION", help="print the wheelhouse's pins for that Python and exit")
    ap.add_argument("--fsdp2-worker", type=Path, nargs=2, metavar=("MODEL", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.requirements:
        print("\n".join(requirements(args.requirements)))
        return 0
    if args.fsdp2_worker:
        fsdp2_worker(*args.fsdp2_worker, args.device)
        return 0
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    py, dev = sys.executable, args.device
    results: list[tuple[str, str, str]] = []

    def report(part: str, status: str, detail: str) -> None:
        results.append((part, status, detail))
        print(f"{status:4s}  {part:14s}  {detail}", flush=True)

    # -- environment ---------------------------------------------------------------
    import torch

    versions = {"torch": torch.__version__}
    for mod in ("transformers", "trl", "accelerate", "datasets", "numpy", "pandas", "pyarrow", "vllm"):
        try:
            m = __import__(mod)
            versions[mod] = m.__version__
        except Exception as exc:  # noqa: BLE001 -- any import failure is reported, not raised
            versions[mod] = f"missing ({type(exc).__name__}: {str(exc)[:80]})"
    missing = lambda *mods: [m for m in mods if versions[m].startswith("missing")]  # noqa: E731
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    ok = (dev == "cpu" or torch.cuda.is_available()) and not missing("transformers", "numpy")
    where = Path(__import__("transformers").__file__).parents[1] if not missing("transformers") else "-"
    report("environment", "PASS" if ok else "FAIL",
           f"gpu {gpu}; python {sys.version.split()[0]}; " + ", ".join(f"{k} {v}" for k, v in versions.items())
           + f"; transformers from {where}")
    if not ok:
        return 1
    no_trl = missing("trl", "accelerate", "datasets", "pandas", "pyarrow")
    why_no_trl = (f"{', '.join(no_trl)} not importable: TRL imports datasets, which needs pyarrow and pandas; the image "
                  "lacks them and they are too large for the wheelhouse (see bench/wheelhouse.sh)")

    # -- model and data --------------------------------------------------------------
    model, chat, data = args.work / "qwen2", args.work / "qwen2_chat", args.work / "data"
    data.mkdir()
    with GpuMemoryPoller() as mem:
        try:
            built = build_tiny_qwen2(model, dev, args.pretrain_steps)
            add_chat_template(model, chat)
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

    common = ["--data", str(data / "test.jsonl"), "--n", "16", "--seed", "1234", "--max-new-tokens", "64",
              "--no-progress", "--dtype", "bfloat16"]
    # -- sampling --------------------------------------------------------------------
    graded_from = None
    if dev == "cpu":
        report("sample-vllm", "SKIP", "vLLM needs a GPU")
    elif missing("vllm"):
        report("sample-vllm", "SKIP", "vllm is not in the image, and no vLLM wheel travels in the wheelhouse "
                                      "(it needs its own CUDA torch build)")
    else:
        out = args.work / "samples_vllm.jsonl"
        with GpuMemoryPoller() as mem:
            ok, secs, tail = run([py, "-m", "obe.sampling", "--model", str(model), *common, "--backend", "vllm",
                                  "--max-model-len", "512", "--gpu-memory-utilization", "0.5", "--out", str(out)],
                                 args.work / "sample_vllm.log", 300)
        if ok:
            graded_from = out
            report("sample-vllm", "PASS", f"tokens/s {sample_tokens(out) / secs:.0f} (incl. engine start, {secs:.0f} s); "
                                          f"peak GPU MiB {mem.peak}")
        else:
            report("sample-vllm", "FAIL", tail)
    for part, folder, extra in (("sample-hf", model, []), ("sample-chat", chat, ["--use-chat-template", "always"])):
        out = args.work / f"{part}.jsonl"
        with GpuMemoryPoller() as mem:
            ok, secs, tail = run([py, "-m", "obe.sampling", "--model", str(folder), *common, *extra, "--backend", "hf",
                                  "--device", dev, "--batch-size", "256", "--out", str(out)], args.work / f"{part}.log", 300)
        report(part, "PASS" if ok else "FAIL",
               f"tokens/s {sample_tokens(out) / secs:.0f} (incl. load, {secs:.0f} s); peak GPU MiB {mem.peak}" if ok else tail)
        if part == "sample-hf":
            graded_from = graded_from or (out if ok else None)

    # -- training: obe.train on the GPU path, then the trl backend ------------------------
    train_common = ["--train-data", str(data / "train.jsonl"), "--steps", str(args.train_steps),
                    "--batch-questions", "16", "--n", "8", "--max-new-tokens", "64", "--lr", "1e-4",
                    "--device", dev, "--dtype", "bfloat16", "--master-weights", "float32", "--gradient-checkpointing",
                    "--micro-batch", "32", "--rollout-batch", "64", "--checkpoint-every", "2", "--save-steps", "2",
                    "--threads", "4"]
    for method in args.methods.split(","):
        out = args.work / f"train_{method}"
        with GpuMemoryPoller() as mem:
            ok, secs, tail = run([py, "-m", "obe.train", "--model", str(model), *train_common, "--method", method,
                                  "--out", str(out)], args.work / f"train_{method}.log", 300)
        if ok:
            rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            tps = statistics.median(r["perf/tokens_per_sec"] for r in rows)
            report(f"train-{method}", "PASS", f"tokens/s {tps:.0f} (median step); reward {rows[-1]['reward']:.2f}, "
                                              f"bonus/mean {rows[-1]['bonus/mean']:.3f}; {secs:.0f} s; peak GPU MiB {mem.peak}")
        else:
            report(f"train-{method}", "FAIL", tail)

    def trl_part(part: str, launch: list[str], folder: Path, extra: list[str]) -> None:
        out = args.work / part
        with GpuMemoryPoller() as mem:
            ok, secs, tail = run([*launch, "-m", "obe.engines.trl_backend", "--model", str(folder), *train_common, *extra,
                                  "--method", "ucb_con", "--out", str(out)], args.work / f"{part}.log", 300)
        if not ok:
            return report(part, "FAIL", tail)
        empty = [str(f.relative_to(out)) for f in (out / "snapshots" / "step_2", out / "final") if not has_weights(f)]
        if empty:  # e.g. Trainer.save_model under SHARDED_STATE_DICT writes no weights
            return report(part, "FAIL", f"no weights in {', '.join(empty)}: {sorted(p.name for p in (out / 'final').iterdir())}")
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        tps = statistics.median(r["perf/tokens_per_sec"] for r in rows)
        report(part, "PASS", f"tokens/s {tps:.0f} (median step); reward {rows[-1]['reward']:.2f}; snapshots/step_2 "
                             f"and final/ hold weights; {secs:.0f} s; peak GPU MiB {mem.peak}")

    for part, folder, extra in (("train-trl", model, []), ("train-trl-chat", chat, ["--use-chat-template", "always"])):
        if no_trl:
            report(part, "SKIP", why_no_trl)
        else:
            trl_part(part, [py], folder, extra)

    # -- FSDP2 -------------------------------------------------------------------------
    with GpuMemoryPoller() as mem:
        ok, secs, tail = run([py, str(Path(__file__).resolve()), "--device", dev, "--fsdp2-worker", str(model), str(args.work)],
                             args.work / "fsdp2.log", 300, env={"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29531",
                                                                "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    if ok:
        good, detail = fsdp2_verdict(json.loads((args.work / "fsdp2.json").read_text()))
        report("fsdp2", "PASS" if good else "FAIL", f"{detail}; {secs:.0f} s")
    else:
        report("fsdp2", "FAIL", tail)
    if dev == "cpu":
        report("trl-fsdp", "SKIP", "accelerate 1.15 runs FSDP only on GPUs (distributed_type FSDP with use_cpu "
                                   "becomes MULTI_CPU and would save full weights, hiding the sharded save)")
    elif no_trl:
        report("trl-fsdp", "SKIP", why_no_trl)
    else:
        trl_part("trl-fsdp", [py, "-m", "accelerate.commands.launch", "--config_file",
                              str(REPO / "configs" / "accelerate" / "fsdp.yaml"), "--num_processes", "1"], model, [])

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
