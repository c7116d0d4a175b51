// AudioWorklet processors, run on the audio thread of a 24 kHz AudioContext.
// pcm-capture: microphone -> 100 ms chunks of PCM16 at `rate` posted to the page (linear resampling when the
//              context runs at another rate).
// pcm-player:  queued Float32 chunks -> speakers; reports how many samples have played, drops its queue on 'clear'.

class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const settings = options.processorOptions || {};
    this.chunk = settings.chunk || 2400;
    this.step = sampleRate / (settings.rate || sampleRate); // input samples per output sample
    this.pos = 0; // where the next output sample falls, in this block's input samples (from -1)
    this.last = 0; // the previous block's last sample
    this.buffer = new Int16Array(this.chunk);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    if (this.step === 1) {
      for (let i = 0; i < channel.length; i++) this.push(channel[i]);
      return true;
    }
    while (this.pos < channel.length - 1) {
      const i = Math.floor(this.pos);
      const a = i < 0 ? this.last : channel[i];
      this.push(a + (channel[i + 1] - a) * (this.pos - i));
      this.pos += this.step;
    }
    this.pos -= channel.length;
    this.last = channel[channel.length - 1];
    return true;
  }

  push(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.buffer[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.filled === this.chunk) {
      this.port.postMessage(this.buffer.buffer, [this.buffer.buffer]);
      this.buffer = new Int16Array(this.chunk);
      this.filled = 0;
    }
  }
}

class PcmPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.offset = 0; // read position in queue[0]
    this.played = 0; // samples played since the player started (never reset)
    this.sinceReport = 0;
    this.port.onmessage = (event) => {
      if (event.data === "clear") {
        this.queue = [];
        this.offset = 0;
        this.port.postMessage({ played: this.played, queued: 0 });
      } else {
        this.queue.push(event.data);
      }
    };
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    let i = 0;
    while (i < out.length && this.queue.length) {
      const head = this.queue[0];
      const n = Math.min(out.length - i, head.length - this.offset);
      out.set(head.subarray(this.offset, this.offset + n), i);
      i += n;
      this.offset += n;
      this.played += n;
      if (this.offset >= head.length) {
        this.queue.shift();
        this.offset = 0;
      }
    }
    out.fill(0, i);
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 20) { // every 50 ms
      this.sinceReport = 0;
      const queued = this.queue.reduce((sum, chunk) => sum + chunk.length, 0) - this.offset;
      this.port.postMessage({ played: this.played, queued });
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
registerProcessor("pcm-player", PcmPlayer);
