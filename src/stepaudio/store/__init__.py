"""Registered voices (clones from a prompt wav and its transcript), kept in SQLite with files beside it."""

from stepaudio.store.voices import (
    StoredVoice,
    VoiceExistsError,
    VoiceNotFoundError,
    VoiceStore,
    VoiceStoreError,
    is_voice_id,
)

__all__ = ["StoredVoice", "VoiceExistsError", "VoiceNotFoundError", "VoiceStore", "VoiceStoreError", "is_voice_id"]
