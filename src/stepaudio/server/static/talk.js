// A spoken conversation over /v1/realtime (OpenAI Realtime GA events): the microphone streams as 24 kHz PCM16,
// reply audio plays as it arrives, speech over a reply stops it (barge-in) and tells the server what was heard
// (conversation.item.truncate), and both sides' words appear in the transcript.

import { apiKey, base64ToFloat32, int16ToBase64, setStatus } from "./common.js";

const RATE = 24000; // the Realtime API's PCM16 rate, both ways

// A 24 kHz context lets the browser resample the microphone and the speakers. Browsers that cannot connect a
// microphone to a context at another rate (Firefox) get the device's rate, and the worklets resample (as does
// `?native` in the page address, to test that path).
async function openAudio(forceNative) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  });
  if (!forceNative) {
    const context = new AudioContext({ sampleRate: RATE });
    try {
      return { stream, context, source: context.createMediaStreamSource(stream) };
    } catch (_) {
      context.close();
    }
  }
  const context = new AudioContext();
  return { stream, context, source: context.createMediaStreamSource(stream) };
}

// Linear interpolation from 24 kHz to the output rate, carried across chunks.
class Upsampler {
  constructor(outRate) {
    this.step = RATE / outRate;
    this.pos = 0;
    this.last = 0;
  }

  process(input) {
    if (this.step === 1) return input;
    const out = [];
    while (this.pos < input.length - 1) {
      const i = Math.floor(this.pos);
      const a = i < 0 ? this.last : input[i];
      out.push(a + (input[i + 1] - a) * (this.pos - i));
      this.pos += this.step;
    }
    this.pos -= input.length;
    this.last = input[input.length - 1];
    return Float32Array.from(out);
  }
}

export class Conversation {
  constructor({ log, status, onStop }) {
    this.log = log;
    this.status = status;
    this.onStop = onStop;
    this.bubbles = new Map(); // item id -> element
    this.segments = []; // {item, start, end} in samples of the player's stream
    this.dropped = new Set(); // item ids whose remaining audio is not played (barge-in)
    this.pushed = 0;
    this.played = 0;
    this.stats = { audioSamples: 0, userTranscripts: [], assistantTranscripts: [], errors: [], events: 0, played: 0,
      truncates: [] };
  }

  async start(settings) {
    const { stream, context, source } = await openAudio(new URLSearchParams(location.search).has("native"));
    this.stream = stream;
    this.context = context;
    this.outRate = context.sampleRate; // the player's samples (pushed, played, segments) count at this rate
    this.upsampler = new Upsampler(this.outRate);
    this.stats.contextRate = this.outRate;
    await context.audioWorklet.addModule("/static/worklets.js");
    this.capture = new AudioWorkletNode(context, "pcm-capture", { processorOptions: { chunk: RATE / 10, rate: RATE } });
    const mute = this.context.createGain();
    mute.gain.value = 0;
    source.connect(this.capture).connect(mute).connect(this.context.destination);
    this.player = new AudioWorkletNode(this.context, "pcm-player", { outputChannelCount: [1] });
    this.player.connect(this.context.destination);
    this.player.port.onmessage = (event) => {
      this.played = event.data.played;
      this.stats.played = this.played;
    };

    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const protocols = ["realtime"];
    if (apiKey()) protocols.push(`openai-insecure-api-key.${apiKey()}`);
    this.ws = new WebSocket(`${scheme}//${location.host}/v1/realtime`, protocols);
    this.ws.onopen = () => {
      this.send({ type: "session.update", session: sessionFields(settings) });
      this.capture.port.onmessage = (event) => {
        this.send({ type: "input_audio_buffer.append", audio: int16ToBase64(event.data) });
      };
      setStatus(this.status, "listening: speak any time", "ok");
    };
    this.ws.onmessage = (event) => this.handle(JSON.parse(event.data));
    this.ws.onclose = (event) => {
      setStatus(this.status, `disconnected${event.reason ? ": " + event.reason : ""}`, event.code === 1000 ? "" : "bad");
      this.stop();
    };
    await this.context.resume();
  }

