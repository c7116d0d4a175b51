// Speech editing (/v1/audio/edits): a source (an upload or the last TTS output), then edits applied one after
// another. The chain lives here, not on the server: every step keeps its audio, so each can be played or
// downloaded, and undo drops the latest.

import { $, api, setStatus } from "./common.js";

const steps = []; // { label, text, blob, name, url }: the source, then each edit
let types = []; // GET /v1/audio/edits/options `data`

export function initEditing() {
  $("#edit-file").addEventListener("change", () => {
    const file = $("#edit-file").files[0];
    if (file) startChain(file, "upload", $("#edit-text").value.trim(), file.name);
  });
  $("#edit-use-tts").addEventListener("click", useLastSpeech);
  $("#edit-type").addEventListener("change", showOptions);
  $("#edit-form").addEventListener("submit", (event) => {
    event.preventDefault();
    applyEdit();
  });
  $("#edit-undo").addEventListener("click", undo);
  render();
}

export async function loadEditTypes() {
  try {
    const listing = await (await api("/v1/audio/edits/options")).json();
    types = listing.data;
    const select = $("#edit-type");
    const chosen = select.value;
    select.replaceChildren(...types.map((card) => new Option(card.edit, card.edit)));
    if (types.some((card) => card.edit === chosen)) select.value = chosen;
    showOptions();
  } catch (error) {
    setStatus($("#edit-status"), `could not list the edit types: ${error.message}`, "bad");
  }
}

function chosenType() {
  return types.find((card) => card.edit === $("#edit-type").value);
}

function showOptions() {
  const card = chosenType();
  const option = $("#edit-option");
  option.replaceChildren(...(card ? card.options : []).map((value) => new Option(value, value)));
  $("#edit-option-label").hidden = !card || !card.options.length;
  $("#edit-new-text-label").hidden = !card || !card.needs_new_text;
  if (card && card.needs_new_text && !$("#edit-new-text").value) $("#edit-new-text").value = $("#edit-text").value;
}

async function useLastSpeech() {
  const player = $("#tts-audio");
  if (!player.src) {
    setStatus($("#edit-status"), "speak something in Text to speech first", "bad");
    return;
  }
  const blob = await (await fetch(player.src)).blob();
  startChain(blob, "speech", $("#tts-text").value.trim(), "speech.wav");
}

function startChain(blob, label, text, name) {
  for (const step of steps.splice(0)) URL.revokeObjectURL(step.url);
  steps.push({ label, text, blob, name, url: URL.createObjectURL(blob) });
  $("#edit-text").value = text;
  setStatus($("#edit-status"), "");
  render();
}

async function applyEdit() {
  const card = chosenType();
  const last = steps[steps.length - 1];
  if (!last || !card) return;
  const status = $("#edit-status");
  last.text = $("#edit-text").value.trim(); // what the latest step says, as corrected by hand
  const form = new FormData();
  form.append("file", last.blob, "step.wav");
  form.append("edit", card.edit);
  let label = card.edit;
  if (card.options.length) {
    form.append("option", $("#edit-option").value);
    label += `: ${$("#edit-option").value}`;
  }
  if (card.needs_new_text) form.append("new_text", $("#edit-new-text").value);
  if (last.text) form.append("text", last.text);
  form.append("response_format", "wav");
  setStatus(status, `applying ${label}…`);
  $("#edit-apply").disabled = true;
  const started = performance.now();
  try {
    const response = await api("/v1/audio/edits", { method: "POST", body: form });
    const text = decodeURIComponent(response.headers.get("X-Edit-Text") || "");
    const blob = await response.blob();
    steps.push({ label, text, blob, name: `edit-step${steps.length}.wav`, url: URL.createObjectURL(blob) });
    $("#edit-text").value = text;
    $("#edit-new-text").value = "";
    setStatus(status, `${label} done in ${((performance.now() - started) / 1000).toFixed(1)} s`, "ok");
  } catch (error) {
    setStatus(status, error.message, "bad");
  }
  render();
}

function undo() {
  if (steps.length < 2) return;
  URL.revokeObjectURL(steps.pop().url);
  $("#edit-text").value = steps[steps.length - 1].text;
  setStatus($("#edit-status"), "undone", "ok");
  render();
}

function render() {
  const list = $("#edit-steps");
  list.replaceChildren();
  steps.forEach((step, index) => {
    const row = document.createElement("li");
    if (index === steps.length - 1) row.className = "current";
    const title = document.createElement("div");
    title.className = "step-title";
    title.textContent = `${index === 0 ? "source" : `step ${index}`} · ${step.label}${step.text ? ` — “${step.text}”` : ""}`;
    const player = document.createElement("audio");
    player.controls = true;
    player.preload = "metadata";
    player.src = step.url;
    const download = document.createElement("a");
    download.href = step.url;
    download.download = step.name;
    download.textContent = "download";
    row.append(title, player, download);
    list.append(row);
  });
  if (!steps.length) list.innerHTML = "<li class=\"muted\">upload speech or use the last Text to speech output</li>";
  $("#edit-apply").disabled = !steps.length;
  $("#edit-undo").disabled = steps.length < 2;
}
