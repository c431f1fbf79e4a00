// The websocket to the server: connects to /ws on the page's own origin,
// reconnects with exponential backoff, and reports its state.
//
// Events: "status" (detail: {state: "connecting"|"open"|"closed", text}),
//         "message" (detail: one decoded server message).

const CLOSE_REASONS = {
  1001: "the server is restarting",
  1008: "the connection went quiet for too long",
  4200: "the server did not understand a message",
  4420: "too much was sent, or results were not read fast enough",
};

export class Connection extends EventTarget {
  constructor(token) {
    super();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = token ? `?token=${encodeURIComponent(token)}` : "";
    this.url = `${scheme}://${location.host}/ws${query}`;
    this.hasToken = Boolean(token);
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
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
      if (message.type === "INITIAL_STATE_RECEIVE") {
        this.attempt = 0;
        this.status("open", "Connected");
      }
      this.dispatchEvent(new CustomEvent("message", { detail: message }));
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      // Backoff: 0.5 s, 1 s, 2 s, … up to 15 s, with jitter so a restarted
      // server is not hit by every browser at the same instant.
      const delay = Math.min(15000, 500 * 2 ** this.attempt) * (0.8 + Math.random() * 0.4);
      this.attempt += 1;
      let why = CLOSE_REASONS[event.code] ?? "the connection was lost";
      if (!opened) {
        why = this.hasToken
          ? "the server refused the connection (is the token still valid?)"
          : "the server could not be reached, or it requires a token: open this page as /?token=YOUR_TOKEN";
      }
      this.status("closed", `Disconnected: ${why}. Retrying in ${Math.round(delay / 1000)} s`);
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  /** Sends one message; false if the socket is not open (the caller keeps its state and retries after reconnecting). */
  send(message) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  status(state, text) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("status", { detail: { state, text } }));
  }
}
