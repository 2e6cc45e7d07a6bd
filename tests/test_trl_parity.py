"""One-step parity of obe's GRPO update with TRL's ``GRPOTrainer`` (exploration off, beta = 0).

Both sides start from the same saved tiny model, see the same prompts and the SAME FIXED
completions (TRL gets them through its ``rollout_func`` hook instead of generating), score
them with the same reward (``obe.grading.grade`` against a gold answer) and take one AdamW
step with the same hyper-parameters. Compared: advantages, loss, pre-clip gradient norm,
the (clipped) gradient and the parameter update, for the 3 loss aggregations x 2 reward
scalings:

    TRL loss_type   obe agg                 TRL scale_rewards   obe scale
    "grpo"          seq_mean_token_mean     "group"             "group"
    "dapo"          token_mean              "none"              "none"
    "dr_grpo"       dr_grpo

Conventions aligned (checked in trl 1.16 ``grpo_trainer.py``): TRL divides by the SAMPLE
std (``trl.trainer.utils.nanstd``, Bessel-corrected) plus ``1e-4``, so obe runs with
``std="sample"`` and ``adv_eps=1e-4``. The prompts have different lengths (left padding):
TRL's training forward passes no ``position_ids`` (positions shifted by the padding), obe
passes ``cumsum(mask) - 1`` like ``generate``; for a RoPE model that shift cancels
(``test_left_padding_shift_is_harmless_for_rope``), for absolute position embeddings it
would not. Weight decay is 0: with decay > 0 the HF Trainer exempts biases and norm
weights, obe decays every parameter.

The parameter update is compared where the gradient is not tiny: AdamW's first step is
~``lr * g / |g|``, which turns the fp32 rounding of the two log-prob kernels (~2e-7 of
``||g||``) into O(lr) differences on entries with ``|g|`` near 0; the optimizer itself is
checked bit for bit by applying obe's AdamW to TRL's gradients.

obe's side calls obe's own pieces in the order ``obe.train`` does (``exploration_step``,
``token_advantages``, ``forward_logits``, ``token_logprobs``, ``policy_loss``,
``clip_grad_norm_``, ``torch.optim.AdamW``). CPU only, offline, ~15 s.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import defaultdict
from pathlib import Path

import pytest
import torch

trl = pytest.importorskip("trl", reason="trl is not installed (pip install -e '.[test]')")

from obe.rl.advantages import AdvantageConfig  # noqa: E402
from obe.rl.bonuses import ExplorationConfig, exploration_step, token_advantages  # noqa: E402
from obe.rl.counts import OutcomeCounts  # noqa: E402
from obe.grading import grade  # noqa: E402
from obe.rl.loss import policy_loss, token_logprobs  # noqa: E402
from obe.engines.rollout import completion_mask, left_pad  # noqa: E402
from obe.engines.fastlm import LeanLM  # noqa: E402
from obe.engines.policy import forward_logits  # noqa: E402

from tiny_model import build_tiny_model  # noqa: E402

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

LR, BETAS, ADAM_EPS, WD, GRAD_CLIP = 1e-3, (0.9, 0.999), 1e-8, 0.0, 1.0
EPS_LOW, EPS_HIGH = 0.2, 0.28
MAX_NEW = 24  # max_completion_length (the Dr. GRPO constant)
N = 4  # samples per prompt
TRL_EPS = 1e-4  # TRL: advantages / (std + 1e-4)
TOL = 1e-6

# Four prompts (one longer: left padding), gold answers, and N fixed
# completions each. Rewards (by grade): mixed groups of different shapes, plus one
# all-wrong group (advantage 0 under every setting). "</s>" marks an EOS-terminated
# completion; the others are cut at MAX_NEW tokens or just end (TRL keeps every token given).
PROMPTS = ["3 + 4 = ?\n", "9-2=?\n", "2*3=?\n", "8/2=?\n"]
GOLD = ["7", "7", "6", "4"]
COMPLETIONS = [
    ["so \\boxed{7}</s>", "it is \\boxed{8}</s>", "\\boxed{7}</s>", "3 plus 4 is \\boxed{7} ok</s>"],
    ["nine minus two gives \\boxed{5}", "\\boxed{7}</s>", "hmm \\boxed{6}</s>", "x</s>"],
    ["\\boxed{5}</s>", "two times three is six so", "\\boxed{9}</s>", "\\boxed{1}</s>"],
    ["\\boxed{4}</s>", "half of eight: \\boxed{4}</s>", "\\boxed{2}</s>", "\\boxed{4}</s>"],
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from transformers import AutoTokenizer

    torch.set_num_threads(int(os.environ.get("OBE_TEST_THREADS", "2")))
    model_dir = build_tiny_model(tmp_path_factory.mktemp("parity_model"), seed=3, hidden_size=32)
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompt_ids = [tok(p, add_special_tokens=True)["input_ids"] for p in PROMPTS]
    assert len({len(p) for p in prompt_ids}) > 1, "want left padding in the batch"
    eos = tok.eos_token_id
    comp_ids = []
    for group in COMPLETIONS:
        rows = []
        for text in group:
            body, stop = (text[: -len("</s>")], True) if text.endswith("</s>") else (text, False)
            ids = tok(body, add_special_tokens=False)["input_ids"][:MAX_NEW]
            if stop and len(ids) < MAX_NEW:
                ids = ids + [eos]
            rows.append(ids)
        comp_ids.append(rows)
    texts = [[tok.decode(ids, skip_special_tokens=True) for ids in rows] for rows in comp_ids]
    graded = [[grade(t, g) for t in rows] for rows, g in zip(texts, GOLD)]
    rewards = [[float(x.correct) for x in rows] for rows in graded]
    flat = sum(rewards, [])
    assert 0 < sum(flat) < len(flat) and any(len(set(r)) == 1 for r in rewards)
    return dict(model_dir=model_dir, tok=tok, prompt_ids=prompt_ids, comp_ids=comp_ids, texts=texts,
                rewards=rewards, keys=[[x.outcome_key for x in rows] for rows in graded])


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# -- obe --------------------------------------------------------------------------------


def obe_step(s, agg: str, scale: str, engine: str = "hf") -> dict:
    """One obe training step on the fixed batch, as obe.train's loop does it (mu = 1), with
    the HF forward (``engine="hf"``) or obe.engines.fastlm's (``"lean"``, obe.train's CPU default)."""
    from transformers import AutoModelForCausalLM

    tok = s["tok"]
    model = AutoModelForCausalLM.from_pretrained(s["model_dir"], dtype=torch.float32).train()
    before = _params(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=ADAM_EPS, weight_decay=WD)

    B = len(PROMPTS)
    rows = [p for p in s["prompt_ids"] for _ in range(N)]
    p_ids, p_mask = left_pad(rows, tok.pad_token_id)
    comp = [c for group in s["comp_ids"] for c in group]
    width = max(len(c) for c in comp)
    c_ids = torch.full((len(comp), width), tok.pad_token_id, dtype=torch.long)
    for i, c in enumerate(comp):
        c_ids[i, : len(c)] = torch.tensor(c)
    # obe's own mask rule (up to and incl. the first EOS), then the padding beyond each row
    c_mask = completion_mask(c_ids, [tok.eos_token_id])
    c_mask = c_mask * (torch.arange(width)[None, :] < torch.tensor([len(c) for c in comp])[:, None])

    rewards = torch.tensor(s["rewards"])
    explore = ExplorationConfig(method="grpo")
    adv_cfg = AdvantageConfig(scale=scale, std="sample", eps=TRL_EPS)
    adv_Bn, bonus_Bn = exploration_step(rewards, s["keys"], [f"q{b}" for b in range(B)], OutcomeCounts(),
                                        explore, adv_cfg)
    adv_ST = token_advantages(adv_Bn.reshape(-1), bonus_Bn.reshape(-1), torch.zeros(c_ids.shape),
                              explore.coef, explore.mask_answer_tokens)
    norm = dict(total_tokens=float(c_mask.sum())) if agg == "token_mean" else dict(num_sequences=float(B * N))

    opt.zero_grad(set_to_none=True)
    logits = forward_logits(model, p_ids, p_mask, c_ids, c_mask, LeanLM(model) if engine == "lean" else None)
    logp = token_logprobs(logits, c_ids, 1.0)
    loss, _ = policy_loss(logp, None, adv_ST, c_mask, eps_low=EPS_LOW, eps_high=EPS_HIGH, beta=0.0, agg=agg,
                          max_completion_length=MAX_NEW, **norm)
    loss.backward()
    gn = torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    after = _params(model)
    return dict(adv=adv_Bn.reshape(-1), loss=float(loss.detach()), grad_norm=float(gn), grads=grads,
                update={n: after[n] - before[n] for n in before}, c_mask=c_mask)


# -- TRL --------------------------------------------------------------------------------


def trl_step(s, loss_type: str, scale_rewards: str, tmp: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tok = s["tok"]
    by_prompt = {p: (s["prompt_ids"][b], s["comp_ids"][b]) for b, p in enumerate(PROMPTS)}
    served: dict[str, int] = defaultdict(int)

    def rollout_func(prompts, trainer):  # fixed completions instead of sampling
        out = {"prompt_ids": [], "completion_ids": [], "logprobs": None}
        for p in prompts:
            ids, comps = by_prompt[p]
            k = served[p] % N
            served[p] += 1
            out["prompt_ids"].append(list(ids))
            out["completion_ids"].append(list(comps[k]))
        return out

    gold = dict(zip(PROMPTS, GOLD))

    def reward(prompts, completions, **kw):
        return [float(grade(c, gold[p]).correct) for p, c in zip(prompts, completions)]

    captured: dict = {}

    class Capture(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kw):  # after clipping
            captured["grads"] = {n: p.grad.detach().clone() for n, p in model.named_parameters()}

    class Trainer(GRPOTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            captured["loss"] = float(loss.detach())
            rows = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1).tolist()
            masks = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1).tolist()
            captured["adv"] = {}  # (prompt ids, completion ids) -> advantage (rows come shuffled)
            for ids, m, a in zip(rows, masks, inputs["advantages"].tolist()):
                key = tuple(i for i, keep in zip(ids, m) if keep)
                assert captured["adv"].setdefault(key, a) == a
            return loss

    model = AutoModelForCausalLM.from_pretrained(s["model_dir"], dtype=torch.float32)
    before = _params(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. gradient_checkpointing renamed in transformers 5
        args = GRPOConfig(
            output_dir=str(tmp), use_cpu=True, bf16=False, fp16=False, report_to="none", save_strategy="no",
            logging_steps=1, max_steps=1, seed=0, disable_tqdm=True, dataloader_num_workers=0,
            per_device_train_batch_size=len(PROMPTS) * N, num_generations=N, max_completion_length=MAX_NEW,
            gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1, gradient_checkpointing=False,
            learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
            adam_beta1=BETAS[0], adam_beta2=BETAS[1], adam_epsilon=ADAM_EPS, weight_decay=WD, max_grad_norm=GRAD_CLIP,
            loss_type=loss_type, scale_rewards=scale_rewards, beta=0.0, epsilon=EPS_LOW, epsilon_high=EPS_HIGH,
            temperature=1.0, mask_truncated_completions=False, log_completions=False,
        )
        trainer = Trainer(model=model, reward_funcs=reward, args=args, processing_class=tok,
                          train_dataset=Dataset.from_dict({"prompt": PROMPTS}), rollout_func=rollout_func,
                          callbacks=[Capture()])
        trainer.train()
    after = _params(model)
    log = next(r for r in trainer.state.log_history if "grad_norm" in r)
    # back to obe's question-major order (q0 s0, q0 s1, ...)
    adv = torch.tensor([captured["adv"][tuple(s["prompt_ids"][b] + s["comp_ids"][b][k])]
                        for b in range(len(PROMPTS)) for k in range(N)])
    assert sorted(served.values()) == [N] * len(PROMPTS)  # one generation batch, each prompt N times
    return dict(adv=adv, loss=captured["loss"], grad_norm=float(log["grad_norm"]),
                grads=captured["grads"], update={n: after[n] - before[n] for n in before}, lr=log["learning_rate"])


# -- comparison -------------------------------------------------------------------------


def _rel(a, b, floor: float = 0.0) -> float:
    """``||a - b|| / max(||b||, floor)`` (tensors: Frobenius over all entries / parameters)."""
    if isinstance(a, dict):
        num = math.sqrt(sum(float((a[k] - b[k]).double().pow(2).sum()) for k in b))
        den = math.sqrt(sum(float(b[k].double().pow(2).sum()) for k in b))
    elif isinstance(a, torch.Tensor):
        num, den = float((a - b).double().norm()), float(b.double().norm())
    else:
        num, den = abs(a - b), abs(b)
    return num / max(den, floor) if max(den, floor) > 0 else num


TINY_GRAD = 1e-5  # relative to the gradient norm


def _well_conditioned(upd_a: dict, upd_b: dict, grads: dict, grad_norm: float) -> tuple[dict, dict]:
    """The updates with the entries whose gradient is nonzero but below TINY_GRAD * ||g|| zeroed."""
    keep = {n: ~((grads[n] != 0) & (grads[n].abs() < TINY_GRAD * grad_norm)) for n in grads}
    return ({n: upd_a[n] * keep[n] for n in grads}, {n: upd_b[n] * keep[n] for n in grads})


def adamw_update(s, grads: dict) -> dict:
    """obe's optimizer (torch AdamW, as obe.train builds it) applied once to given gradients."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(s["model_dir"], dtype=torch.float32)
    before = _params(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, betas=BETAS, eps=ADAM_EPS,
                            weight_decay=WD)
    for n, p in model.named_parameters():
        p.grad = grads[n].clone()
    opt.step()
    return {n: p.detach() - before[n] for n, p in model.named_parameters()}


