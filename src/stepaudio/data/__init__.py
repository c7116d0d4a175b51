"""The generative data engine: synthesise labelled speech with any engine into a resumable TTS dataset."""
