"""`stepaudio eval chat`: the lite engine (SmolLM2) answers a local conversation, the project's own server with
SmolLM2 judges it over HTTP on loopback, and the JSON and Markdown reports carry provenance; bad input is a
clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepaudio.cli.main import main


def test_cli_writes_json_and_markdown_with_provenance(lite_server_url: str, conversations_file: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["eval", "chat", "--conversations", str(conversations_file), "--input", "text", "--engine", "lite",
                 "-O", "chat_model=smollm2", "--judge-url", lite_server_url, "--judge-model", "lite-chat",
                 "--judge-max-tokens", "32", "--max-new-tokens", "16", "--category", "reasoning", "--out", str(out)])
    assert code == 0
    payload = json.loads((out / "chat.json").read_text())
    assert [r["metric"] for r in payload["headline"]] == ["factuality", "relevance", "chat score"]
    assert all(r["paper"] is None for r in payload["headline"])  # local data: no published number applies
    assert len(payload["rows"]) == 1 and payload["rows"][0]["conversation_id"] == "math"
    chat_model = next(m for m in payload["provenance"]["models"] if m["role"] == "chat")
    assert chat_model["files"][0]["sha256"].startswith("b179c952")  # SmolLM2's verified GGUF
    assert len(payload["provenance"]["judge_prompt_sha256"]) == 64 and "api_key" not in json.dumps(payload)
    md = (out / "chat.md").read_text()
    assert "| factuality |" in md and "## By category" in md and "### Provenance" in md


def test_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{nope")
    assert main(["eval", "chat", "--conversations", str(bad), "--no-judge"]) == 2
    assert "line 1: not valid JSON" in capsys.readouterr().err
    assert main(["eval", "chat", "--conversations", str(bad)]) == 2
    assert "--judge-url is required" in capsys.readouterr().err
