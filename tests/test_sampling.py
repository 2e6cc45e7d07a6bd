"""obe.sampling and obe.engines.generation: hf backend, row schema, CLI resume/meta, vLLM mapping with a fake engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from obe import sampling
from obe.engines.models import ModelConfig, load
from obe.core.records import Record, write_jsonl
from obe.engines import generation
from obe.engines.generation import (
    Completion,
    HFBackend,
    SamplingConfig,
    VLLMBackend,
    generate_texts,
    vllm_sampling_kwargs,
)
from obe.sampling import ROW_FIELDS
from tiny_model import build_tiny_model

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def stopping_dir(tmp_path_factory):
    """A tiny model biased towards EOS, so most samples stop early."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_eos"), eos_bias=3.0)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return load(ModelConfig(tiny_dir))


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "q.jsonl"
    recs = [Record(id=f"q{i}", problem=f"What is {i}+{i}?", answer=str(2 * i), source="synthetic") for i in range(6)]
    write_jsonl(str(path), recs)
    return path


PROMPTS = ["1+1=", "What is 2*3?", "x"]


def texts(result):
    return [[c.text for c in comps] for comps in result]


@pytest.mark.parametrize("engine", ["lean", "hf"])
def test_hf_deterministic_per_seed(engine, tiny):
    model, tok = tiny
    cfg = SamplingConfig(max_new_tokens=12, seed=0, batch_size=4)
    a = generate_texts(model, tok, PROMPTS, 3, cfg, engine=engine)
    b = generate_texts(model, tok, PROMPTS, 3, cfg, engine=engine)
    c = generate_texts(model, tok, PROMPTS, 3, SamplingConfig(max_new_tokens=12, seed=1, batch_size=4), engine=engine)
    assert [len(x) for x in a] == [3, 3, 3]
    assert texts(a) == texts(b)
    assert texts(a) != texts(c)
    # samples of one prompt differ from each other
    assert len(set(texts(a)[0])) > 1


@pytest.mark.parametrize("engine", ["lean", "hf"])
def test_hf_leaves_global_rng_alone(engine, tiny):
    model, tok = tiny
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generate_texts(model, tok, PROMPTS[:1], 2, SamplingConfig(max_new_tokens=4), engine=engine)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("engine", ["lean", "hf"])
def test_hf_greedy_and_checkpoint_defaults_ignored(engine, tiny):
    model, tok = tiny
    greedy = generate_texts(model, tok, PROMPTS[:1], 3, SamplingConfig(temperature=0.0, max_new_tokens=8), engine=engine)
    assert len(set(texts(greedy)[0])) == 1
    # A checkpoint default such as top_k=1 would make sampling greedy; it must not leak in.
    saved = model.generation_config.top_k
    model.generation_config.top_k = 1
    try:
        sampled = generate_texts(model, tok, PROMPTS[:1], 4, SamplingConfig(max_new_tokens=8), engine=engine)
    finally:
        model.generation_config.top_k = saved
    assert len(set(texts(sampled)[0])) > 1
    assert model.generation_config.top_k == saved


@pytest.mark.parametrize("engine", ["lean", "hf"])
def test_hf_finish_reasons_and_token_counts(engine, tiny, stopping_dir):
    model, tok = tiny
    res = generate_texts(model, tok, PROMPTS, 2, SamplingConfig(max_new_tokens=5), engine=engine)
    # random weights over ~100 tokens: EOS within 5 steps is rare; at least one hits the limit
    lengths = [c for comps in res for c in comps if c.finish_reason == "length"]
    assert lengths and all(c.num_tokens == 5 == len(c.token_ids) for c in lengths)

    smodel, stok = load(ModelConfig(stopping_dir))
    eos = stok.eos_token_id
    res = generate_texts(smodel, stok, PROMPTS, 4, SamplingConfig(max_new_tokens=40, batch_size=5), engine=engine)
    flat = [c for comps in res for c in comps]
    stops = [c for c in flat if c.finish_reason == "stop"]
    assert stops, "the EOS-biased model should stop early"
    for c in flat:
        assert c.finish_reason in ("stop", "length")
        assert c.num_tokens == len(c.token_ids) <= 40
        if c.finish_reason == "stop":
            assert c.token_ids[-1] == eos and eos not in c.token_ids[:-1]
            assert c.text == stok.decode(list(c.token_ids[:-1]), skip_special_tokens=True)
        else:
            assert c.num_tokens == 40 and eos not in c.token_ids
    # finished rows were padded inside the batch; no padding may leak into counts
    assert len({c.num_tokens for c in stops}) > 1


