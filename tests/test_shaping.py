"""The perceptual budget: bound, flat vs textured areas, no colour on grey photos."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch

from spdesk.core.shaping import (
    MAX_WINDOW,
    Shaping,
    colour_allowance,
    compose_delta,
    texture_budget,
)


def _photos() -> torch.Tensor:
    torch.manual_seed(0)
    flat = torch.full((1, 3, 32, 32), 0.5)
    textured = torch.rand(1, 3, 32, 32)
    return torch.cat([flat, textured])


def test_delta_never_exceeds_eps_times_budget_even_at_extreme_raw_values() -> None:
    images = _photos()
    shaping = Shaping(floor=0.2, colour=0.3)
    budget = texture_budget(images, shaping) * 8 / 255
    for raw in (
        torch.ones(2, 3, 32, 32),
        -torch.ones(2, 3, 32, 32),
        torch.rand(2, 3, 32, 32) * 2 - 1,
    ):
        delta = compose_delta(raw, images, 8, shaping)
        assert delta.abs().max() <= 8 / 255 + 1e-7
        assert (delta.abs() <= budget + 1e-7).all()


def test_flat_areas_get_the_floor_and_texture_the_full_budget() -> None:
    budget = texture_budget(_photos(), Shaping(floor=0.25))
    assert budget[0].max() == pytest.approx(0.25)
    assert budget[1].mean() > 0.9


def test_a_ceiling_scales_every_pixels_budget_and_bounds_the_delta_below_eps() -> None:
    images = _photos()
    full = texture_budget(images, Shaping(floor=0.25))
    lower = texture_budget(images, Shaping(floor=0.25, ceiling=0.75))
    torch.testing.assert_close(lower, 0.75 * full)
    delta = compose_delta(torch.ones(2, 3, 32, 32), images, 8, Shaping(ceiling=0.75))
    assert delta.abs().max() == pytest.approx(0.75 * 8 / 255)


def test_grey_photo_receives_no_colour() -> None:
    grey = torch.rand(1, 1, 24, 24).expand(1, 3, 24, 24).contiguous()
    assert colour_allowance(grey).abs().max() == 0
    delta = compose_delta(torch.rand(1, 3, 24, 24) * 2 - 1, grey, 8, Shaping(colour=0.5))
    assert torch.equal(delta[:, 0], delta[:, 1]) and torch.equal(delta[:, 1], delta[:, 2])


def test_colourful_photo_may_receive_colour() -> None:
    red = torch.zeros(1, 3, 16, 16)
    red[:, 0] = 0.9
    raw = torch.zeros(1, 3, 16, 16)
    raw[:, 1] = 1.0  # red-green only
    delta = compose_delta(raw, red, 8, Shaping(colour=0.3))
    assert delta[:, 0].mean() > 0 > delta[:, 1].mean()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"floor": -0.1},
        {"floor": 1.5},
        {"window": 4},
        {"colour": 1.0},
        {"texture_ref": 0},
        {"ceiling": 0},
        {"ceiling": 1.1},
    ],
)
def test_bad_shaping_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Shaping(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("window", [7.5, 7.0, True])
def test_a_window_that_is_not_a_whole_number_of_pixels_is_refused(window: object) -> None:
    # 7.5 from a generator's header reached torch's pad() and ended in "unexpected error".
    with pytest.raises(ValueError, match="window"):
        Shaping(window=window)  # type: ignore[arg-type]


def test_a_window_wider_than_spdesk_measures_over_is_refused() -> None:
    # 100001 from a generator's header made spdesk try to allocate 40 GB.
    assert Shaping(window=MAX_WINDOW).window == MAX_WINDOW
    for window in (MAX_WINDOW + 2, 100001):
        with pytest.raises(ValueError, match=f"window .*got {window}"):
            Shaping(window=window)


@pytest.mark.parametrize("name", [f.name for f in fields(Shaping) if f.name != "window"])
@pytest.mark.parametrize("value", [math.nan, math.inf, "0.5"])
def test_a_shaping_number_that_is_not_a_finite_number_is_refused(name: str, value: object) -> None:
    # A NaN texture_ref passed every range check (NaN <= 0 is False) and made every photo fail.
    with pytest.raises(ValueError, match=name):
        Shaping(**{name: value})  # type: ignore[arg-type]
