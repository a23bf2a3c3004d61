"""Build the teacher's input: chat prompt around the problem, then the CoT, with char offsets.

Units: ``problem_token_range`` and ``cot_token_range`` are token indices into ``input_ids``
(end exclusive); ``problem_char_spans`` are char offsets into the *problem text* and
``cot_char_spans`` char offsets into the *CoT text* — the chat markup is never part of either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from app.signals.alignment import problem_tokens

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


def encode_problem_and_cot(
    tokenizer: PreTrainedTokenizerBase, problem: str, cot: str, template: str = DEFAULT_PROMPT
) -> EncodedInput:
    """Tokenize prompt and CoT separately (so no token straddles them) and map both back to chars."""
    prompt, problem_at = render_prompt(tokenizer, problem, template)
    prompt_enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    located = problem_tokens(prompt_enc["offset_mapping"], (problem_at, problem_at + len(problem)))

    cot_enc = tokenizer(cot, add_special_tokens=False, return_offsets_mapping=True)
    cot_offsets = np.asarray(cot_enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    if len(cot_enc["input_ids"]) < 2:
        raise ValueError("the CoT has fewer than 2 tokens: no attention trace to segment")
    return EncodedInput(
        input_ids=list(prompt_enc["input_ids"]) + list(cot_enc["input_ids"]),
        prompt_token_count=len(prompt_enc["input_ids"]),
        problem_token_range=located.token_range,
        problem_char_spans=located.char_spans,
        cot_char_spans=cot_offsets,
    )