COMBOS = [(lt, agg, sc) for lt, agg in (("grpo", "seq_mean_token_mean"), ("dapo", "token_mean"),
                                         ("dr_grpo", "dr_grpo")) for sc in ("group", "none")]


@pytest.mark.slow
@pytest.mark.parametrize("loss_type,agg,scale", COMBOS, ids=[f"{c[0]}-{c[2]}" for c in COMBOS])
def test_one_step_matches_trl(setup, tmp_path, loss_type, agg, scale):
    t = trl_step(setup, loss_type, scale, tmp_path)
    assert t["lr"] == pytest.approx(LR, rel=0, abs=0)
    for engine in ("hf", "lean"):
        check_obe_against_trl(setup, obe_step(setup, agg, scale, engine), t, f"{loss_type}/{scale}/{engine}")


def check_obe_against_trl(setup: dict, o: dict, t: dict, label: str) -> None:
    # the loss of one on-policy step is -(weighted mean advantage): ~0 for the per-sequence
    # mean with centred advantages, so its scale is the mean |advantage| (and not |loss|)
    adv_scale = float(o["adv"].abs().mean())
    diffs = {
        "advantages": _rel(o["adv"].double(), t["adv"].double()),
        "loss": _rel(o["loss"], t["loss"], floor=adv_scale),
        "grad_norm": _rel(o["grad_norm"], t["grad_norm"]),
        "gradient": _rel(o["grads"], t["grads"]),
        # AdamW's first step is ~lr * g / |g|: on entries with |g| near 0 it turns the fp32
        # rounding of the two log-prob kernels (~2e-7 of ||g||) into O(lr) differences. So:
        # the update where the gradient is not tiny, and the optimizer on identical gradients.
        "update": _rel(*_well_conditioned(o["update"], t["update"], t["grads"], t["grad_norm"])),
        "update_same_grads": _rel(adamw_update(setup, t["grads"]), t["update"]),
    }
    info = {"update_all_entries": _rel(o["update"], t["update"])}
    print(f"\n[trl parity] {label}: loss obe={o['loss']:.9g} trl={t['loss']:.9g} "
          f"grad_norm obe={o['grad_norm']:.9g} trl={t['grad_norm']:.9g} | max rel diffs: "
          + ", ".join(f"{k}={v:.2e}" for k, v in {**diffs, **info}.items()))
    assert o["grad_norm"] > 0 and float(o["adv"].abs().max()) > 0
    bad = {k: v for k, v in diffs.items() if not v <= TOL}
    assert not bad, f"obe vs TRL ({label}) differ by more than {TOL} relative: {bad}"


