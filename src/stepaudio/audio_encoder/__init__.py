"""Step-Audio 2's continuous audio input: the 128-bin front end in 25 s pieces, the Whisper-style encoder and
adaptor (`encoder.*`, `adapter.*` of a release checkpoint), and the splice of their rows into the prompt."""

from stepaudio.audio_encoder.config import AudioEncoderConfig
from stepaudio.audio_encoder.frontend import audio_mels, log_mel, pad_mels, placeholder_count, split_pieces
from stepaudio.audio_encoder.loading import expected_shapes, load_audio_encoder
from stepaudio.audio_encoder.model import AudioEncoder
from stepaudio.audio_encoder.splice import splice_audio

__all__ = [
    "AudioEncoder",
    "AudioEncoderConfig",
    "audio_mels",
    "expected_shapes",
    "load_audio_encoder",
    "log_mel",
    "pad_mels",
    "placeholder_count",
    "splice_audio",
    "split_pieces",
]
