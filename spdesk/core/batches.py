"""Batches of photos that can share one pass: the same size, in order, a bounded number at once."""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def batches_by_key(keys: Sequence[Hashable], batch_size: int) -> list[list[int]]:
    """Indices of the items with equal ``keys`` (e.g. their sizes), in chunks of ``batch_size``
    (at least 1), each chunk in input order; chunks come in order of each key's first item."""
    by_key: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        by_key.setdefault(key, []).append(index)
    size = max(1, batch_size)
    return [
        members[start : start + size]
        for members in by_key.values()
        for start in range(0, len(members), size)
    ]


def free_accelerator_memory() -> None:
    """Hand cached GPU memory back before a smaller batch is tried (no-op without CUDA)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