def test_lean_and_hf_engines_agree_greedily(tiny, stopping_dir):
    """Greedy decoding is deterministic, so both engines must give the same completions."""
    for model, tok in (tiny, load(ModelConfig(stopping_dir))):
        cfg = SamplingConfig(temperature=0.0, max_new_tokens=12, batch_size=4)
        lean = generate_texts(model, tok, PROMPTS, 2, cfg, engine="lean")
        hf = generate_texts(model, tok, PROMPTS, 2, cfg, engine="hf")
        assert lean == hf


def run_cli(args, check=True):
    rc = sampling.main([str(a) for a in args] + ["--threads", "1", "--no-progress"])
    if check:
        assert rc == 0
    return rc


def cli_args(model_dir, data_file, out, **over):
    opts = {"--n": 3, "--seed": 0, "--max-new-tokens": 10, "--batch-size": 4, "--temperature": 1.0}
    opts.update(over)
    args = ["--model", model_dir, "--data", data_file, "--out", out]
    for k, v in opts.items():
        args += [k, v]
    return args


def read_rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_cli_rows_schema_and_meta(stopping_dir, data_file, tmp_path):
    out = tmp_path / "s.jsonl"
    run_cli(cli_args(stopping_dir, data_file, out, **{"--limit": 4}))
    rows = read_rows(out)
    assert len(rows) == 4 * 3
    for i, row in enumerate(rows):
        assert tuple(row) == ROW_FIELDS
        assert row["question_id"] == f"q{i // 3}" and row["sample_index"] == i % 3
        assert row["prompt"] == f"What is {i // 3}+{i // 3}?\n"
        assert isinstance(row["text"], str) and isinstance(row["num_tokens"], int)
        assert row["finish_reason"] in ("stop", "length")
        assert row["answer"] is None and row["outcome_key"] is None and row["correct"] is None
    meta = json.loads(sampling.meta_path(out).read_text())
    assert meta["model"]["name_or_path"] == stopping_dir
    assert meta["n"] == 3 and meta["backend"] == "hf" and meta["num_questions"] == 4
    assert meta["engine"] == "lean"  # auto: obe.engines.fastlm on CPU for this Llama
    assert meta["sampling"] == {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 10, "seed": 0, "batch_size": 4}
    # In-process API with question ids as keys gives exactly the CLI's samples.
    model, tok = load(ModelConfig(stopping_dir))
    prompts = [r["prompt"] for r in rows[::3]]
    res = generate_texts(model, tok, prompts, 3, SamplingConfig(max_new_tokens=10, batch_size=4),
                         keys=[f"q{i}" for i in range(4)])
    assert [c.text for comps in res for c in comps] == [r["text"] for r in rows]
    # Rerunning a finished file is a no-op.
    before = out.read_bytes()
    run_cli(cli_args(stopping_dir, data_file, out, **{"--limit": 4}))
    assert out.read_bytes() == before


