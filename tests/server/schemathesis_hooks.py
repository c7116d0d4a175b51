"""Schemathesis hooks for the server's schema: real audio where the schema asks for audio.

No JSON schema can say "a decodable audio file", so the schema names the media types of uploads (multipart
`encoding.contentType`) and a format of its own for base64 audio in chat messages (`audio-base64`); these
strategies give schemathesis short tones in those formats, so the requests it calls valid are. Loaded by the
schemathesis run in test_api_schema.py through SCHEMATHESIS_HOOKS.
"""

from __future__ import annotations

import base64
from typing import Any

import jsonschema_rs
import numpy as np
import schemathesis
from hypothesis import strategies as st

from stepaudio.audio.io import encode_audio
from stepaudio.server.api_schema import AUDIO_FORMAT

# 0.6-1.2 s: long enough for a cloned voice (>= 0.5 s), short enough for every duration limit of the test server.
CLIPS = ((0.6, 16000), (0.9, 22050), (1.2, 8000))
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
MEDIA_FORMATS = {"audio/wav": "wav", "audio/flac": "flac", "audio/mpeg": "mp3", "audio/ogg": "opus"}


def tone(seconds: float, rate: int, fmt: str) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return encode_audio((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, fmt)


for media_type, fmt in MEDIA_FORMATS.items():
    schemathesis.openapi.media_type(media_type, st.sampled_from([tone(s, r, fmt) for s, r in CLIPS]))

schemathesis.openapi.format(AUDIO_FORMAT, st.sampled_from(
    [base64.b64encode(tone(s, r, fmt)).decode() for s, r in CLIPS for fmt in ("wav", "flac")]))


@schemathesis.hook
def filter_failure(context: schemathesis.HookContext, failure: Any, case: schemathesis.Case, response: Any) -> bool:
    """Drop "schema-valid request rejected" only where the request was not schema-valid: schemathesis 4's coverage
    phase builds one multipart body per operation whose part types are registered above, and fills its required
    text fields with "" whatever their minLength or pattern (`_generate_multipart_body_from_custom_strategies` in
    schemathesis/specs/openapi/coverage/_operation.py). Every other failure stands."""
    if failure.code != "ST202" or case.media_type not in FORM_TYPES or not isinstance(case.body, dict):
        return True
    body = next(b for b in case.operation.body if b.media_type == case.media_type)
    schema = body.resolved_schema
    form = {name: "" if isinstance(value, bytes) else value for name, value in case.body.items()}
    return schema is None or jsonschema_rs.validator_for(schema).is_valid(form)
