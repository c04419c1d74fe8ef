"""``spdesk.core.assessment.assess``: a time-boxed run still ends with a table."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ssimulacra2")
pytest.importorskip("flip_evaluator")


def _photos(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (72, 72, 3), dtype=np.uint8) for _ in range(count)]


def _brighter(photo: np.ndarray, index: int) -> np.ndarray:
    return np.clip(photo.astype(int) + 4, 0, 255).astype(np.uint8)


def test_a_passed_deadline_reports_the_photos_measured_so_far(tmp_path: Path) -> None:
    from tiny_sd import save_tiny_vae

    from spdesk.core.assessment import assess
    from spdesk.core.encoders import load_encoder

    encoder = load_encoder(str(save_tiny_vae(tmp_path / "vae")), "cpu")
    photos = _photos(3)
    whole = assess(photos, {"brighter": _brighter}, encoder, eps=8, sizes=(64,))
    cut = assess(
        photos, {"brighter": _brighter}, encoder, eps=8, sizes=(64,), deadline=time.monotonic()
    )
    assert (whole.photos, cut.photos) == (3, 1)  # the first photo is always measured
    first = assess(photos[:1], {"brighter": _brighter}, encoder, eps=8, sizes=(64,))
    assert cut.to_dict()["candidates"] == first.to_dict()["candidates"]


def test_runs_on_the_same_photos_merge_into_one_table_and_others_are_refused(
    tmp_path: Path,
) -> None:
    import json

    from tiny_sd import save_tiny_vae

    from spdesk.core.assessment import Assessment, assess
    from spdesk.core.encoders import load_encoder

    encoder = load_encoder(str(save_tiny_vae(tmp_path / "vae")), "cpu")
    photos = _photos(2)

    def darker(photo: np.ndarray, index: int) -> np.ndarray:
        return np.clip(photo.astype(int) - 4, 0, 255).astype(np.uint8)

    first = assess(photos, {"brighter": _brighter}, encoder, eps=8, sizes=(64,))
    second = assess(photos, {"darker": darker}, encoder, eps=8, sizes=(64,))
    both = assess(photos, {"brighter": _brighter, "darker": darker}, encoder, eps=8, sizes=(64,))
    saved = [Assessment.from_dict(json.loads(json.dumps(r.to_dict()))) for r in (first, second)]
    merged = saved[0].merged(saved[1])
    assert merged.to_dict()["gains"] == both.to_dict()["gains"]
    assert merged.format() == both.format()
    other_photos = assess(_photos(3)[1:], {"darker": darker}, encoder, eps=8, sizes=(64,))
    with pytest.raises(ValueError, match="baselines differ"):
        first.merged(other_photos)
    with pytest.raises(ValueError, match="same encoder, photos"):
        first.merged(assess(photos[:1], {"darker": darker}, encoder, eps=8, sizes=(64,)))
