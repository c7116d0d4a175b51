"""The typed errors and the helper that quotes a third-party error inside ours."""

from __future__ import annotations

import pytest

from stepaudio.errors import OptionError, StepAudioError, brief


def test_brief_keeps_the_first_sentence_of_a_long_third_party_message() -> None:
    torch_like = RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory. "
                              "This is an internal miniz error.\nIf you are seeing this error, ...")
    assert brief(torch_like) == "PytorchStreamReader failed reading zip archive: failed finding central directory"
    assert brief(ValueError("\n  second line only.\n")) == "second line only"
    assert brief(KeyError()) == "KeyError"


def test_an_option_error_is_a_value_error_and_one_of_ours() -> None:
    with pytest.raises(ValueError, match="nope"):
        raise OptionError("nope")
    assert issubclass(OptionError, StepAudioError)
