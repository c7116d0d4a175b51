"""The web page end to end in headless Chromium (Debian's chromium driven by Playwright), its microphone fed from
a wav file: speak, see both transcripts, hear the reply; talk over a long reply (barge-in); the TTS playground
and voice cloning. Marked `browser`; skips when chromium or playwright is missing."""

from __future__ import annotations

import base64
import dataclasses
import http.server
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr

from stepaudio.audio.io import Audio
from stepaudio.engines.base import Abilities, Segment, Transcript
from stepaudio.server.realtime_ws import RealtimeLimits, realtime_mount
from stepaudio.server.settings import ServerSettings
from stepaudio.testing.loopback import serve_on_loopback

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("websockets", reason="uvicorn needs the websockets package for WebSockets")

QUESTION = Path(__file__).resolve().parents[2] / "examples" / "question_capital.wav"
FAKE_RATE = 48000  # what Chromium's fake capture device runs at


def fake_mic(path: Path, parts: list[tuple[str, float]]) -> Path:
    """A 48 kHz PCM16 wav of ('silence', seconds) and ('question', repeats) parts, for the fake microphone."""
    speech, rate = sf.read(QUESTION, dtype="float32")
    speech = soxr.resample(speech, rate, FAKE_RATE)
    pieces = [np.zeros(int(value * FAKE_RATE), np.float32) if kind == "silence" else speech for kind, value in parts]
    sf.write(path, np.concatenate(pieces), FAKE_RATE, subtype="PCM_16")
    return path


def silero_or_energy() -> Any:
    try:
        from stepaudio.audio.vad import silero_frame_vad

        return silero_frame_vad()
    except ImportError:
        return lambda frame: float(np.sqrt(np.mean(np.square(frame))) > 0.02)


class StoryTranscriber:
    """Hears a long request, so that the echoed reply lasts long enough to be talked over."""

    def transcribe(self, audio: Audio, language: str | None = None) -> Transcript:
        text = " ".join(f"This is sentence number {n} of a long story." for n in range(1, 13))
        return Transcript(text=text, language="en", duration=audio.duration,
                          segments=(Segment(0.0, audio.duration, text),))


@pytest.fixture(scope="module")
def page_server(server_factory: Any, make_engine: Any) -> Any:
    return server_factory(ServerSettings(max_voice_seconds=5.0),
                          mount_realtime=realtime_mount(RealtimeLimits(), silero_or_energy))


def launch(playwright: Any, wav: Path, *extra: str) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop", "--autoplay-policy=no-user-gesture-required",
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-dev-shm-usage", *extra])


@pytest.fixture
def open_page(tmp_path: Path) -> Iterator[Any]:
    """`open_page(url, mic_parts)`: a page in a fresh headless Chromium whose microphone plays `mic_parts`."""
    with sync_api.sync_playwright() as playwright:
        browsers: list[Any] = []

        def make(url: str, parts: list[tuple[str, float]]) -> Any:
            browser = launch(playwright, fake_mic(tmp_path / f"mic{len(browsers)}.wav", parts))
            browsers.append(browser)
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.errors = errors
            page.goto(url)
            page.wait_for_function("document.querySelector('#health').classList.contains('ok')", timeout=15000)
            return page

        yield make
        for browser in browsers:
            browser.close()


def talk_stats(page: Any) -> dict[str, Any]:
    return page.evaluate("() => window.stepaudioTalk.stats")


@pytest.mark.parametrize("query", ["", "?native"])  # a 24 kHz audio context, or the device's rate + resampling
def test_speak_and_hear_the_reply(page_server: Any, open_page: Any, query: str) -> None:
    page = open_page(page_server.url + "/" + query, [("silence", 1.0), ("question", 1), ("silence", 4.0)])
    page.click("#talk-button")
    page.wait_for_function("() => window.stepaudioTalk && window.stepaudioTalk.stats.assistantTranscripts.length"
                           " && window.stepaudioTalk.stats.played > 0", timeout=30000)
    stats = talk_stats(page)
    assert stats["errors"] == [] and page.errors == []
    assert (stats["contextRate"] == 24000) == (query == "")
    seconds = float(stats["userTranscripts"][0].split()[1])  # the tiny transcriber reports what it heard
    assert 1.5 <= seconds <= 3.5  # the 1.8 s question with VAD padding
    assert stats["assistantTranscripts"][0] == f"You said: {stats['userTranscripts'][0]}."
    assert stats["audioSamples"] > 0.2 * 24000  # the reply tone, at 24 kHz
    assert page.inner_text("#transcript .msg.user .text") == stats["userTranscripts"][0]
    assert page.inner_text("#transcript .msg.assistant .text") == stats["assistantTranscripts"][0]
    if not query and os.environ.get("STEPAUDIO_SCREENSHOT"):  # e.g. /tmp/page.png, to look at the page
        page.screenshot(path=os.environ["STEPAUDIO_SCREENSHOT"], full_page=True)
    page.click("#talk-button")  # stop: the connection closes and the server session ends
    endpoint = page_server.app.state.realtime
    page.wait_for_function("() => document.querySelector('#talk-button').textContent === 'Start talking'")
    for _ in range(100):
        if endpoint.active == 0:
            break
        page.wait_for_timeout(50)
    assert endpoint.active == 0


