"""The teacher's own final answer, read from its CoT text (never used as the pipeline's answer).

Order: the last ``\\boxed{…}``, else a GSM8K-style ``#### N`` line, else the last number in the
text (GSM8K CoTs often end "… so she sold 72 clips.").
"""

from __future__ import annotations

from app.execution.answers import extract_boxed, extract_gsm8k_answer
from app.execution.numbers import find_numbers


def teacher_final_answer(cot_text: str) -> str | None:
    """The CoT's final answer as text, or None when it states no number at all."""
    boxed = extract_boxed(cot_text)
    if boxed is not None:
        return boxed
    hashes = extract_gsm8k_answer(cot_text)
    if hashes is not None:
        return hashes
    numbers = find_numbers(cot_text)
    return str(numbers[-1].value) if numbers else None
