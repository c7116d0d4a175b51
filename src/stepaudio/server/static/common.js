// Shared helpers: the API key (kept in localStorage), authenticated fetch, base64 <-> PCM16, DOM lookups.

export const $ = (selector) => document.querySelector(selector);

export function apiKey() {
  return $("#api-key").value.trim();
}

export function authHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// fetch that turns an OpenAI-style JSON error into an Error carrying its message
export async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authHeaders(options.headers || {}) });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body.error && body.error.message) message = body.error.message;
    } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

export function int16ToBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function base64ToFloat32(data) {
  const binary = atob(data);
  const samples = new Float32Array(binary.length >> 1);
  for (let i = 0; i < samples.length; i++) {
    let value = binary.charCodeAt(2 * i) | (binary.charCodeAt(2 * i + 1) << 8);
    if (value >= 0x8000) value -= 0x10000;
    samples[i] = value / 32768;
  }
  return samples;
}

export function setStatus(element, text, kind = "") {
  element.textContent = text;
  element.className = `status ${kind}`;
}

export function initApiKey() {
  const field = $("#api-key");
  field.value = localStorage.getItem("stepaudio-api-key") || "";
  field.addEventListener("change", () => localStorage.setItem("stepaudio-api-key", field.value.trim()));
}
