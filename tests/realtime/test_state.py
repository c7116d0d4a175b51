"""The phase is derived from the state, never stored: check every combination that names one."""

from __future__ import annotations

from dataclasses import replace

from stepaudio.realtime.playback import Playback
from stepaudio.realtime.speculative import Speculation
from stepaudio.realtime.state import ControllerConfig, ControllerState, Phase, Response
from stepaudio.realtime.turns import TurnState


def test_phase_of_each_state() -> None:
    idle = ControllerState()
    speaking_user = replace(idle, turns=TurnState(in_speech=True))
    speculative = Response("r", "i", (), Speculation("r", 0.0), speculative=True)
    committed = Response("r", "i", ())
    playing = replace(committed, playback=Playback().sent(100, "hi", 0.0))
    assert idle.phase is Phase.LISTENING
    assert speaking_user.phase is Phase.USER_SPEAKING
    assert replace(speaking_user, interrupted=True).phase is Phase.INTERRUPTED
    assert replace(speaking_user, response=speculative).phase is Phase.RESPONDING
    assert replace(idle, response=committed).phase is Phase.RESPONDING
    assert replace(idle, response=playing).phase is Phase.SPEAKING
    assert replace(speaking_user, response=playing).phase is Phase.SPEAKING  # interrupt_response off


def test_config_defaults() -> None:
    config = ControllerConfig()
    assert config.audio_out and config.turn_detection is not None
    assert not ControllerConfig(modalities=("text",)).audio_out
