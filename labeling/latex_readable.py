"""A readable, plain-Unicode rendering of MATH's LaTeX for the review screen — pure.

Label Studio's ``Text`` tag shows raw characters (and span offsets must stay raw CHAR offsets
into ``problems.text``), so the screen keeps the raw text for marking and shows this rendering
beside it: ``$\\frac{3}{4}x^2 \\le \\sqrt{5}$`` → ``(3)/(4)x² ≤ √(5)``.
"""

from __future__ import annotations

import re

_SYMBOLS: dict[str, str] = {
    "cdot": "·", "times": "×", "div": "÷", "pm": "±", "mp": "∓", "le": "≤", "leq": "≤", "ge": "≥",
    "geq": "≥", "ne": "≠", "neq": "≠", "approx": "≈", "infty": "∞", "pi": "π", "theta": "θ",
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "Delta": "Δ", "lambda": "λ", "mu": "μ",
    "sigma": "σ", "phi": "φ", "omega": "ω", "circ": "°", "angle": "∠", "triangle": "△", "ldots": "…",
    "cdots": "⋯", "dots": "…", "in": "∈", "cup": "∪", "cap": "∩", "sqrt": "√", "rightarrow": "→",
    "Rightarrow": "⇒", "to": "→", "perp": "⊥", "parallel": "∥", "equiv": "≡", "%": "%", "$": "$",
    "{": "{", "}": "}", ",": " ", ";": " ", "!": "", ":": " ", "quad": "  ", "qquad": "    ",
}
_DROP = ("left", "right", "displaystyle", "textstyle", "big", "Big", "bigg", "Bigg")
_SUPERSCRIPT = str.maketrans("0123456789+-=()n", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿ")
_SUBSCRIPT = str.maketrans("0123456789+-=()", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎")
_GROUP = r"\{((?:[^{}]|\{[^{}]*\})*)\}"


def _script(match: re.Match[str], table: dict[int, int], marker: str) -> str:
    body = match.group(1) if match.group(1) is not None else match.group(2)
    translated = body.translate(table)
    if all(ord(c) in table.values() or c in "ⁿ" for c in translated if not c.isspace()) and translated:
        return translated
    return f"{marker}({body})"


def readable_latex(text: str) -> str:
    """``text`` with common LaTeX turned into Unicode; unknown commands keep their name."""
    out = text.replace("\\$", "\x00")  # an escaped dollar is money, not math
    for _ in range(3):  # nested fractions / roots
        out = re.sub(r"\\[dt]?frac" + _GROUP + _GROUP, r"(\1)/(\2)", out)
        out = re.sub(r"\\sqrt\[([^\]]+)\]" + _GROUP, r"\1√(\2)", out)
        out = re.sub(r"\\sqrt" + _GROUP, r"√(\1)", out)
        out = re.sub(r"\\(?:text|mathrm|mathbf|textbf|operatorname|mbox)" + _GROUP, r"\1", out)
    out = re.sub(r"\\(" + "|".join(_DROP) + r")\b", "", out)
    out = re.sub(r"\\([A-Za-z]+|[%${},;!:])", lambda m: _SYMBOLS.get(m.group(1), m.group(1)), out)
    out = re.sub(r"\^(?:\{([^{}]*)\}|(\w))", lambda m: _script(m, _SUPERSCRIPT, "^"), out)
    out = re.sub(r"_(?:\{([^{}]*)\}|(\w))", lambda m: _script(m, _SUBSCRIPT, "_"), out)
    out = out.replace("$", "").replace("{", "").replace("}", "").replace("\x00", "$")
    return re.sub(r"[ \t]{2,}", " ", out).strip()


def has_latex(text: str) -> bool:
    """True if ``text`` contains math delimiters or LaTeX commands."""
    return bool(re.search(r"\$|\\[A-Za-z]+", text))
