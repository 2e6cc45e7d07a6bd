"""Build a tiny random Llama with a char-level tokenizer in a directory (tests, bench).

Nothing here touches the network: the tokenizer is built with ``tokenizers`` (a WordLevel
model over single characters), wrapped as a ``PreTrainedTokenizerFast`` with bos/eos/pad,
and the model is a randomly initialised ``LlamaForCausalLM`` saved with safetensors.
``AutoTokenizer`` / ``AutoModelForCausalLM`` load the result like any hub checkpoint.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]
# Printable ASCII (letters, digits, punctuation, space) plus newline and tab.
CHARS = sorted(set(string.printable) - {"\r", "\x0b", "\x0c"})


def build_tokenizer(chat_template: str | None = None):
    """A char-level ``PreTrainedTokenizerFast`` (one token per character, bos prepended)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Every single character (newline included) is its own pre-token.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()  # concatenate characters, no spaces in between
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, vocab[BOS])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def build_tiny_model(
    directory: str | Path,
    seed: int = 0,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 512,
    chat_template: str | None = None,
    eos_bias: float | None = None,
) -> str:
    """Write a tiny random Llama + char tokenizer to ``directory``; return the path.

    ``eos_bias``: if set, added to the LM-head bias direction of EOS by scaling its output
    row, making the random model stop early (useful to exercise ``finish_reason="stop"``).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(chat_template)
    vocab_size = len(tokenizer)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if eos_bias is not None:
        with torch.no_grad():
            # The final norm output is O(1); a large constant EOS row makes EOS likely.
            model.lm_head.weight[tokenizer.eos_token_id].fill_(eos_bias)
    model.eval()
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    # Make the tokenizer class explicit so AutoTokenizer never guesses (e.g. a Llama slow class).
    cfg_path = directory / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return str(directory)
