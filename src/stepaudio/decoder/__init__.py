"""Speech decoders, one subpackage per family: cosyvoice1/ (Step-Audio v1, 22.05 kHz).

Shared by every family: CAM++ x-vectors (speaker.py), padding masks (masking.py) and position-seeded noise
(frame_noise.py).
"""
