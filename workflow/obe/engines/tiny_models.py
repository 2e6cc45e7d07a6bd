"""Tiny stand-ins for the paper-scale models: same architecture family, tokenizer kind, special
tokens and chat format, a few hundred thousand parameters.

The rehearsal (configs/rehearsal.yaml) runs a GPU preset's own code path on CPU; its base
model is built here, from the preset's ``base_model.name_or_path``, by
``python -m obe.base_model --size rehearsal`` (obe.base_model pre-trains it). What is kept of
the real model:

* **Family** (:func:`family_of`): ``LlamaForCausalLM`` for Llama names, ``Qwen2ForCausalLM``
  for Qwen names (Qwen2.5 is the qwen2 architecture: q/k/v biases); grouped-query attention
  (fewer key/value heads than query heads) as in both; Llama 3.1's ``llama3`` rope scaling and
  rope theta 500000; tied input/output embeddings exactly when the named model has them (both
  families tie them up to 3B parameters: Qwen2.5-Math-1.5B, Llama-3.2-1B/3B; not at 7-8B).
  Llama's rope keeps the real ratio of context to original context (131072 / 8192 = 16).
* **Tokenizer** (:func:`build_tokenizer`): byte-level BPE like both families' (so any text
  of the real datasets is covered: unknown characters fall back to bytes, never ``<unk>``),
  trained on the given texts with a small vocabulary; the family's special tokens appended after
  it as the real ones are; Llama prepends ``<|begin_of_text|>``, Qwen adds nothing. No pad
  token for Llama (the pipeline pads with EOS, as it must for the real one); Qwen pads with
  ``<|endoftext|>``, its EOS in base models.
* **Chat** (:func:`chat_template`, only when ``chat`` is asked for): the family's format,
  written here: Llama 3.1's ``<|start_header_id|>role<|end_header_id|>\\n\\n ... <|eot_id|>``
  turns after ``<|begin_of_text|>`` with its system block (knowledge and today dates), or
  Qwen's ChatML ``<|im_start|>role\\n ... <|im_end|>\\n`` with its default system message.
  A chat model's EOS is its end-of-turn token (``<|eot_id|>``, ``<|im_end|>``) and its
  generation config lists the end-of-text token too, as the instruct checkpoints do.

Sizes and ids differ from the real models (vocabulary of ~1k instead of 128k-152k), so nothing
that depends on a token id or a hidden size is rehearsed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

FAMILIES = ("llama", "qwen2")
# Up to this many billion parameters both families tie the output head to the input embeddings.
TIED_UP_TO_B = 3.0


@dataclass(frozen=True)
class Specials:
    """A family's special tokens (strings); ``extra`` are the chat-format markers."""

    bos: Optional[str]  # prepended by the tokenizer's post-processor (None: nothing prepended)
    eos: str  # the tokenizer's EOS: where a completion ends
    pad: Optional[str]  # None: the tokenizer has no pad token
    end_of_text: str  # also an EOS in the generation config of chat models
    extra: tuple[str, ...]


def specials(family: str, chat: bool) -> Specials:
    """The special tokens of ``family`` (a base model's, or an instruct model's when ``chat``)."""
    if family == "llama":
        eot = "<|eot_id|>"
        return Specials(bos="<|begin_of_text|>", eos=eot if chat else "<|end_of_text|>", pad=None,
                        end_of_text="<|end_of_text|>", extra=("<|start_header_id|>", "<|end_header_id|>", eot))
    if family == "qwen2":
        im_end = "<|im_end|>"
        return Specials(bos=None, eos=im_end if chat else "<|endoftext|>", pad="<|endoftext|>",
                        end_of_text="<|endoftext|>", extra=("<|im_start|>", im_end))
    raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")


def family_of(name_or_path: str) -> str:
    """The architecture family of a hub name (``meta-llama/Llama-3.1-8B-Instruct`` -> llama,
    ``Qwen/Qwen2.5-7B`` -> qwen2); a name of neither family is an error naming it."""
    low = str(name_or_path).lower()
    if "qwen" in low:
        return "qwen2"
    if "llama" in low:
        return "llama"
    raise ValueError(f"cannot tell the model family of {name_or_path!r}: the rehearsal builds stand-ins for "
                     f"{' and '.join(FAMILIES)} models (names containing 'llama' or 'qwen')")


