"""A tiny local Qwen2 teacher for tests and offline demos.

Random weights (its attention is random: the signals it yields exercise the pipeline, they say
nothing about math), a byte-level BPE tokenizer trained locally on the given texts, and a
Qwen-style chat template. It is saved to a directory and then loaded by path through the same
``load_teacher`` code as a real teacher.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
BASE_CORPUS = [
    "Solve the following math problem step by step. Put the final answer within \\boxed{}.",
    "0123456789 +-*/=^()[]{}<>$%.,;:!?'\" \\frac \\sqrt \\boxed \\cdot \\times #### dollars half twice dozen",
]


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = 1000, trim_offsets: bool = False
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (Qwen style: lossless, ChatML template) trained on ``texts``.

    With ``trim_offsets=False`` (as in Qwen2) a token's char offsets include its leading space.
    Deterministic for a given corpus.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=trim_offsets)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_teacher(
    directory: Path,
    texts: Iterable[str],
    *,
    num_layers: int = 2,
    hidden_size: int = 64,
    num_heads: int = 4,
    vocab_size: int = 1000,
    max_positions: int = 4096,
    initializer_range: float = 0.2,
    seed: int = 0,
) -> Path:
    """Build and save a random-weight Qwen2 causal LM plus tokenizer under ``directory``; return it.

    ``initializer_range`` 0.2 (vs. 0.02 for real training) makes the random attention peaked
    rather than near-uniform, so IAF selects some tokens and clause expansion has work to do.
    """
    tokenizer = train_bpe_tokenizer([*BASE_CORPUS, *texts], vocab_size=vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=max_positions,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
