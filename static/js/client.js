// The protocol client: one websocket to /ws on the page's own origin,
// reconnected with exponential backoff. Requests get a request-id and are
// read as async iterators of their own messages; cancel() stops one. What
// was running when the connection dropped is asked again by the `onReady`
// callbacks, which run after every (re)connection.
//
// Events: "status" (detail: {state: "connecting"|"open"|"closed", text,
//                   and when closed: reason, retryAt (ms since the epoch)}),
//         "notice" (detail: a SHUTDOWN_NOTICE),
//         "unrouted" (detail: a message about no request this page made, e.g. an ERROR).

const CLOSE_REASONS = {
  1001: "the server is restarting",
  1008: "the connection went quiet for too long",
  4200: "the server did not understand a message",
  4420: "too much was sent, or results were not read fast enough",
};

/** The messages of one request, as an async iterator. */
class Request {
  constructor(id, onDone) {
    this.id = id;
    this.queue = [];
    this.waiting = null;
    this.done = false;
    this.onDone = onDone;
  }

  push(message) {
    if (this.done) return;
    // The last message of a request: its completion (a live request goes on
    // after it), its cancellation, an ERROR about the whole request (no
    // datasource), or the connection's end.
    const last = (message.type === "REQUEST_COMPLETED" && !this.live) || message.type === "REQUEST_CANCELED"
      || message.type === "DISCONNECTED" || (message.type === "ERROR" && !message.error?.datasource);
    this.queue.push(message);
    if (last) this.finish();
    this.wake();
  }

  finish() {
    if (this.done) return;
    this.done = true;
    this.onDone(this);
    this.wake();
  }

  wake() {
    const waiting = this.waiting;
    this.waiting = null;
    waiting?.();
  }

  async *[Symbol.asyncIterator]() {
    for (;;) {
      if (this.queue.length) {
        yield this.queue.shift();
        continue;
      }
      if (this.done) return;
      await new Promise((resolve) => { this.waiting = resolve; });
    }
  }
}

