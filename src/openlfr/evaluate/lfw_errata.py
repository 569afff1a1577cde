"""LFW's known label errors: one person filed under two names.

An identity split in two makes its own images "strangers" to each other in an open-set
protocol: the non-mated probe that comes closest to the gallery is then the same person, and at
FPIR 0.001 (2 or 3 allowed false positives out of ~2,000) those few probes set the threshold. A
model good enough to see through the split is charged for it. The pairs below were found on
lfw-dev by hand (identical photos under two names, or one name spelt two ways) and are merged
into one identity where an evaluation asks for it (``evaluate identify --merge-label-errors``,
the scoring model's calibration, the impostor table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

SAME_PERSON: dict[tuple[str, str], str] = {
    ("Bart_Hendricks", "Ricky_Ray"): "identical photo under two names",
    ("Carlos_Beltran", "Raul_Ibanez"): "identical photo under two names",
    ("Gabrielle_Rose", "Martha_Bowen"): "identical photo under two names",
    ("Andrew_Caldecott", "Andrew_Gilligan"): "identical photo under two names",
    ("Noer_Moeis", "Noer_Muis"): "one person, two spellings",
    ("Wang_Yingfan", "Yingfan_Wang"): "one person, two spellings",
    ("Chyung_Dai-chul", "Dai_Chul_Chyung"): "one person, two spellings",
    ("Hasan_Wirayuda", "Hassan_Wirajuda"): "one person, two spellings",
}


def merge_same_person(identities: dict[str, list[Path]], pairs: Iterable[tuple[str, str]] | None = None
                      ) -> tuple[dict[str, list[Path]], list[list[str]]]:
    """``identities`` with each pair of names (default: the known pairs, ``SAME_PERSON``) present
    merged into one identity under the first name (chains follow: (a, b) and (b, c) make one), the
    first name's images first, the others' after; and the pairs merged. The input is not changed."""
    parent = {n: n for n in identities}

    def root(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    merged = []
    for a, b in (SAME_PERSON if pairs is None else pairs):
        if a in parent and b in parent and root(a) != root(b):
            parent[root(b)] = root(a)
            merged.append([a, b])
    out: dict[str, list[Path]] = {}
    for n in identities:  # in the input's order
        out.setdefault(root(n), [])
    for n in sorted(identities, key=lambda x: root(x) != x):  # the kept name's images before those merged into it
        out[root(n)].extend(identities[n])
    return out, merged
