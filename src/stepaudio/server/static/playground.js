// The TTS playground (/v1/audio/speech with voice, instruction tags and speed) and voice cloning (/v1/voices).

import { $, api, setStatus } from "./common.js";

export async function loadVoices() {
  const status = $("#voices-status");
  try {
    const response = await api("/v1/voices");
    const voices = (await response.json()).data;
    fillVoiceSelects(voices);
    const clones = voices.filter((voice) => voice.type !== "builtin");
    renderVoiceList(clones);
    setStatus(status, `${clones.length} cloned, ${voices.length - clones.length} built-in`);
  } catch (error) {
    setStatus(status, `could not list voices: ${error.message}`, "bad");
  }
}

function fillVoiceSelects(voices) {
  for (const select of document.querySelectorAll("select.voices")) {
    const chosen = select.value;
    select.replaceChildren(new Option("default", ""));
    for (const voice of voices) {
      const label = voice.type === "builtin" ? voice.name : `${voice.name} (clone)`;
      select.append(new Option(label, voice.id));
    }
    select.value = [...select.options].some((option) => option.value === chosen) ? chosen : "";
  }
}

function renderVoiceList(clones) {
  const list = $("#voice-list");
  list.replaceChildren();
  for (const voice of clones) {
    const row = document.createElement("li");
    row.textContent = `${voice.name} — ${voice.duration ?? "?"} s — “${voice.transcript || ""}” `;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "small";
    remove.textContent = "delete";
    remove.addEventListener("click", async () => {
      await api(`/v1/voices/${encodeURIComponent(voice.id)}`, { method: "DELETE" });
      loadVoices();
    });
    row.append(remove);
    list.append(row);
  }
  if (!clones.length) list.innerHTML = "<li class=\"muted\">no cloned voices yet</li>";
}

export function initSpeech() {
  const form = $("#tts-form");
  const status = $("#tts-status");
  const speed = $("#tts-speed");
  speed.addEventListener("input", () => { $("#tts-speed-value").textContent = `${Number(speed.value).toFixed(2)}×`; });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { model: "tts-1", input: $("#tts-text").value, response_format: "wav", speed: Number(speed.value) };
    const voice = $("#tts-voice").value;
    if (voice) body.voice = voice;
    for (const name of ["emotion", "dialect", "style"]) {
      const value = $(`#tts-${name}`).value;
      if (value) body[name] = value;
    }
    const tags = $("#tts-tags").value.split(/[\s,]+/).filter(Boolean);
    if (tags.length) body.tags = tags;
    setStatus(status, "synthesising…");
    const started = performance.now();
    try {
      const response = await api("/v1/audio/speech", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body) });
      const blob = await response.blob();
      const player = $("#tts-audio");
      if (player.src) URL.revokeObjectURL(player.src);
      player.src = URL.createObjectURL(blob);
      $("#tts-download").href = player.src;
      $("#tts-download").hidden = false;
      player.play().catch(() => {});
      setStatus(status, `done in ${((performance.now() - started) / 1000).toFixed(1)} s`, "ok");
    } catch (error) {
      setStatus(status, error.message, "bad");
    }
  });
}

export function initCloning() {
  const form = $("#clone-form");
  const status = $("#clone-status");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    if (!data.get("transcript")) data.delete("transcript"); // the server transcribes the prompt itself
    setStatus(status, "uploading…");
    try {
      const voice = await (await api("/v1/voices", { method: "POST", body: data })).json();
      setStatus(status, `registered “${voice.name}” (${voice.id})`, "ok");
      form.reset();
      await loadVoices();
    } catch (error) {
      setStatus(status, error.message, "bad");
    }
  });
}