def test_barge_in_stops_playback_and_reports_truncation(server_factory: Any, make_engine: Any,
                                                        open_page: Any) -> None:
    engine = replace(make_engine(synth_delay=0.1), transcriber=StoryTranscriber())
    server = server_factory(ServerSettings(), engine, mount_realtime=realtime_mount(vad_factory=silero_or_energy))
    # ask, wait while the ~6 s reply starts playing, then talk over it
    page = open_page(server.url + "/", [("silence", 1.0), ("question", 1), ("silence", 3.0), ("question", 1),
                                        ("silence", 3.0)])
    page.click("#talk-button")
    page.wait_for_function("() => window.stepaudioTalk && window.stepaudioTalk.stats.truncates.length > 0",
                           timeout=40000)
    page.wait_for_selector("#transcript .msg.assistant.truncated", timeout=10000)
    truncate = talk_stats(page)["truncates"][0]
    assert 0 < truncate["audioEndMs"] <= truncate["sentMs"]
    assert truncate["audioEndMs"] < 6000  # cut well before the end of the story
    assert page.errors == []


def test_tts_playground_and_voice_cloning(page_server: Any, open_page: Any, tone: Any, tmp_path: Path) -> None:
    page = open_page(page_server.url + "/", [("silence", 1.0)])
    page.fill("#tts-text", "Hello there. How are you")
    page.select_option("#tts-voice", "low")
    page.fill("#tts-tags", "高兴1")
    page.click("#tts-form button[type=submit]")
    page.wait_for_selector("#tts-status.ok", timeout=15000)
    duration = page.evaluate("""() => new Promise((resolve) => {
        const audio = document.querySelector('#tts-audio');
        if (audio.readyState >= 1) resolve(audio.duration); else audio.onloadedmetadata = () => resolve(audio.duration);
    })""")
    assert duration == pytest.approx((len("Hello there") + len(" How are you")) * 0.01, abs=0.02)
    prompt = tmp_path / "prompt.wav"
    prompt.write_bytes(tone(1.0))
    page.fill("#clone-form input[name=name]", "Tony")
    page.set_input_files("#clone-form input[name=file]", str(prompt))
    page.fill("#clone-form input[name=transcript]", "a tone")
    page.check("#clone-form input[name=consent]")
    page.click("#clone-form button[type=submit]")
    page.wait_for_selector("#clone-status.ok", timeout=15000)
    page.wait_for_function("() => document.querySelector('#voice-list').textContent.includes('Tony')")
    assert "Tony (clone)" in page.inner_text("#tts-voice")
    assert page.errors == []


def test_the_page_shows_only_what_the_engine_can_do(server_factory: Any, make_engine: Any, open_page: Any) -> None:
    speaker = dataclasses.replace(make_engine(), chat=None, abilities=Abilities(clones_voices=False))
    page = open_page(server_factory(ServerSettings(), speaker).url + "/", [("silence", 1.0)])
    assert page.is_visible("#tts") and not page.is_visible("#clone") and not page.is_visible("#talk")
    assert not page.is_visible("#edit")  # the tiny engine does not edit speech
    assert "voice cloning" not in page.inner_text("#health")
    assert page.errors == []


EDITX_PROMPT_TEXT = "一段测试的语音。"
STEP_DURATIONS = """() => Promise.all([...document.querySelectorAll('#edit-steps audio')].map((audio) =>
    new Promise((resolve) => {
        if (audio.readyState >= 1) resolve(audio.duration); else audio.onloadedmetadata = () => resolve(audio.duration);
    })))"""


