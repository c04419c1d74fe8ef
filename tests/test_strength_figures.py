"""The words under the strength buttons come from measured figures, per mode, and never say
that more strength is less visible."""

from __future__ import annotations

import pytest

from spdesk.core import strength_figures
from spdesk.core.strength_figures import (
    SSIMULACRA2,
    estimated_ssimulacra2,
    visibility_tip,
    visibility_words,
)


@pytest.mark.parametrize("family", ["photo", "universal"])
def test_more_strength_is_never_less_visible(family: str) -> None:
    scores = [estimated_ssimulacra2(family, eps / 2) for eps in range(1, 129)]
    assert scores == sorted(scores, reverse=True)
    for eps, score in SSIMULACRA2[family].items():  # the presets are the measured figures
        assert estimated_ssimulacra2(family, eps) == score
        assert "measured" in visibility_tip(family, eps)
    assert "estimated" in visibility_tip(family, 6.0)


def test_between_presets_the_figure_is_interpolated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SSIMULACRA2, "test", {4.0: 80.0, 8.0: 60.0, 16.0: 20.0})
    assert estimated_ssimulacra2("test", 6.0) == pytest.approx(70.0)
    assert estimated_ssimulacra2("test", 12.0) == pytest.approx(40.0)
    assert estimated_ssimulacra2("test", 2.0) == 80.0 and estimated_ssimulacra2("test", 64) == 20


@pytest.mark.parametrize(
    ("score", "words"),
    [
        (80.0, "Hard to see: less visible than a JPEG re-save at quality 75."),
        (70.0, "A faint grain at 100% zoom, like a JPEG re-save at quality 50-75."),
        (50.0, "Visible at 100% zoom on smooth areas, more than a JPEG re-save at quality 50."),
        (30.0, "Plainly visible on smooth areas at 100% zoom."),
    ],
)
def test_the_words_place_the_figure_between_jpeg_re_saves(
    score: float, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(SSIMULACRA2, "test", {8.0: score})
    assert visibility_words("test", 8.0) == words
    assert strength_figures.JPEG_Q50 < strength_figures.JPEG_Q75


def test_the_universal_pattern_reads_as_more_visible_than_each_photos_own() -> None:
    for eps in SSIMULACRA2["photo"]:
        assert estimated_ssimulacra2("universal", eps) < estimated_ssimulacra2("photo", eps)
    assert visibility_words("universal", 8.0) != visibility_words("photo", 8.0)
