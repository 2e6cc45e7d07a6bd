"""Checkpoint I/O (obe.core.checkpoint) and the final-answer token mask (obe.engines.rollout)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from obe.core import checkpoint as ckpt
from obe.rl.counts import OutcomeCounts
from obe.grading.latex import last_boxed
from obe.engines.rollout import answer_token_mask, completion_mask, last_boxed_span


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tiny_model import build_tiny_model

    torch.set_num_threads(1)
    d = build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", seed=0)
    return AutoModelForCausalLM.from_pretrained(d), AutoTokenizer.from_pretrained(d)


def _trained_optimizer(model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 ** i)
    ids = torch.tensor([[1, 5, 6, 7, 8]])
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    sched.step()
    return opt, sched


def test_round_trip_counts_rng_optimizer(tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok = tiny
    opt, sched = _trained_optimizer(model)
    counts = OutcomeCounts()
    counts.update("q1", ["3", "3", "<no_answer>"])
    counts.update(7, ["x"])
    torch.manual_seed(123), random.seed(5), np.random.seed(9)
    path = ckpt.save_checkpoint(tmp_path, 4, model=model, tokenizer=tok, optimizer=opt, scheduler=sched,
                                state={"counts": counts.to_dict(), "data_pos": 16})
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(0), random.seed(0), np.random.seed(0)  # scramble

    model2 = AutoModelForCausalLM.from_pretrained(path / "model")
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda i: 0.5 ** i)
    state = ckpt.load_checkpoint(path, optimizer=opt2, scheduler=sched2)
    assert (torch.rand(3), random.random(), np.random.rand())[1:] == expected[1:]
    ckpt.set_rng_state(torch.load(path / "rng.pt", weights_only=True))
    assert torch.equal(torch.rand(3), expected[0])
    assert state["step"] == 4 and state["data_pos"] == 16
    assert OutcomeCounts.from_dict(state["counts"]) == counts
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for i in s1["state"]:
        for k in s1["state"][i]:
            assert torch.equal(torch.as_tensor(s1["state"][i][k]), torch.as_tensor(s2["state"][i][k]))
    assert sched2.state_dict()["last_epoch"] == 1 and opt2.param_groups[0]["lr"] == pytest.approx(5e-4)


def test_partial_saves_are_ignored_and_cleaned_and_keep_prunes(tiny, tmp_path):
    model, tok = tiny
    opt, sched = _trained_optimizer(model)
    for step in (2, 4, 6):
        ckpt.save_checkpoint(tmp_path, step, model=model, tokenizer=None, optimizer=opt, scheduler=sched,
                             state={}, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_4", "step_6"]
    (tmp_path / "step_8.tmp-999").mkdir()  # a save killed half-way
    (tmp_path / "step_8.tmp-999" / "optimizer.pt").write_bytes(b"partial")
    assert ckpt.latest(tmp_path).name == "step_6"
    # killed between the two renames of a replacement: the old copy is put back
    (tmp_path / "step_6").rename(tmp_path / "step_6.old-999")
    ckpt.clean_partial(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_4", "step_6"]
    # re-saving an existing step replaces it atomically
    ckpt.save_checkpoint(tmp_path, 6, model=model, tokenizer=None, optimizer=opt, scheduler=sched, state={"x": 1})
    assert ckpt.read_state(tmp_path / "step_6")["x"] == 1


def test_truncate_file(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text("a\nb\nc\n")
    ckpt.truncate_file(p, 4)
    assert p.read_text() == "a\nb\n"
    with pytest.raises(RuntimeError, match="shorter"):
        ckpt.truncate_file(p, 10)


@pytest.mark.parametrize("text", ["x \\boxed{3} y \\boxed{1+\\frac{2}{3}}.", "\\boxed{a\\{b\\}}", "\\boxed{4", "none", "\\fbox{7}"])
def test_last_boxed_span_agrees_with_last_boxed(text):
    span = last_boxed_span(text)
    inner = last_boxed(text)
    if inner is None:
        assert span is None
    else:
        box = text[span[0]:span[1]]
        assert box.endswith("}") and box[box.index("{") + 1:-1] == inner


def test_answer_mask_finds_boxed_tokens_char_tokenizer(tiny):
    _, tok = tiny
    texts = ["12+3=15 so \\boxed{15}.", "no box here", "\\boxed{7}"]
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    T = max(map(len, ids))
    comp = torch.full((3, T), tok.pad_token_id)
    for i, row in enumerate(ids):
        comp[i, : len(row)] = torch.tensor(row)
    cmask = completion_mask(comp, [tok.eos_token_id])
    assert cmask.sum(1).tolist() == [len(r) for r in ids]
    m = answer_token_mask(tok, comp, cmask, texts)
    start = texts[0].index("\\boxed")
    assert m[0].nonzero().squeeze(1).tolist() == list(range(start, start + len("\\boxed{15}")))
    assert m[1].sum() == 0
    assert m[2].nonzero().squeeze(1).tolist() == list(range(len("\\boxed{7}")))


def test_answer_mask_multichar_box_token():
    from obe.base_model import build_tokenizer

    tok = build_tokenizer()  # "\boxed{" is one token
    text = "2*3=6\n6+1=7\n\\boxed{7}"
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    comp = torch.tensor([ids])
    m = answer_token_mask(tok, comp, completion_mask(comp, [tok.eos_token_id]), [text])
    marked = [tok.decode([i]) for i, f in zip(ids, m[0].tolist()) if f]
    assert marked == ["\\boxed{", "7", "}"]


# -- integrity: manifest, verification, moving bad checkpoints aside -----------------------


def _save(tiny, root, step, **kw):
    model, tok = tiny
    opt, sched = _trained_optimizer(model)
    return ckpt.save_checkpoint(root, step, model=model, tokenizer=tok, optimizer=opt, scheduler=sched,
                                state={"data_pos": step}, **kw)


def test_manifest_lists_every_file_and_is_written_last(tiny, tmp_path):
    import json

    path = _save(tiny, tmp_path, 2)
    files = json.loads((path / ckpt.MANIFEST_FILE).read_text())["files"]
    on_disk = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert sorted(files) == [f for f in on_disk if f != ckpt.MANIFEST_FILE]
    assert {"optimizer.pt", "state.json", "model/model.safetensors"} <= set(files)
    for rel, entry in files.items():
        assert entry["bytes"] == (path / rel).stat().st_size and entry["sha256"] == ckpt.file_sha256(path / rel)
    assert ckpt.verify(path) is None


@pytest.mark.parametrize("victim", ["optimizer.pt", "model/model.safetensors", "state.json"])
def test_truncated_file_is_named(tiny, tmp_path, victim):
    path = _save(tiny, tmp_path, 2)
    f = path / victim
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    why = ckpt.verify(path)
    assert why is not None and str(f) in why and "truncated" in why


def test_flipped_byte_is_found_only_by_the_deep_check(tiny, tmp_path):
    path = _save(tiny, tmp_path, 2)
    f = path / "optimizer.pt"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    assert ckpt.verify(path, deep=False) is None  # sizes agree
    assert "optimizer.pt: sha256 differs" in ckpt.verify(path)


def test_checkpoint_without_manifest_is_checked_by_loading(tiny, tmp_path):
    path = _save(tiny, tmp_path, 2)
    (path / ckpt.MANIFEST_FILE).unlink()  # as written before manifests existed
    assert ckpt.verify(path) is None
    f = path / "rng.pt"
    f.write_bytes(f.read_bytes()[:100])
    why = ckpt.verify(path)
    assert why.startswith(f"{f}: cannot be loaded")


def test_newest_verified_moves_bad_checkpoints_aside_and_never_deletes(tiny, tmp_path):
    root = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        _save(tiny, root, step)
    (root / "step_6" / "state.json").write_text("{")
    (root / "step_4" / "optimizer.pt").write_bytes(b"")
    skipped = []
    found = ckpt.newest_verified(root, on_skip=skipped.append)
    assert found == root / "step_2"
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step_2"]
    assert len(skipped) == 2 and "step_6" in skipped[0] and "state.json" in skipped[0]
    assert "step_4" in skipped[1] and "optimizer.pt" in skipped[1] and "corrupt" in skipped[1]
    aside = sorted(p.name for p in (root / ckpt.CORRUPT_DIR).iterdir())
    assert [n.split(".")[0] for n in aside if not n.endswith(".why.txt")] == ["step_4", "step_6"]
    why_files = sorted((root / ckpt.CORRUPT_DIR).glob("*.why.txt"))
    assert len(why_files) == 2 and "optimizer.pt" in why_files[0].read_text()
    # the moved copies keep their files, and the next clean-up or save leaves them alone
    moved = next(p for p in (root / ckpt.CORRUPT_DIR).iterdir() if p.name.startswith("step_6") and p.is_dir())
    assert (moved / "optimizer.pt").is_file()
    ckpt.clean_partial(root)
    _save(tiny, root, 8, keep=1)
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step_8"]
    assert moved.is_dir()
    # nothing verifies: None, and everything is still on disk
    (root / "step_8" / "rng.pt").write_bytes(b"x")
    assert ckpt.newest_verified(root) is None
    assert len([p for p in (root / ckpt.CORRUPT_DIR).iterdir() if p.is_dir()]) == 3
