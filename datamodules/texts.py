"""One example's input: a text, or a pair of texts (task: text-pair).

A pair is the example everywhere after loading: a duplicate is the same pair, a conflict two labels for one
pair, a train/validation overlap the same pair in both splits, and the tokenizer encodes it as a pair.
"""

from __future__ import annotations

Text = str | tuple[str, str]
PAIR_SEPARATOR = " ||| "  # shows a pair as one line in reports and stored examples (the model never sees it)


def display_text(text: Text) -> str:
    """A text as it is; a pair as its two texts joined by PAIR_SEPARATOR, for reports and messages."""
    return text if isinstance(text, str) else PAIR_SEPARATOR.join(text)
