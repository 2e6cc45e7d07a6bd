"""The allowed values of settings that several stages check (sampling, both trainers, the
config schema): one definition each, below every module that uses them."""

DTYPES = ("float32", "float16", "bfloat16", "auto")  # how a model's weights are loaded
CHAT_TEMPLATE_MODES = ("auto", "always", "never")  # whether prompts go through the tokenizer's chat template
ENGINES = ("auto", "lean", "hf")  # forward passes: obe.engines.fastlm (lean), transformers (hf), or lean when it can