def test_cli_help():
    proc = subprocess.run([sys.executable, "-m", "obe.sampling", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for flag in ("--model", "--data", "--n", "--seed", "--out", "--backend", "--temperature", "--top-p",
                 "--max-new-tokens", "--batch-size", "--threads", "--limit", "--prompt-template", "--dtype"):
        assert flag in proc.stdout
    assert "--sleep-after-batch" not in proc.stdout


def test_meta_mismatch_refused(tiny_dir, data_file, tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    run_cli(cli_args(tiny_dir, data_file, out, **{"--limit": 2}))
    before = out.read_bytes()
    assert run_cli(cli_args(tiny_dir, data_file, out, **{"--limit": 2, "--seed": 1}), check=False) == 2
    err = capsys.readouterr().err
    assert "refusing to resume" in err and "sampling" in err and "'seed': 0" in err
    assert run_cli(cli_args(tiny_dir, data_file, out, **{"--limit": 3}), check=False) == 2
    assert out.read_bytes() == before
    # An output without its sidecar meta is refused as well.
    sampling.meta_path(out).unlink()
    assert run_cli(cli_args(tiny_dir, data_file, out, **{"--limit": 2}), check=False) == 2
    assert "no sidecar" in capsys.readouterr().err


def test_resume_from_truncated_file_is_identical(tiny_dir, data_file, tmp_path):
    ref = tmp_path / "ref.jsonl"
    run_cli(cli_args(tiny_dir, data_file, ref))
    full = ref.read_bytes()
    line_ends = [i + 1 for i, b in enumerate(full) if b == ord("\n")]
    # cut: mid-line (partial trailing line), at a line end inside a batch, mid first line
    cuts = [line_ends[4] + 7, line_ends[5], 3]
    for cut in cuts:
        out = tmp_path / f"cut{cut}.jsonl"
        out.write_bytes(full[:cut])
        sampling.meta_path(out).write_bytes(sampling.meta_path(ref).read_bytes())
        run_cli(cli_args(tiny_dir, data_file, out))
        assert out.read_bytes() == full, f"cut at byte {cut}"


def test_resume_after_sigkill_is_identical(tiny_dir, data_file, tmp_path):
    ref = tmp_path / "ref.jsonl"
    run_cli(cli_args(tiny_dir, data_file, ref))
    full = ref.read_bytes()

    out = tmp_path / "killed.jsonl"
    cmd = [sys.executable, "-m", "obe.sampling", *map(str, cli_args(tiny_dir, data_file, out)),
           "--threads", "1", "--no-progress"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(cmd + ["--sleep-after-batch", "1.0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if out.exists() and out.read_bytes().count(b"\n") >= 4:  # first batch (4 rows) written
                break
            assert proc.poll() is None, "sampling finished/failed before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no batch written in time")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    partial = out.read_bytes()
    assert 0 < len(partial) < len(full) and full.startswith(partial)
    run_cli(cli_args(tiny_dir, data_file, out))  # the rerun (in-process: saves a slow interpreter start)
    assert out.read_bytes() == full


# --------------------------------------------------------------------------- vLLM (fake engine)


class FakeCompletionOutput:
    def __init__(self, index, text, token_ids, finish_reason):
        self.index, self.text, self.token_ids, self.finish_reason = index, text, token_ids, finish_reason


class FakeRequestOutput:
    def __init__(self, outputs):
        self.outputs = outputs


class FakeLLM:
    """Mimics vllm.LLM.generate: deterministic outputs from (prompt ids, seed)."""

    __module__ = "vllm.entrypoints.llm"

    def __init__(self, eos_id=2, reasons=None):
        self.calls = []
        self.eos_id = eos_id
        self.reasons = reasons

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append((prompts, sampling_params))
        outs = []
        for prompt, sp in zip(prompts, sampling_params):
            comps = []
            for i in range(sp["n"]):
                seed = sp["seed"] + i
                reason = self.reasons[i % len(self.reasons)] if self.reasons else ("stop" if seed % 2 else "length")
                body = [70 + (seed + k) % 20 for k in range(3)]
                ids = body + [self.eos_id] if reason == "stop" else body[: sp["max_tokens"]]
                text = "".join(chr(ord("a") + t - 70) for t in body)
                comps.append(FakeCompletionOutput(i, text, ids, reason))
            outs.append(FakeRequestOutput(list(reversed(comps))))  # order must not matter
        return outs


def test_vllm_sampling_kwargs():
    cfg = SamplingConfig(temperature=0.7, top_p=0.9, max_new_tokens=99, seed=5)
    assert vllm_sampling_kwargs(8, cfg, 1234) == dict(
        n=8, temperature=0.7, top_p=0.9, max_tokens=99, seed=1234, skip_special_tokens=True
    )


def test_vllm_backend_maps_outputs(tiny):
    _, tok = tiny
    llm = FakeLLM()
    backend = VLLMBackend(llm, tok, sampling_params_factory=dict)
    assert generation.make_backend(llm, tok).__class__ is VLLMBackend
    cfg = SamplingConfig(max_new_tokens=16, seed=3, batch_size=4)
    res = generate_texts(backend, tok, PROMPTS, 2, cfg, keys=["a", "b", "c"])
    # batch_size 4 // n 2 -> 2 questions per engine call
    assert [len(p) for p, _ in llm.calls] == [2, 1]
    prompts0, params0 = llm.calls[0]
    assert prompts0[0] == {"prompt_token_ids": tok("1+1=")["input_ids"]}
    seeds = [p["seed"] for _, ps in llm.calls for p in ps]
    assert seeds == [generation.derive_seed(3, k) for k in "abc"] and len(set(seeds)) == 3
    assert all(p["n"] == 2 and p["max_tokens"] == 16 for _, ps in llm.calls for p in ps)
    for comps, seed in zip(res, seeds):
        assert len(comps) == 2
        for i, c in enumerate(comps):
            reason = "stop" if (seed + i) % 2 else "length"
            assert c.finish_reason == reason
            assert c.num_tokens == (4 if reason == "stop" else 3) == len(c.token_ids)
            assert c.text == "".join(chr(ord("a") + (seed + i + k) % 20) for k in range(3))
    # same seed -> same calls
    llm2 = FakeLLM()
    generate_texts(VLLMBackend(llm2, tok, sampling_params_factory=dict), tok, PROMPTS, 2, cfg, keys=["a", "b", "c"])
    assert llm2.calls == llm.calls


def test_vllm_other_finish_reasons_are_recorded_and_counted(tiny, data_file, tmp_path):
    # abort / error / repetition on some sequences must not kill the job: rows keep the reason
    from obe.core.records import read_jsonl

    _, tok = tiny
    recs = read_jsonl(str(data_file))
    reasons_cycle = ["stop", "abort", "error", "repetition", "length"]
    backend = VLLMBackend(FakeLLM(reasons=reasons_cycle), tok, sampling_params_factory=dict)
    out, counts = tmp_path / "v.jsonl", {}
    n = len(reasons_cycle)
    written = sampling.run_sampling(backend, recs, [r.problem for r in recs], True, n, SamplingConfig(batch_size=10),
                                    out, {"backend": "vllm"}, progress=False, reasons=counts)
    rows = read_rows(out)
    assert written == len(rows) == n * len(recs)
    assert [r["finish_reason"] for r in rows[:n]] == reasons_cycle
    assert counts == {r: len(recs) for r in reasons_cycle}
    # a resume counts the kept rows too: the summary covers the whole file
    again: dict[str, int] = {}
    assert sampling.run_sampling(backend, recs, [r.problem for r in recs], True, n, SamplingConfig(batch_size=10),
                                 out, {"backend": "vllm"}, progress=False, reasons=again) == 0
    assert again == counts


class DriftingLLM(FakeLLM):
    """Like vLLM without batch-invariant mode: the same request gives other samples on each call."""

    def __init__(self, drift=0):
        super().__init__()
        self.drift = drift

    def generate(self, prompts, sampling_params, use_tqdm=True):
        shifted = [dict(sp, seed=sp["seed"] + 7 * len(self.calls) + self.drift) for sp in sampling_params]
        return super().generate(prompts, shifted, use_tqdm)


def test_vllm_resume_is_correct_by_row_identity(tiny, data_file, tmp_path):
    from obe.core.records import read_jsonl

    _, tok = tiny
    recs = read_jsonl(str(data_file))
    prompts = [r.problem for r in recs]
    cfg = SamplingConfig(max_new_tokens=8, batch_size=6)
    out = tmp_path / "v.jsonl"
    meta = {"backend": "vllm", "vllm": {"max_model_len": 512},
            "vllm_engine": {"tensor_parallel_size": 1, "gpu_memory_utilization": 0.9}}
    sampling.run_sampling(VLLMBackend(DriftingLLM(), tok, sampling_params_factory=dict), recs, prompts, True, 3,
                          cfg, out, meta, progress=False)
    full = out.read_bytes()
    lines = full.split(b"\n")
    out.write_bytes(b"\n".join(lines[:8]) + b"\n" + lines[8][:5])  # killed inside the second batch
    # engine settings that do not change the distribution may change on resume
    moved = dict(meta, vllm_engine={"tensor_parallel_size": 2, "gpu_memory_utilization": 0.95})
    llm = DriftingLLM(drift=3)  # the engine's state differs: resampled rows differ
    assert sampling.run_sampling(VLLMBackend(llm, tok, sampling_params_factory=dict), recs, prompts, True, 3, cfg,
                                 out, moved, progress=False) == 12
    rows = read_rows(out)
    assert [(r["question_id"], r["sample_index"]) for r in rows] == [(f"q{i}", s) for i in range(6) for s in range(3)]
    assert out.read_bytes().startswith(b"\n".join(lines[:6]) + b"\n")  # the finished batch is kept as it was
    assert out.read_bytes() != full  # the rest are new draws
    with pytest.raises(sampling.ResumeError, match="max_model_len"):
        sampling.run_sampling(VLLMBackend(DriftingLLM(), tok, sampling_params_factory=dict), recs, prompts, True, 3,
                              cfg, out, dict(meta, vllm={"max_model_len": 1024}), progress=False)


def test_vllm_run_sampling_rows_and_resume(tiny, data_file, tmp_path):
    from obe.core.records import read_jsonl

    _, tok = tiny
    recs = read_jsonl(str(data_file))
    prompts = [r.problem + "\n" for r in recs]
    cfg = SamplingConfig(max_new_tokens=8, batch_size=6)
    meta = {"backend": "vllm", "n": 3}
    out = tmp_path / "v.jsonl"
    backend = VLLMBackend(FakeLLM(), tok, sampling_params_factory=dict)
    assert sampling.run_sampling(backend, recs, prompts, True, 3, cfg, out, meta, progress=False) == 18
    full = out.read_bytes()
    rows = read_rows(out)
    assert [(r["question_id"], r["sample_index"]) for r in rows] == [(f"q{i}", s) for i in range(6) for s in range(3)]
    assert all(tuple(r) == ROW_FIELDS and r["answer"] is None for r in rows)
    # kill simulation: keep 7 rows + a partial line -> the unfinished 2-question batch reruns
    lines = full.split(b"\n")
    out.write_bytes(b"\n".join(lines[:7]) + b"\n" + lines[7][:5])
    backend2 = VLLMBackend(FakeLLM(), tok, sampling_params_factory=dict)
    assert sampling.run_sampling(backend2, recs, prompts, True, 3, cfg, out, meta, progress=False) == 12
    assert out.read_bytes() == full
    with pytest.raises(sampling.ResumeError):
        sampling.run_sampling(backend2, recs, prompts, True, 3, cfg, out, {"backend": "vllm", "n": 4}, progress=False)


def test_vllm_from_config_builds_engine(tiny_dir, monkeypatch):
    created = {}

    class LLM:
        def __init__(self, **kwargs):
            created.update(kwargs)

    fake = types.ModuleType("vllm")
    fake.LLM = LLM
    fake.SamplingParams = dict
    monkeypatch.setitem(sys.modules, "vllm", fake)
    backend = VLLMBackend.from_config(ModelConfig(tiny_dir, dtype="bfloat16"), seed=7, max_model_len=2048)
    assert created["model"] == tiny_dir and created["tokenizer"] == tiny_dir
    assert created["dtype"] == "bfloat16" and created["seed"] == 7 and created["max_model_len"] == 2048
    assert created["trust_remote_code"] is False and created["generation_config"] == "vllm"
    assert backend.tokenizer.padding_side == "left"
    assert backend._sampling_params(n=1) == {"n": 1}  # lazily imported vllm.SamplingParams


def test_completion_is_frozen():
    c = Completion("x", 1, "stop", (2,))
    with pytest.raises(Exception):
        c.text = "y"
    assert isinstance(HFBackend, type)


def test_eos_ids_union_of_model_and_tokenizer():
    # e.g. Llama-3.1-Instruct lists several EOS ids in generation_config.json
    model = types.SimpleNamespace(generation_config=types.SimpleNamespace(eos_token_id=[5, 2]))
    assert generation.eos_token_ids(model, types.SimpleNamespace(eos_token_id=2)) == [5, 2]
    assert generation.eos_token_ids(types.SimpleNamespace(), types.SimpleNamespace(eos_token_id=7)) == [7]


def test_derive_seed_stable():
    assert generation.derive_seed(0, "q1", 0) == generation.derive_seed(0, "q1", 0)
    assert generation.derive_seed(0, "q1", 0) != generation.derive_seed(1, "q1", 0)
    assert 0 <= generation.derive_seed("x") < 2**31
