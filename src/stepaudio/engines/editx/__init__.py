"""Step-Audio-EditX: zero-shot voice cloning and iterative speech editing (emotion, style, paralinguistics, speed,
denoise, silence removal) with a Step1 LM over the v1 dual-codebook tokens and a 24 kHz CosyVoice2-style decoder."""
