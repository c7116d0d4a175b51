"""`stepaudio audio-info FILE`: decode any supported audio and report it; optionally convert it."""

from __future__ import annotations

import argparse

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="audio file (wav, flac, ogg, opus, mp3)")
    parser.add_argument("--sample-rate", type=int, default=None, help="resample to this rate")
    parser.add_argument("--normalize", action="store_true", help="peak-normalise as the reference does")
    parser.add_argument("--trim", action="store_true", help="trim silence as for a TTS voice prompt")
    parser.add_argument("--output", "-o", default=None, help="write the processed audio here")


def run(args: argparse.Namespace) -> int:
    from stepaudio.audio.io import load_audio, peak_normalize, save_audio
    from stepaudio.audio.trim import trim_silence

    audio = load_audio(args.path, sample_rate=args.sample_rate)
    samples = audio.samples
    if args.normalize:
        samples = peak_normalize(samples)
    if args.trim:
        samples = trim_silence(samples, audio.sample_rate)
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    print(f"path         {args.path}")
    print(f"sample rate  {audio.sample_rate} Hz")
    print(f"duration     {samples.size / audio.sample_rate:.3f} s ({samples.size} samples, mono)")
    print(f"peak         {peak:.4f}")
    print(f"rms          {20 * np.log10(max(rms, 1e-10)):.1f} dBFS")
    if args.output:
        print(f"written      {save_audio(args.output, samples, audio.sample_rate)}")
    return 0
