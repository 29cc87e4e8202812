"""An example validation text for each of a trial's most-confused label pairs (a pure function over plain data)."""

from __future__ import annotations

from collections.abc import Sequence

from reports.classes import MAX_EXAMPLE_CHARS, confused_pairs, shorten

# Pairs given an example: twice the report's table (reports.classes.MAX_PAIRS), so its rows always have one. Each
# trial stores them: at most 20 texts of 160 characters (under 5 kB with short label names).
MAX_EXAMPLE_PAIRS = 20


def confused_examples(
    misclassified: Sequence[Sequence[int]] | None,
    *,
    texts: Sequence[str],
    label_ids: Sequence[int],
    label_names: Sequence[str],
    limit: int = MAX_EXAMPLE_PAIRS,
    max_chars: int = MAX_EXAMPLE_CHARS,
) -> list[dict[str, str]]:
    """One validation text for each of the `limit` most-confused (given, predicted) label pairs, most rows first.

    `misclassified` lists `[row, predicted label id]` for the rows an evaluation got wrong (the model's record);
    `texts[row]` and `label_ids[row]` are that validation row's text and given label. Pairs are ranked as the report
    ranks them (`reports.classes.confused_pairs`: most rows first, ties to the larger share of the given class, then
    label order), so the report's pairs table finds an example for each of its rows. A pair's example is its first
    row in the validation split, cut to `max_chars` characters. Entries naming no such row or label, repeating a
    row, or predicting the given label are skipped; without `misclassified` (the rows were not known) there are none.
    Returns `[{"given": label, "predicted": label, "text": text}, ...]`.
    """
    n = len(label_names)
    if not misclassified or len(texts) != len(label_ids) or any(not 0 <= g < n for g in label_ids):
        return []
    matrix = [[0] * n for _ in range(n)]
    for given in label_ids:
        matrix[given][given] += 1
    first: dict[tuple[int, int], int] = {}
    seen: set[int] = set()
    for row, predicted in sorted((int(r), int(p)) for r, p in misclassified):
        if not (0 <= row < len(texts) and 0 <= predicted < n) or row in seen or predicted == label_ids[row]:
            continue
        seen.add(row)
        given = label_ids[row]
        matrix[given][given] -= 1
        matrix[given][predicted] += 1
        first.setdefault((given, predicted), row)
    index = {name: i for i, name in enumerate(label_names)}
    return [
        {"given": p.given, "predicted": p.predicted,
         "text": shorten(texts[first[index[p.given], index[p.predicted]]], max_chars)}
        for p in confused_pairs(matrix, label_names, limit=limit)
    ]  # fmt: skip