@pytest.mark.slow
def test_left_padding_shift_is_harmless_for_rope(setup):
    """TRL scores completions without ``position_ids`` (positions 0..L-1 including the left
    padding); obe and ``generate`` use ``cumsum(mask) - 1``. With RoPE only position
    differences enter attention, so both give the unpadded scores up to rounding."""
    from transformers import AutoModelForCausalLM

    tok = setup["tok"]
    model = AutoModelForCausalLM.from_pretrained(setup["model_dir"], dtype=torch.float32).eval()
    short = tok("1+1=?\n", add_special_tokens=True)["input_ids"]
    longp = tok("11 + 11 = ?\n", add_special_tokens=True)["input_ids"]
    p_ids, p_mask = left_pad([short, longp], tok.pad_token_id)
    assert int(p_mask[0].sum()) < p_mask.shape[1]
    c = torch.tensor([tok("\\boxed{2}", add_special_tokens=False)["input_ids"]] * 2)
    cm = torch.ones_like(c)
    with torch.no_grad():
        obe_lp = token_logprobs(forward_logits(model, p_ids, p_mask, c, cm), c)
        ids, attn = torch.cat([p_ids, c], 1), torch.cat([p_mask, cm], 1)
        trl_like = token_logprobs(model(input_ids=ids, attention_mask=attn).logits[:, -c.shape[1] - 1 : -1], c)
        alone = token_logprobs(forward_logits(model, torch.tensor([short]), torch.ones(1, len(short), dtype=torch.long),
                                              c[:1], cm[:1]), c[:1])
    assert torch.allclose(obe_lp[0], alone[0], rtol=0, atol=1e-5)
    assert torch.allclose(trl_like[0], alone[0], rtol=0, atol=1e-5)
