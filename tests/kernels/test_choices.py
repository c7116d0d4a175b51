"""The measured-choice machinery: the choice rules on given timings, and the cache file keyed by machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stepaudio.kernels.choices import (
    BF16_QUESTION,
    ChoiceCache,
    MachineKey,
    Measured,
    bf16_product_kernel,
    cache_path,
    cheapest_request,
    cheapest_with_lossy,
    choose,
    fastest,
    machine_key,
    time_calls,
)

KEY = MachineKey(cpu="Test CPU", flags="abc", torch="2.0", threads=2)


def test_fastest_keeps_the_first_candidate_unless_another_beats_it_by_the_margin() -> None:
    assert fastest({"fp32": 1.0, "bf16": 0.97}) == "fp32"  # 3 % is noise
    assert fastest({"fp32": 1.0, "bf16": 0.5, "fp16": 0.7}) == "bf16"
    assert fastest({"fp32": 1.0, "bf16": 2.0}) == "fp32"
    assert fastest({"fp32": 1.0, "bf16": 0.97}, margin=0.0) == "bf16"
    with pytest.raises(ValueError):
        fastest({})


def test_cheapest_request_weighs_prefill_against_decode_steps() -> None:
    prefill = {"bf16": 1.0, "fp16": 0.2}  # fp16's prefill is 5x faster
    decode = {"bf16": 0.010, "fp16": 0.012}  # bf16's decode is 20 % faster
    assert cheapest_request(prefill, decode, decode_calls=1000) == "bf16"  # 11 s against 12.2 s
    assert cheapest_request(prefill, decode, decode_calls=10) == "fp16"  # 1.1 s against 0.32 s
    # a candidate timed for one use only is not a candidate
    assert cheapest_request({"bf16": 1.0, "x": 0.0}, {"bf16": 0.01}, decode_calls=10) == "bf16"


def test_time_calls_runs_every_candidate_and_reports_medians() -> None:
    counts = {"a": 0, "b": 0}

    def call(name: str) -> None:
        counts[name] += 1

    times = time_calls({"a": lambda: call("a"), "b": lambda: call("b")}, repeats=4)
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
    assert counts == {"a": 5, "b": 5}  # one warm-up and four rounds each


def test_choose_measures_once_then_reads_the_cache(tmp_path: Path) -> None:
    cache = ChoiceCache(tmp_path / "choices.json", KEY)
    calls = []

    def measure() -> Measured:
        calls.append(1)
        return Measured("bf16", {"prefill": {"fp32": 2.0, "bf16": 1.0}})

    first = choose("q/1", measure, cache=cache, remeasure=False)
    again = choose("q/1", measure, cache=ChoiceCache(tmp_path / "choices.json", KEY), remeasure=False)
    assert first.choice == again.choice == "bf16" and len(calls) == 1
    assert again.timings == {"prefill": {"fp32": 2.0, "bf16": 1.0}} and again.measured_at == first.measured_at
    choose("q/1", measure, cache=cache, remeasure=True)
    assert len(calls) == 2


def test_remeasure_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ChoiceCache(tmp_path / "choices.json", KEY)
    cache.put("q/1", Measured("old", {"prefill": {"old": 1.0}}))
    monkeypatch.setenv("STEPAUDIO_REMEASURE", "1")
    assert choose("q/1", lambda: Measured("new", {"prefill": {"new": 1.0}}), cache=cache).choice == "new"
    monkeypatch.setenv("STEPAUDIO_REMEASURE", "0")
    assert choose("q/1", lambda: Measured("newer", {}), cache=cache).choice == "new"


def test_another_machine_key_does_not_see_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "choices.json"
    ChoiceCache(path, KEY).put("q/1", Measured("bf16", {"decode": {"bf16": 1.0}}))
    for other in (MachineKey("Other CPU", "abc", "2.0", 2), MachineKey("Test CPU", "abd", "2.0", 2),
                  MachineKey("Test CPU", "abc", "2.1", 2), MachineKey("Test CPU", "abc", "2.0", 1)):
        assert ChoiceCache(path, other).get("q/1") is None
    # both machines' answers are kept side by side
    ChoiceCache(path, MachineKey("Test CPU", "abc", "2.0", 1)).put("q/1", Measured("fp32", {}))
    assert ChoiceCache(path, KEY).get("q/1") == Measured("bf16", {"decode": {"bf16": 1.0}})
    assert len(json.loads(path.read_text())["machines"]) == 2


@pytest.mark.parametrize("content", ["not json {", json.dumps([1, 2]), json.dumps({"version": 99, "machines": {}}),
                                     json.dumps({"version": 1, "machines": {"k": "nope"}})])
def test_a_bad_cache_file_is_ignored_with_a_warning_and_replaced(tmp_path: Path, content: str) -> None:
    path = tmp_path / "choices.json"
    path.write_text(content)
    cache = ChoiceCache(path, KEY)
    with pytest.warns(UserWarning, match="ignoring"):
        assert cache.get("q/1") is None
    with pytest.warns(UserWarning, match="ignoring"):
        cache.put("q/1", Measured("fp32", {}))
    assert ChoiceCache(path, KEY).get("q/1") == Measured("fp32", {})


def test_a_malformed_entry_is_ignored_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "choices.json"
    path.write_text(json.dumps({"version": 1, "machines": {KEY.text(): {"key": {}, "choices": {"q/1": {"x": 1}}}}}))
    with pytest.warns(UserWarning, match="malformed"):
        assert ChoiceCache(path, KEY).get("q/1") is None


def test_cache_location_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPAUDIO_CACHE", str(tmp_path))
    assert cache_path() == tmp_path / "kernel-choices.json"
    monkeypatch.delenv("STEPAUDIO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_path() == tmp_path / "xdg" / "stepaudio" / "kernel-choices.json"


def test_machine_key_names_this_torch_and_thread_count() -> None:
    key = machine_key()
    assert key.torch == torch.__version__ and key.threads == torch.get_num_threads() and key.cpu


def test_bf16_product_kernel_reads_a_cached_answer(tmp_path: Path) -> None:
    cache = ChoiceCache(tmp_path / "choices.json", KEY)
    cache.put(BF16_QUESTION, Measured("fp16", {"prefill": {"bf16": 1.0, "fp16": 0.5}}))
    assert bf16_product_kernel(cache=cache).choice == "fp16"


@pytest.mark.slow
def test_bf16_product_kernel_measures_every_available_kernel(tmp_path: Path) -> None:
    from stepaudio.hardware import onednn_can_pack

    measured = bf16_product_kernel(cache=ChoiceCache(tmp_path / "c.json", KEY), remeasure=True)
    from stepaudio.kernels.packed import fbgemm_available

    names = {"bf16", "fp16"} | ({"bf16-packed"} if onednn_can_pack(torch.bfloat16) else set())
    names |= {"int8"} if fbgemm_available() else set()
    assert set(measured.timings["prefill"]) == set(measured.timings["decode"]) == names
    assert measured.choice in names


def test_a_lossy_kernel_needs_the_lossy_margin_over_the_best_exact_one() -> None:
    prefill = {"bf16": 0.2, "fp16": 0.15, "int8": 0.05}
    exact = ("bf16", "fp16")
    # requests: bf16 0.2 + 10 x 0.1 = 1.2, fp16 1.15 (not 5 % cheaper), int8 0.05 + 10 x its decode
    assert cheapest_with_lossy(prefill, {"bf16": 0.1, "fp16": 0.1, "int8": 0.08}, 10, exact) == "bf16"  # 0.85
    assert cheapest_with_lossy(prefill, {"bf16": 0.1, "fp16": 0.1, "int8": 0.05}, 10, exact) == "int8"  # 0.55
    assert cheapest_with_lossy(prefill, {"bf16": 0.1, "fp16": 0.1, "int8": 0.05}, 10, exact, 0.7) == "bf16"
    # without a lossy candidate it is the exact rule
    assert cheapest_with_lossy({"bf16": 1.0, "fp16": 0.5}, {"bf16": 0.1, "fp16": 0.1}, 1, exact) == "fp16"