  send(event) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(event));
  }

  sendText(text) {
    this.send({ type: "conversation.item.create", item: { type: "message", role: "user",
      content: [{ type: "input_text", text }] } });
    this.send({ type: "response.create" });
  }

  stop() {
    if (this.stopped) return;
    this.stopped = true;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    if (this.context) this.context.close();
    if (this.onStop) this.onStop();
  }

  handle(event) {
    this.stats.events += 1;
    switch (event.type) {
      case "input_audio_buffer.speech_started":
        if (this.pushed > this.played) this.bargeIn();
        this.bubble(event.item_id, "user", "…").classList.add("pending");
        setStatus(this.status, "hearing you…", "ok");
        break;
      case "input_audio_buffer.speech_stopped":
        setStatus(this.status, "thinking…", "ok");
        break;
      case "conversation.item.input_audio_transcription.completed": {
        const bubble = this.bubble(event.item_id, "user", "");
        bubble.classList.remove("pending");
        bubble.querySelector(".text").textContent = event.transcript || "(no words recognised)";
        this.stats.userTranscripts.push(event.transcript);
        break;
      }
      case "conversation.item.added":
        if (event.item.role === "user" && event.item.content[0] && event.item.content[0].type === "input_text") {
          this.bubble(event.item.id, "user", event.item.content[0].text);
        }
        break;
      case "response.output_item.added":
        if (event.item.type === "message") {
          this.bubble(event.item.id, "assistant", "").classList.add("pending");
          this.segments.push({ item: event.item.id, start: this.pushed, end: this.pushed });
        }
        break;
      case "response.output_audio_transcript.delta":
      case "response.output_text.delta":
        this.appendText(event.item_id, event.delta);
        break;
      case "response.output_audio.delta":
        this.play(event.item_id, base64ToFloat32(event.delta));
        break;
      case "response.function_call_arguments.done":
        this.note(`tool call ${event.name}(${event.arguments})`);
        break;
      case "conversation.item.truncated":
        this.bubble(event.item_id, "assistant", "").classList.add("truncated");
        break;
      case "response.done": {
        const item = event.response.output.find((entry) => entry.type === "message");
        if (item) {
          const bubble = this.bubble(item.id, "assistant", "");
          bubble.classList.remove("pending");
          const text = bubble.querySelector(".text").textContent;
          this.stats.assistantTranscripts.push(text);
          if (event.response.status === "cancelled") bubble.classList.add("truncated");
        }
        setStatus(this.status, "listening: speak any time", "ok");
        break;
      }
      case "error":
        this.stats.errors.push(event.error.message);
        this.note(`error: ${event.error.message}`, "error");
        break;
      default:
        break;
    }
  }

  play(itemId, received) {
    if (this.dropped.has(itemId)) return;
    this.stats.audioSamples += received.length;
    const samples = this.upsampler.process(received);
    const count = samples.length; // read before the transfer empties the array
    this.player.port.postMessage(samples, [samples.buffer]);
    this.pushed += count;
    const segment = this.segments.find((entry) => entry.item === itemId);
    if (segment) segment.end = this.pushed;
  }

  // The user spoke over the reply: stop it now and report how much of it was heard.
  bargeIn() {
    this.player.port.postMessage("clear");
    const heard = this.played;
    const segment = this.segments.find((entry) => entry.start <= heard && heard < entry.end)
      || this.segments[this.segments.length - 1];
    this.pushed = heard;
    if (!segment) return;
    this.dropped.add(segment.item);
    const audioEndMs = Math.max(0, Math.round((Math.min(heard, segment.end) - segment.start) * 1000 / this.outRate));
    this.send({ type: "conversation.item.truncate", item_id: segment.item, content_index: 0,
      audio_end_ms: audioEndMs });
    const sentMs = Math.round((segment.end - segment.start) * 1000 / this.outRate);
    this.stats.truncates.push({ item: segment.item, audioEndMs, sentMs });
  }

  bubble(itemId, role, text) {
    let bubble = this.bubbles.get(itemId);
    if (!bubble) {
      bubble = document.createElement("div");
      bubble.className = `msg ${role}`;
      bubble.dataset.item = itemId;
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = role === "user" ? "You" : "Assistant";
      const body = document.createElement("span");
      body.className = "text";
      body.textContent = text;
      bubble.append(who, body);
      this.log.append(bubble);
      this.bubbles.set(itemId, bubble);
    }
    this.log.scrollTop = this.log.scrollHeight;
    return bubble;
  }

  appendText(itemId, delta) {
    const text = this.bubble(itemId, "assistant", "").querySelector(".text");
    text.textContent += delta;
    this.log.scrollTop = this.log.scrollHeight;
  }

  note(text, kind = "note") {
    const line = document.createElement("div");
    line.className = `msg ${kind}`;
    line.textContent = text;
    this.log.append(line);
  }
}

function sessionFields(settings) {
  // the page shows what the user said: ask for input transcripts (a model that hears audio makes them after
  // its reply; one that reads makes them anyway)
  const fields = {
    type: "realtime", output_modalities: ["audio"],
    audio: { input: { transcription: { model: "default" } }, output: { speed: settings.speed } },
  };
  if (settings.instructions) fields.instructions = settings.instructions;
  if (settings.voice) fields.audio.output.voice = settings.voice;
  return fields;
}