def test_edit_panel_chains_edits_with_undo_and_download(server_factory: Any, open_page: Any, conformance_dir: Path,
                                                        tmp_path_factory: pytest.TempPathFactory,
                                                        one_torch_thread: None) -> None:
    """The tiny EditX release folder behind the page: speak in a registered clone, take that speech into the edit
    panel, apply three edits (each step playable), undo one, download the latest."""
    from stepaudio.engines.registry import create_engine
    from stepaudio.testing.tiny_editx import write_tiny_editx_stack

    stack = write_tiny_editx_stack(tmp_path_factory.mktemp("editx"), conformance_dir / "text" / "tokenizer.model")
    server = server_factory(ServerSettings(max_voice_seconds=10.0),
                            create_engine("editx", model_path=str(stack), seed=0, max_new_tokens=40))
    voice = server.store.add("Tester", stack / "prompt.wav", EDITX_PROMPT_TEXT)
    page = open_page(server.url + "/", [("silence", 1.0)])
    assert page.is_visible("#edit") and "speech editing" in page.inner_text("#health")
    page.wait_for_function("() => document.querySelectorAll('#edit-type option').length === 6")
    page.set_input_files("#edit-file", str(stack / "prompt.wav"))  # an upload starts a chain
    page.wait_for_selector("#edit-steps li.current audio")
    assert page.get_attribute("#edit-steps li a", "download") == "prompt.wav"
    page.fill("#tts-text", "我觉得这个计划可行。")  # speech in the clone becomes a new chain's source
    page.select_option("#tts-voice", voice.id)
    page.click("#tts-form button[type=submit]")
    page.wait_for_selector("#tts-status.ok", timeout=30000)
    page.click("#edit-use-tts")
    page.wait_for_function("() => document.querySelector('#edit-text').value === '我觉得这个计划可行。'")
    assert page.locator("#edit-steps li").count() == 1
    edits = [("paralinguistic", None, "我觉得[Uhm]这个计划可行。"), ("emotion", "sad", None),
             ("style", "whisper", None)]
    for count, (kind, option, new_text) in enumerate(edits, start=2):
        page.select_option("#edit-type", kind)
        assert page.is_visible("#edit-option") is (option is not None)
        if option:
            page.select_option("#edit-option", option)
        if new_text:
            page.fill("#edit-new-text", new_text)
        page.click("#edit-apply")
        page.wait_for_function(f"() => document.querySelectorAll('#edit-steps li').length === {count}", timeout=30000)
        assert page.get_attribute("#edit-status", "class") == "status ok"
    titles = page.locator("#edit-steps .step-title").all_inner_texts()
    assert [t.split(" · ")[1].split(" — ")[0] for t in titles] == ["speech", "paralinguistic", "emotion: sad",
                                                                   "style: whisper"]
    assert titles[-1].endswith("“我觉得[Uhm]这个计划可行。”")  # the paralinguistic text carries on
    durations = page.evaluate(STEP_DURATIONS)
    assert len(durations) == 4 and all(d > 0 for d in durations)
    page.click("#edit-undo")
    page.wait_for_function("() => document.querySelectorAll('#edit-steps li').length === 3")
    assert page.input_value("#edit-text") == "我觉得[Uhm]这个计划可行。"
    latest = page.locator("#edit-steps li.current a")
    assert latest.get_attribute("download") == "edit-step2.wav"
    with page.expect_download() as download_info:
        latest.click()
    saved = download_info.value.path()
    info = sf.info(saved)
    assert info.samplerate == 24000 and info.frames / 24000 == pytest.approx(durations[2], abs=0.01)
    if os.environ.get("STEPAUDIO_SCREENSHOT_EDIT"):
        page.screenshot(path=os.environ["STEPAUDIO_SCREENSHOT_EDIT"], full_page=True)
    assert page.errors == []


def test_api_key_field(server_factory: Any, open_page: Any) -> None:
    server = server_factory(ServerSettings(api_key="s3cret"),
                            mount_realtime=realtime_mount(vad_factory=silero_or_energy))
    page = open_page(server.url + "/", [("silence", 3.0)])
    page.click("#tts-form button[type=submit]")
    page.wait_for_selector("#tts-status.bad")
    assert "API key" in page.inner_text("#tts-status")
    page.fill("#api-key", "s3cret")
    page.dispatch_event("#api-key", "change")
    page.click("#tts-form button[type=submit]")
    page.wait_for_selector("#tts-status.ok", timeout=15000)
    page.click("#talk-button")  # the WebSocket carries the key as a subprotocol
    page.wait_for_function("() => window.stepaudioTalk && window.stepaudioTalk.stats.events >= 2", timeout=15000)
    assert talk_stats(page)["errors"] == [] and page.errors == []
    assert page.evaluate("() => localStorage.getItem('stepaudio-api-key')") == "s3cret"


