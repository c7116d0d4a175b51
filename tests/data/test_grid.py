"""The instruction grid: friendly names to Step tags, music first, 'none' axes, unknown values refused."""

from __future__ import annotations

import pytest

from stepaudio.data.grid import GridSpec, expand_grid, parse_axis
from stepaudio.errors import TagError


def test_axes_parse_from_comma_lists_and_repeats() -> None:
    assert parse_axis(["happy, sad", "none"]) == ("happy", "sad", "none")
    assert parse_axis("rap") == ("rap",) and parse_axis(None) == ()


def test_grid_is_the_product_with_tags_in_step_order() -> None:
    cells = expand_grid(GridSpec(voices=("Tingting", "none"), emotions=("none", "happy"),
                                 dialects=("sichuanese",), speeds=("slow",), styles=("rap", "none")))
    assert len(cells) == 2 * 2 * 1 * 1 * 2
    first = cells[0]
    assert first.voice == "Tingting" and first.tags == ("RAP", "四川话", "慢速1")
    assert ("RAP", "高兴1", "四川话", "慢速1") in {c.tags for c in cells}
    assert {c.voice_label for c in cells} == {"Tingting", "default"}
    instructions = first.instructions()
    assert instructions.strict and instructions.tags == first.tags


def test_an_empty_grid_is_one_plain_cell_and_duplicates_collapse() -> None:
    assert [(c.voice, c.tags) for c in expand_grid(GridSpec())] == [(None, ())]
    cells = expand_grid(GridSpec(emotions=("happy", "高兴1", "happy1"), voices=("a", "a")))
    assert [(c.voice, c.tags) for c in cells] == [("a", ("高兴1",))]


def test_unknown_values_name_the_family_and_choices() -> None:
    with pytest.raises(TagError, match=r"grid: unknown emotion 'joyful'.*happy"):
        expand_grid(GridSpec(emotions=("joyful",)))
    with pytest.raises(TagError, match=r"unknown speed '1\.2'"):
        expand_grid(GridSpec(speeds=("1.2",)))
