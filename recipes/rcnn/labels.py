"""Class names of a detector's outputs (ILSVRC's 'n01234567 name' lines shown as names)."""
from __future__ import annotations

import re
from typing import List



_WNID = re.compile(r"^n\d{8}\s+")


def read_labels(path: str) -> List[str]:
    """Class names, one per line (blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def display_name(label: str) -> str:
    """``"n02121808 domestic cat"`` -> ``"domestic cat"`` (other labels unchanged)."""
    return _WNID.sub("", label).strip()