ATTACK_PAGE = """<!doctype html><title>another site</title><script>
// What any page the user opens could try against a keyless local server: a multipart POST (no CORS preflight)
// that plants a voice, and a WebSocket to the realtime API (never preflighted).
window.attack = async (target) => {
  const result = {};
  const form = new FormData();
  form.append("name", "planted");
  form.append("transcript", "planted words");
  form.append("file", await (await fetch("/tone.wav")).blob(), "tone.wav");
  try {
    await fetch(target + "/v1/voices", { method: "POST", body: form, mode: "no-cors" });
    result.post = "sent";
  } catch (error) {
    result.post = "failed: " + error;
  }
  result.socket = await new Promise((resolve) => {
    const socket = new WebSocket(target.replace("http:", "ws:") + "/v1/realtime");
    socket.onmessage = (event) => resolve("open: " + event.data.slice(0, 60));
    socket.onerror = () => resolve("refused");
    socket.onclose = (event) => resolve("closed " + event.code);
  });
  return result;
};
</script>"""


@pytest.fixture
def other_origin(tone: Any) -> Iterator[str]:
    """A second loopback server (another port: another origin) serving the attack page and a tone."""
    files = {"/": (ATTACK_PAGE.encode(), "text/html"), "/tone.wav": (tone(1.0), "audio/wav")}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, kind = files.get(self.path, (b"not found", "text/plain"))
            self.send_response(200 if self.path in files else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with serve_on_loopback(Handler) as url:
        yield url


def test_another_origin_can_neither_plant_a_voice_nor_open_the_realtime_socket(
        page_server: Any, other_origin: str, tone: Any, tmp_path: Path) -> None:
    port = page_server.port
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright, fake_mic(tmp_path / "mic.wav", [("silence", 1.0)]),
                         "--host-resolver-rules=MAP rebound.test 127.0.0.1")
        try:
            page = browser.new_page()
            page.goto(other_origin + "/")
            result = page.evaluate("(target) => window.attack(target)", page_server.url)
            assert result["post"] == "sent"  # the browser did send it: the server must refuse it
            assert not result["socket"].startswith("open"), result
            assert "planted" not in [v.name for v in page_server.store.list()]
            # DNS rebinding: the attacker's name now resolves to loopback, so its page and every request it
            # makes are same-origin under that name; the server answers no Host but its own names
            rebound = page.goto(f"http://rebound.test:{port}/")
            assert rebound is not None and rebound.status == 400
            assert "host_not_allowed" in rebound.text()
            # the server's own page, under either loopback name, still works
            for own in (page_server.url, f"http://localhost:{port}"):
                page.goto(own + "/")
                page.wait_for_function("document.querySelector('#health').classList.contains('ok')",
                                       timeout=15000)
                status = page.evaluate("""async (wav) => {
                    const bytes = Uint8Array.from(atob(wav), (c) => c.charCodeAt(0));
                    const form = new FormData();
                    form.append("name", "own page");
                    form.append("transcript", "a tone");
                    form.append("file", new Blob([bytes], { type: "audio/wav" }), "tone.wav");
                    const created = await fetch("/v1/voices", { method: "POST", body: form });
                    const voice = await created.json();
                    const deleted = await fetch(`/v1/voices/${voice.id}`, { method: "DELETE" });
                    return [created.status, deleted.status];
                }""", base64.b64encode(tone(1.0)).decode())
                assert status == [201, 200]
                opened = page.evaluate("""() => new Promise((resolve) => {
                    const socket = new WebSocket(`ws://${location.host}/v1/realtime`);
                    socket.onmessage = (event) => { resolve(JSON.parse(event.data).type); socket.close(); };
                    socket.onerror = () => resolve("refused");
                })""")
                assert opened == "session.created"
        finally:
            browser.close()


@pytest.mark.slow
def test_talk_to_the_lite_engine(server_factory: Any, open_page: Any) -> None:
    """Real models: the spoken question is transcribed, answered and spoken back in the page."""
    from stepaudio.engines.registry import create_engine
    from stepaudio.errors import StepAudioError

    try:
        engine = create_engine("lite", chat_model="smollm2", max_new_tokens=40)
        engine.synthesizer.voices()  # type: ignore[union-attr]  # loads Piper: fails here when absent
    except (StepAudioError, ImportError) as exc:
        pytest.skip(f"the lite engine is not usable here: {exc}")
    server = server_factory(ServerSettings(max_new_tokens=40), engine, mount_realtime=realtime_mount())
    page = open_page(server.url + "/", [("silence", 1.0), ("question", 1), ("silence", 30.0)])
    page.fill("#talk-instructions", "Answer in one short sentence.")
    page.click("#talk-button")
    page.wait_for_function("() => window.stepaudioTalk && window.stepaudioTalk.stats.assistantTranscripts.length"
                           " && window.stepaudioTalk.stats.played > 0", timeout=90000)
    stats = talk_stats(page)
    assert "capital of france" in stats["userTranscripts"][0].lower()
    assert "paris" in stats["assistantTranscripts"][0].lower()
    assert stats["audioSamples"] > 24000 // 2 and stats["errors"] == [] and page.errors == []
