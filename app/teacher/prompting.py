"""Build the teacher's input: chat prompt around the problem, then the CoT, with char offsets.

Units: ``problem_token_range`` and ``cot_token_range`` are token indices into ``input_ids``
(end exclusive); ``problem_char_spans`` are char offsets into the *problem text* and
``cot_char_spans`` char offsets into the *CoT text* — the chat markup is never part of either.
A forced CoT is tokenized on its own (tokenizer offsets); a generated CoT keeps the generated ids
and gets its char spans by incremental decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from app.signals.alignment import ProblemTokens, problem_tokens

DEFAULT_PROMPT = (
    "Solve the following math problem step by step. "
    "Put the final answer within \\boxed{{}}.\n\n{problem}"
)


@dataclass(frozen=True)
class EncodedInput:
    input_ids: list[int]  # prompt tokens followed by CoT tokens
    prompt_token_count: int
    problem_token_range: tuple[int, int]  # token indices of the problem inside the prompt
    problem_char_spans: np.ndarray  # (n_problem_tokens, 2) char offsets into the problem text
    cot_char_spans: np.ndarray  # (n_cot_tokens, 2) char offsets into the CoT text

    @property
    def cot_token_range(self) -> tuple[int, int]:
        return self.prompt_token_count, len(self.input_ids)


def render_prompt(tokenizer: PreTrainedTokenizerBase, problem: str, template: str = DEFAULT_PROMPT) -> tuple[str, int]:
    """The prompt text (chat template applied, generation prompt appended) and the char offset
    at which ``problem`` starts inside it."""
    if "{problem}" not in template:
        raise ValueError("the prompt template must contain '{problem}'")
    prefix = template[: template.index("{problem}")].replace("{{", "{").replace("}}", "}")
    user_content = template.format(problem=problem)
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": user_content}], tokenize=False, add_generation_prompt=True
        )
    else:
        prompt = user_content + "\n"
    content_at = prompt.find(user_content)
    if content_at < 0:
        raise ValueError("the chat template altered the user message; cannot locate the problem text")
    return prompt, content_at + len(prefix)


def encode_prompt(tokenizer: PreTrainedTokenizerBase, problem: str, template: str = DEFAULT_PROMPT) -> tuple[list[int], ProblemTokens]:
    """The prompt's token ids (no special tokens added: the chat template has them) and where the
    problem sits in them (token range, char spans relative to the problem text)."""
    prompt, problem_at = render_prompt(tokenizer, problem, template)
    prompt_enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    return list(prompt_enc["input_ids"]), problem_tokens(prompt_enc["offset_mapping"], (problem_at, problem_at + len(problem)))


DECODE_WINDOW = 8  # tokens of left context per incremental decode (longer than any multi-byte char)


def decoded_char_spans(tokenizer: PreTrainedTokenizerBase, token_ids: Sequence[int]) -> tuple[str, np.ndarray]:
    """Generated token ids → (text, char spans ``(n, 2)`` int64 into that text) by incremental decoding.

    ``text`` is ``decode(token_ids, skip_special_tokens=True)``. Token k's chars are what decoding
    ``token_ids[k-W : k+1]`` adds to decoding ``token_ids[k-W : k]`` (W = ``DECODE_WINDOW``), each
    without trailing U+FFFD: a token holding only the first bytes of a multi-byte char gets an
    empty span and the token completing it gets the char. Special tokens get empty spans. Raises
    ``ValueError`` when the pieces do not concatenate to ``text`` (a tokenizer whose decoding is
    not incremental), rather than produce misaligned spans.
    """
    ids = [int(i) for i in token_ids]
    options = {"skip_special_tokens": True, "clean_up_tokenization_spaces": False}
    text = tokenizer.decode(ids, **options)
    starts = [max(0, k - DECODE_WINDOW) for k in range(len(ids))]
    with_token = tokenizer.batch_decode([ids[a : k + 1] for k, a in enumerate(starts)], **options)
    without = tokenizer.batch_decode([ids[a:k] for k, a in enumerate(starts)], **options)
    stable_with = [t.rstrip("\ufffd") for t in with_token]
    stable_without = [t.rstrip("\ufffd") for t in without]
    if not all(w.startswith(b) for w, b in zip(stable_with, stable_without, strict=True)):
        raise ValueError("incremental decoding is not prefix-stable for this tokenizer: cannot map generated tokens to chars")
    lengths = np.array([len(w) - len(b) for w, b in zip(stable_with, stable_without, strict=True)], dtype=np.int64)
    ends = np.cumsum(lengths)
    pieces = "".join(w[len(b) :] for w, b in zip(stable_with, stable_without, strict=True))
    if pieces != text:
        raise ValueError("incrementally decoded tokens do not add up to the decoded CoT: cannot map tokens to chars")
    return text, np.stack([ends - lengths, ends], axis=1).reshape(-1, 2)


def encode_problem_and_generated(
    tokenizer: PreTrainedTokenizerBase, problem: str, cot_token_ids: Sequence[int], template: str = DEFAULT_PROMPT
) -> tuple[EncodedInput, str]:
    """Prompt ids + the *generated* CoT ids as they are (never re-tokenized), and the CoT text.

    The capture then runs over exactly the tokens the teacher produced; CoT char spans come from
    incremental decoding (:func:`decoded_char_spans`).
    """
    prompt_ids, located = encode_prompt(tokenizer, problem, template)
    if len(cot_token_ids) < 2:
        raise ValueError("the CoT has fewer than 2 tokens: no attention trace to segment")
    text, spans = decoded_char_spans(tokenizer, cot_token_ids)
    encoded = EncodedInput(
        input_ids=prompt_ids + [int(i) for i in cot_token_ids],
        prompt_token_count=len(prompt_ids),
        problem_token_range=located.token_range,
        problem_char_spans=located.char_spans,
        cot_char_spans=spans,
    )
    return encoded, text


def encode_problem_and_cot(
    tokenizer: PreTrainedTokenizerBase, problem: str, cot: str, template: str = DEFAULT_PROMPT
) -> EncodedInput:
    """Tokenize prompt and CoT separately (so no token straddles them) and map both back to chars."""
    prompt_ids, located = encode_prompt(tokenizer, problem, template)
    cot_enc = tokenizer(cot, add_special_tokens=False, return_offsets_mapping=True)
    cot_offsets = np.asarray(cot_enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    if len(cot_enc["input_ids"]) < 2:
        raise ValueError("the CoT has fewer than 2 tokens: no attention trace to segment")
    return EncodedInput(
        input_ids=prompt_ids + list(cot_enc["input_ids"]),
        prompt_token_count=len(prompt_ids),
        problem_token_range=located.token_range,
        problem_char_spans=located.char_spans,
        cot_char_spans=cot_offsets,
    )
