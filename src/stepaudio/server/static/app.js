// The page: API key, server health, the conversation controls, the TTS playground, voice cloning and speech editing.

import { $, api, initApiKey, setStatus } from "./common.js";
import { initEditing, loadEditTypes } from "./edit.js";
import { initCloning, initSpeech, loadVoices } from "./playground.js";
import { Conversation } from "./talk.js";

let conversation = null;

async function showHealth() {
  try {
    const health = await (await api("/health")).json();
    const can = health.capabilities;
    const parts = Object.entries(can).filter(([, on]) => on).map(([name]) => name.replace("_", " "));
    setStatus($("#health"), `${health.engine} engine · ${parts.join(", ") || "no capabilities"}`, "ok");
    // show only what this engine can do
    $("#talk").hidden = !can.chat;
    $("#tts").hidden = !can.speech;
    $("#clone").hidden = !can.voice_cloning;
    $("#edit").hidden = !can.speech_editing;
    if (can.speech_editing) loadEditTypes();
  } catch (error) {
    setStatus($("#health"), `server unreachable: ${error.message}`, "bad");
  }
}

function initTalk() {
  const button = $("#talk-button");
  const status = $("#talk-status");
  const reset = () => {
    button.textContent = "Start talking";
    button.classList.remove("live");
    conversation = null;
  };
  button.addEventListener("click", async () => {
    if (conversation) {
      conversation.stop();
      return;
    }
    conversation = new Conversation({ log: $("#transcript"), status, onStop: reset });
    window.stepaudioTalk = conversation; // for tests and the console
    button.textContent = "Stop";
    button.classList.add("live");
    setStatus(status, "starting microphone…");
    try {
      await conversation.start({
        voice: $("#talk-voice").value,
        instructions: $("#talk-instructions").value.trim(),
        speed: Number($("#talk-speed").value),
      });
    } catch (error) {
      setStatus(status, `could not start: ${error.message}`, "bad");
      if (conversation) conversation.stop();
    }
  });
  $("#say-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const field = $("#say-text");
    if (conversation && field.value.trim()) conversation.sendText(field.value.trim());
    field.value = "";
  });
}

initApiKey();
$("#api-key").addEventListener("change", () => { showHealth(); loadVoices(); });
showHealth();
loadVoices();
initTalk();
initSpeech();
initCloning();
initEditing();