export class TributaryClient extends EventTarget {
  constructor(token) {
    super();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = token ? `?token=${encodeURIComponent(token)}` : "";
    this.url = `${scheme}://${location.host}/ws${query}`;
    this.hasToken = Boolean(token);
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.state = "connecting";
    this.requests = new Map(); // request-id → Request
    this.readyCallbacks = [];
    this.sequence = 0;
    this.datasources = [];
    // Each channel's last position (offset, epoch): after a reconnect the
    // server sends the values missed since then.
    this.channelPositions = new Map();
    // Back online, or back in front of the user: no reason to wait.
    addEventListener("online", () => this.retryNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.retryNow();
    });
  }

  /** Reconnects at once if the connection is down and waiting to retry. */
  retryNow() {
    if (this.state !== "closed") return;
    clearTimeout(this.timer);
    this.connect();
  }

  /** Why the server refused a websocket that never opened, asked over plain
   * HTTP (the browser hides the upgrade's status): a refused token (403), a
   * full server (503), or no answer at all. */
  async whyRefused() {
    try {
      const response = await fetch(this.url.replace(/^ws/, "http"), { cache: "no-store" });
      if (response.status === 403) {
        return this.hasToken
          ? "the server refused the token (is it still valid?)"
          : "this server requires a token: open this page as /?token=YOUR_TOKEN";
      }
      if (response.status === 503) return "the server holds as many connections as it may";
      return "the server refused the connection";
    } catch {
      return "the server could not be reached";
    }
  }

  /** Runs `callback(datasources)` after every (re)connection: the place to ask again for what was running. */
  onReady(callback) {
    this.readyCallbacks.push(callback);
  }

  get open() {
    return this.state === "open";
  }

  connect() {
    clearTimeout(this.timer);
    this.status("connecting", this.attempt ? "Reconnecting…" : "Connecting…");
    const socket = new WebSocket(this.url);
    let opened = false;
    this.socket = socket;
    socket.onopen = () => { opened = true; };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      this.receive(message);
    };
    socket.onclose = async (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      // The requests of this connection died with it.
      for (const request of [...this.requests.values()]) request.push({ type: "DISCONNECTED" });
      // Backoff: 0.5 s, 1 s, 2 s, … up to 15 s, with jitter so a restarted
      // server is not hit by every browser at the same instant.
      const delay = Math.min(15000, 500 * 2 ** this.attempt) * (0.8 + Math.random() * 0.4);
      this.attempt += 1;
      const retryAt = Date.now() + delay;
      this.timer = setTimeout(() => this.connect(), delay);
      this.status("closed", "Offline", { reason: CLOSE_REASONS[event.code] ?? "the connection was lost", retryAt });
      if (!opened) {
        const reason = await this.whyRefused();
        if (this.state === "closed") this.status("closed", "Offline", { reason, retryAt });
      }
    };
  }

  receive(message) {
    if (message.type === "INITIAL_STATE_RECEIVE") {
      this.attempt = 0;
      this.datasources = message.state?.datasources ?? [];
      // Fields of different datasources that hold the same kind of value.
      this.links = message.state?.links ?? [];
      this.state = "open";
      // Each datasource's health, live: the server sends the current value
      // and a new one at every measure.
      const channels = this.datasources.flatMap((ds) => [`status:${ds.id}`, `latency:${ds.id}`]);
      const since = Object.fromEntries(channels.filter((c) => this.channelPositions.has(c))
        .map((c) => [c, this.channelPositions.get(c)]));
      const subscribe = Object.keys(since).length ? { type: "SUBSCRIBE", channels, since } : { type: "SUBSCRIBE", channels };
      if (channels.length) this.socket?.send(JSON.stringify(subscribe));
      for (const callback of this.readyCallbacks) callback(this.datasources);
      this.status("open", "Connected");
      return;
    }
    if (message.type === "DATASOURCES_CHANGED") {
      // A datasource joined (a remote one whose service connected): follow
      // its health too, and tell the page.
      const known = new Set(this.datasources.map((ds) => ds.id));
      this.datasources = message.state?.datasources ?? [];
      const channels = this.datasources
        .filter((ds) => !known.has(ds.id))
        .flatMap((ds) => [`status:${ds.id}`, `latency:${ds.id}`]);
      if (channels.length) this.socket?.send(JSON.stringify({ type: "SUBSCRIBE", channels }));
      this.dispatchEvent(new CustomEvent("datasources", { detail: this.datasources }));
      return;
    }
    if (message.type === "DATA") {
      const [at, value] = message.d ?? [];
      if (Number.isInteger(message.offset) && typeof message.epoch === "string") {
        this.channelPositions.set(message.c, { offset: message.offset, epoch: message.epoch });
      }
      this.dispatchEvent(new CustomEvent("channel", { detail: { channel: message.c, at, value } }));
      return;
    }
    if (message.type === "SUBSCRIBED" || message.type === "UNSUBSCRIBED") return;
    if (message.type === "SHUTDOWN_NOTICE") {
      this.dispatchEvent(new CustomEvent("notice", { detail: message }));
      return;
    }
    const request = this.requests.get(message["request-id"]);
    if (request) request.push(message);
    // Messages this page does not know are ignored, as the protocol asks.
    else if (message.type === "ERROR") this.dispatchEvent(new CustomEvent("unrouted", { detail: message }));
  }

  /**
   * Sends a FIELDS_REQUEST or ITEMS_REQUEST with a fresh request-id and
   * returns its messages as an async iterator (with `.id`); null when not
   * connected (ask again from `onReady`). A live ITEMS_REQUEST's messages go
   * on after REQUEST_COMPLETED: LIVE_STARTED, then appended ITEMS_RECEIVEs,
   * until it is canceled.
   */
  request(message) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return null;
    const id = `r${++this.sequence}`;
    const request = new Request(id, (done) => this.requests.delete(done.id));
    request.live = Boolean(message.live);
    this.requests.set(id, request);
    this.socket.send(JSON.stringify({ ...message, "request-id": id }));
    return request;
  }

  /** Stops a request; its iterator ends at once, whatever the server still sends. */
  cancel(request) {
    if (!request || request.done) return;
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ type: "CANCEL_REQUEST", "request-id": request.id }));
    }
    request.finish();
  }

  status(state, text, more = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("status", { detail: { state, text, ...more } }));
  }
}
