"""Playback estimate and the transcript of what was heard."""

from __future__ import annotations

import pytest

from stepaudio.realtime.playback import Playback


def test_real_time_estimate_with_queued_chunks() -> None:
    playback = Playback().sent(1000, "First one.", now=10.0).sent(500, "", now=10.2)
    assert len(playback.schedule) == 1  # queued behind the first: one continuous run
    assert playback.played_ms(10.0) == 0
    assert playback.played_ms(10.7) == pytest.approx(700)
    assert playback.played_ms(12.0) == 1500
    assert playback.finished(11.5) and not playback.finished(11.4)


def test_gaps_when_generation_is_slower_than_real_time() -> None:
    playback = Playback().sent(300, "a", now=0.0).sent(300, "b", now=1.0)
    assert playback.played_ms(0.9) == pytest.approx(300)
    assert playback.played_ms(1.1) == pytest.approx(400)


def test_reported_progress_wins_and_is_capped() -> None:
    playback = Playback().sent(1000, "x", now=0.0).reported(100, now=0.5)
    assert playback.played_ms(0.6) == pytest.approx(200)
    assert playback.reported(5000, now=0.5).played_ms(0.5) == 1000


def test_text_until_cuts_whole_segments_then_words() -> None:
    playback = Playback().sent(1000, "Hello there.", 0.0).sent(1000, "How are you doing?", 0.0)
    assert playback.transcript == "Hello there. How are you doing?"
    assert playback.text_until(0) == ""
    assert playback.text_until(999.9999999) == "Hello there."
    assert playback.text_until(1500) == "Hello there. How are"
    assert playback.text_until(5000) == "Hello there. How are you doing?"


def test_text_until_cuts_unspaced_text_by_characters() -> None:
    playback = Playback().sent(1000, "你好世界", 0.0).sent(400, "", 0.0)  # second chunk extends the sentence
    assert playback.text_until(700) == "你好"
    assert playback.text_until(1400) == "你好世界"
