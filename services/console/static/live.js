// Live updates. EventSource cannot send an Authorization header and the token must never be in a
// URL, so the stream is read with fetch() (which can) and parsed here. A server without
// /events is polled instead: `onEvent({event: "poll"})` every POLL_MS; so is one whose /events
// answers 503 (its NATS connection is down), until the stream is tried again (STREAM_RETRY_MS).
import { has, headers, url } from "./api.js";

export const POLL_MS = 1500; // under 2 s with the request's own time
export const STREAM_RETRY_MS = 15000;

class Unavailable extends Error {}

/** Poll until `ms` have passed or the signal aborts. */
function poll(ms, onEvent, signal) {
  return new Promise((resolve) => {
    const timer = setInterval(() => onEvent({ event: "poll" }), POLL_MS);
    const done = () => (clearInterval(timer), clearTimeout(end), resolve());
    const end = Number.isFinite(ms) ? setTimeout(done, ms) : undefined; // setTimeout(f, Infinity) fires at once
    signal.addEventListener("abort", done, { once: true });
  });
}

/** The SSE wire format: feed text chunks, get {event, data, id} per dispatched event. */
export class SseParser {
  constructor(onEvent, onRetry = () => {}) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.buffer = "";
    this.lastId = null; // the id of the last event: sent back as Last-Event-ID on a reconnect
    this.reset();
  }
  reset() {
    this.event = "";
    this.data = [];
  }
  feed(text) {
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop(); // an incomplete last line waits for the next chunk
    for (const line of lines) this.line(line);
  }
  line(line) {
    if (line === "") {
      if (this.data.length) this.onEvent({ event: this.event || "message", data: this.data.join("\n"), id: this.lastId });
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // a comment: the heartbeat
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.onRetry(Number(value));
  }
}

async function stream(params, onEvent, signal, setState) {
  let retry = 3000;
  let lastId = null; // a reconnect resumes after it (the server answers `reset` when it cannot)
  while (!signal.aborted) {
    try {
      const resume = lastId ? { "Last-Event-ID": lastId } : {};
      const answer = await fetch(url("/events", params), { headers: { ...headers(), ...resume, Accept: "text/event-stream" }, signal });
      if (answer.status === 503) throw new Unavailable();
      if (!answer.ok) throw new Error(String(answer.status));
      setState("live");
      const parser = new SseParser(
        (e) => {
          let data = e.data;
          try {
            data = JSON.parse(e.data);
          } catch {
            /* keep the text */
          }
          if (e.id) lastId = e.id;
          onEvent({ event: e.event, data });
        },
        (ms) => (retry = ms),
      );
      const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof Unavailable) {
        setState("polling");
        await poll(STREAM_RETRY_MS, onEvent, signal);
        continue;
      }
    }
    setState("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, retry));
  }
}

/** Follow one account (or all the token's accounts); returns a function that stops. */
export async function follow(account, onEvent, setState = () => {}) {
  const control = new AbortController();
  if (await has("/events")) {
    stream(account ? { account } : {}, onEvent, control.signal, setState);
  } else {
    setState("polling");
    poll(Infinity, onEvent, control.signal);
  }
  return () => control.abort();
}