def ties_embeddings(name_or_path: str) -> bool:
    """Whether the named model ties its head to its embeddings: its size (``1.5B`` in the name)
    is at most :data:`TIED_UP_TO_B` billion parameters; a name without a size is untied."""
    sizes = re.findall(r"(\d+(?:\.\d+)?)b(?![a-z])", str(name_or_path).lower())
    return bool(sizes) and float(sizes[-1]) <= TIED_UP_TO_B


# Jinja templates of the families' chat formats (messages: role + content; the generation prompt
# opens the assistant turn). Written for the stand-ins; the real checkpoints carry their own.
LLAMA_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system = messages[0]['content'] | trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024\\n\\n' }}"
    "{{- system + '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
CHATML_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def chat_template(family: str) -> str:
    return {"llama": LLAMA_CHAT_TEMPLATE, "qwen2": CHATML_TEMPLATE}[family]


def build_tokenizer(family: str, texts: Iterable[str], *, chat: bool, vocab_size: int = 1024,
                    model_max_length: int = 4096):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``texts`` with ``family``'s special
    tokens (after the learned vocabulary) and, when ``chat``, its chat template. Deterministic
    for the same texts in the same order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    sp = specials(family, chat)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(list(texts), trainer)
    names = [t for t in (sp.bos, sp.end_of_text, *sp.extra) if t is not None]
    tok.add_special_tokens(list(dict.fromkeys(names)))
    byte_level = processors.ByteLevel(trim_offsets=False)
    if sp.bos is not None:
        bos_id = tok.token_to_id(sp.bos)
        tok.post_processor = processors.Sequence([
            byte_level, processors.TemplateProcessing(single=f"{sp.bos} $A", pair=f"{sp.bos} $A {sp.bos} $B",
                                                      special_tokens=[(sp.bos, bos_id)])])
    else:
        tok.post_processor = byte_level
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=sp.bos, eos_token=sp.eos, pad_token=sp.pad,
                                   model_max_length=model_max_length, clean_up_tokenization_spaces=False)
    extra = [t for t in sp.extra if t != sp.eos]
    if extra:
        fast.add_special_tokens({"additional_special_tokens": extra})
    if chat:
        fast.chat_template = chat_template(family)
    return fast


def generation_eos_ids(tokenizer, family: str, chat: bool) -> list[int]:
    """EOS ids of the generation config: the tokenizer's EOS, and end-of-text for a chat model."""
    sp = specials(family, chat)
    ids = [tokenizer.convert_tokens_to_ids(sp.eos)]
    if chat:
        ids.append(tokenizer.convert_tokens_to_ids(sp.end_of_text))
    return ids


def build_model(family: str, tokenizer, *, name_or_path: str, chat: bool, hidden: int, layers: int, heads: int,
                kv_heads: int, intermediate: int, max_positions: int):
    """A randomly initialised model of ``family`` for ``tokenizer`` standing in for ``name_or_path``
    (float32; call ``torch.manual_seed`` first for reproducible weights). ``kv_heads`` < ``heads``:
    grouped-query attention, as in both families."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    eos_ids = generation_eos_ids(tokenizer, family, chat)
    end_of_text = tokenizer.convert_tokens_to_ids(specials(family, chat).end_of_text)
    common = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
                  num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                  max_position_embeddings=max_positions, tie_word_embeddings=ties_embeddings(name_or_path),
                  eos_token_id=eos_ids if len(eos_ids) > 1 else eos_ids[0])
    if family == "llama":
        config = LlamaConfig(**common, rms_norm_eps=1e-5, bos_token_id=tokenizer.bos_token_id,
                             rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                              "original_max_position_embeddings": max_positions // 16})
        model = LlamaForCausalLM(config)
    elif family == "qwen2":
        config = Qwen2Config(**common, rms_norm_eps=1e-6, bos_token_id=end_of_text, pad_token_id=tokenizer.pad_token_id,
                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
        model = Qwen2ForCausalLM(config)
    else:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    # what the hub checkpoints' generation configs say: sample at temperature 1 unless told otherwise
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, do_sample=True, temperature=1.0,
                                               top_k=0, top_p=1.0)
    return model


def save_tokenizer(tokenizer, out: str | Path) -> None:
    """Save so that ``AutoTokenizer`` reloads this exact class (not a slow family class)."""
    out = Path(out)
    tokenizer.save_pretrained(str(out))
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
