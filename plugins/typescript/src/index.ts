/**
 * Datasource plugins for tributary in TypeScript (and JavaScript): a
 * datasource served over tributary's services socket (`/ws/services`,
 * docs/plugins.md), with the same capabilities as the Python package:
 * search, fields, expand, publish (for live queries) and health.
 *
 * ```ts
 * import { serve, Page } from "tributary-plugin";
 *
 * serve({
 *   id: "customers",
 *   fields: [{ path: "name", type: "text" }, { path: "city", type: "keyword" }],
 *   search(request) {
 *     const match = request.matcher(this.fields);   // the query tributary parsed
 *     const hits = ROWS.filter((r) => match(r.fields));
 *     return { total: hits.length, results: hits.slice(request.from, request.from + request.size) };
 *   },
 * });
 * ```
 */
import WebSocket from "ws";

import { evaluate, Matcher, QueryError, Tree } from "./query.js";

export { evaluate, analyze, QueryError, Unsupported } from "./query.js";
export type { Matcher, Tree } from "./query.js";

const EVENT = 0, IDENTIFY = 1, DISCONNECT = 2, PING = 3, PONG = 4, REPLY = 5;
/** Bytes of one reply (tributary refuses messages over 64 KiB). */
const REPLY_BYTES = 60 * 1024;
const REPLY_RESULTS = 500;
const BACKOFF_FIRST_MS = 500, BACKOFF_MAX_MS = 10_000;

/** A field as tributary lists it: a dotted path and an Elasticsearch type. */
export interface Field {
  path: string;
  type: string;
}

/** A result: an id and its fields (nested or dotted). */
export interface Result {
  id: string;
  fields: Record<string, unknown>;
  highlight?: Record<string, string[]>;
}

/** A search's answer: how many records match in all, and the page. */
export interface Page {
  total: number;
  results: Iterable<Result> | AsyncIterable<Result>;
}

/** One search tributary asks for. */
export interface SearchRequest {
  /** The query as the analyst typed it. */
  query: string;
  /** The query as tributary's parser reads it (docs/protocol.md, "The parsed query"). */
  parsed?: Tree;
  from: number;
  size: number;
  context: { caller?: string | null; timeout_ms?: number };
  /** Cancelled when tributary sends CANCEL for this search: stop working. */
  signal: AbortSignal;
  /** A function telling whether a record's fields match, as tributary's
   * embedded datasource decides; throws BadQuery (Unsupported for a
   * construct this package does not evaluate). */
  matcher(fields?: Field[]): Matcher;
}

/** The EXPAND event's data (docs/protocol.md, "Remote datasources"). */
export interface ExpandRequest {
  selected: { value: { field: string; value: unknown }; fields: string[]; lowercase: boolean; forms: unknown[] }[];
  fields: string[];
  size: number;
  exclude: unknown[];
  mode: string;
  context: Record<string, unknown>;
}

export interface Expansion {
  vertices: { field: string; value: unknown; doc_count: number; weight: number }[];
  connections: { from: unknown; to: unknown; doc_count: number }[];
  method?: string;
}

/** A health check's verdict: `ok`, why not, and optionally a latency measured by the plugin. */
export interface Health {
  ok: boolean;
  message?: string;
  latency_ms?: number;
}

/** What a plugin serves. `expand` and `health` are optional: declared when present. */
export interface DatasourceSpec {
  id: string;
  name?: string;
  fields: Field[];
  search(this: DatasourceSpec, request: SearchRequest): Page | Promise<Page>;
  expand?(this: DatasourceSpec, request: ExpandRequest): Expansion | Promise<Expansion>;
  health?(this: DatasourceSpec): boolean | Health | Promise<boolean | Health>;
}

/** A failure told to the analyst in words; `kind` is tributary's. */
export class DatasourceError extends Error {
  kind = "unavailable";
}
export class BadQuery extends DatasourceError {
  override kind = "bad_query";
}
export class Unavailable extends DatasourceError {}
export class Unauthorized extends DatasourceError {
  override kind = "unauthorized";
}
/** tributary refused the plugin (a wrong token, a datasource it may not serve): retrying will not help. */
export class Refused extends Error {}

export interface ServeOptions {
  /** Default: `$TRIBUTARY_URL`, else ws://127.0.0.1:8080/ws/services. */
  url?: string;
  /** Default: `$TRIBUTARY_TOKEN`. */
  token?: string;
  /** Stops serving (and reconnecting). */
  signal?: AbortSignal;
  log?: (message: string) => void;
}

/** A served datasource: `publish` sends new records to its live queries. */
export interface Served {
  /** Resolves when serving stops (the signal); rejects with Refused. */
  done: Promise<void>;
  /** Flat records (`{"id", …}`) for live queries; rejects while disconnected or if tributary refuses. */
  publish(records: Record<string, unknown>[], timeoutMs?: number): Promise<Record<string, unknown>>;
}

/** Connects, identifies and serves `spec`, reconnecting with backoff. */
export function serve(spec: DatasourceSpec, options: ServeOptions = {}): Served {
  const url = options.url ?? process.env.TRIBUTARY_URL ?? "ws://127.0.0.1:8080/ws/services";
  const token = options.token ?? process.env.TRIBUTARY_TOKEN;
  const log = options.log ?? ((m: string) => console.error(`tributary-plugin: ${m}`));
  let current: Connection | undefined;
  const done = (async () => {
    if (!token) throw new Refused("no service token: set TRIBUTARY_TOKEN (a [services.<name>] token of tributary's config)");
    let backoff = BACKOFF_FIRST_MS;
    while (!options.signal?.aborted) {
      const connection = new Connection(spec, url, log);
      current = connection;
      try {
        await connection.run(token, options.signal, () => (backoff = BACKOFF_FIRST_MS));
      } catch (error) {
        if (error instanceof Refused) throw error;
        log(`connection to tributary lost (${(error as Error).message}); retrying in ${(backoff / 1000).toFixed(1)} s`);
      } finally {
        current = undefined;
      }
      if (options.signal?.aborted) break;
      await sleep(backoff * (0.8 + Math.random() * 0.4), options.signal);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  })();
  return {
    done,
    publish(records, timeoutMs = 10_000) {
      if (!current?.identified) return Promise.reject(new Unavailable("not connected to tributary"));
      return current.request("PUBLISH", { records }, timeoutMs);
    },
  };
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
  });
}

type Message = { id?: unknown; op?: number; event?: string; data?: any };

/** One connection to tributary: its events, the searches running. */
class Connection {
  identified = false;
  private ws?: WebSocket;
  private running = new Map<string, AbortController>();
  private awaiting = new Map<string, { resolve: (d: any) => void; reject: (e: Error) => void }>();
  private sequence = 0;

  constructor(private spec: DatasourceSpec, private url: string, private log: (m: string) => void) {}

  run(token: string, signal: AbortSignal | undefined, connected: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      const stop = () => ws.close(1000);
      signal?.addEventListener("abort", stop, { once: true });
      ws.on("open", () => {
        const declaration: Record<string, unknown> = {
          id: this.spec.id,
          name: this.spec.name ?? this.spec.id,
          fields: this.spec.fields,
        };
        if (this.spec.expand) declaration.expand = true;
        if (this.spec.health) declaration.health = true;
        this.send({ op: IDENTIFY, id: "identify", data: { token, datasource: declaration } });
      });
      ws.on("message", (raw) => {
        let message: Message;
        try {
          message = JSON.parse(raw.toString());
        } catch {
          this.log(`tributary sent a frame that is not JSON: ${raw.toString().slice(0, 200)}`);
          return;
        }
        if (!this.identified) {
          if (message.op === REPLY && message.id === "identify") {
            this.identified = true;
            connected();
            this.log(`serving datasource ${this.spec.id} at ${this.url}`);
          } else if (message.op === DISCONNECT) {
            reject(new Refused(String(message.data?.reason ?? "tributary refused the plugin")));
            ws.close();
          }
          return;
        }
        this.handle(message);
      });
      ws.on("error", (error) => reject(error));
      ws.on("close", (code, reason) => {
        signal?.removeEventListener("abort", stop);
        this.stop();
        if (signal?.aborted) resolve();
        else reject(new Error(`closed with ${code}${reason.length ? `: ${reason}` : ""}`));
      });
    });
  }

  private send(message: unknown): void {
    this.ws?.send(JSON.stringify(message));
  }

  /** Sends an EVENT of its own (PUBLISH) and waits for its REPLY. */
  request(event: string, data: unknown, timeoutMs: number): Promise<Record<string, unknown>> {
    const id = `${this.spec.id}-${process.pid}-${++this.sequence}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.awaiting.delete(JSON.stringify(id));
        reject(new Unavailable(`tributary did not answer ${event} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.awaiting.set(JSON.stringify(id), {
        resolve: (d) => (clearTimeout(timer), resolve(d)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.send({ op: EVENT, id, event, data });
    });
  }

  private handle(message: Message): void {
    const { op, event, id } = message;
    const data = message.data ?? {};
    if (op === EVENT && event === "SEARCH") this.start(id, (signal) => this.search(id, data, signal));
    else if (op === EVENT && event === "FIELDS") this.start(id, () => this.reply(id, { fields: this.spec.fields }));
    else if (op === EVENT && event === "EXPAND") this.start(id, () => this.expand(id, data));
    else if (op === EVENT && event === "HEALTH") this.start(id, () => this.health(id));
    else if (op === EVENT && event === "CANCEL") {
      const key = JSON.stringify(data.id);
      this.running.get(key)?.abort();
      this.running.delete(key);
    } else if (op === EVENT && event === "ERROR") {
      const waiting = this.awaiting.get(JSON.stringify(id));
      if (waiting) {
        this.awaiting.delete(JSON.stringify(id));
        waiting.reject(new DatasourceError(String(data.message ?? "tributary refused the event")));
      } else this.log(`tributary: ${data.message} (${data.code})`);
    } else if (op === REPLY) {
      const waiting = this.awaiting.get(JSON.stringify(id));
      this.awaiting.delete(JSON.stringify(id));
      waiting?.resolve(data);
    } else if (op === PING) this.send({ id, op: PONG });
    else if (op === DISCONNECT) this.log(`tributary disconnects: ${data.reason}`);
  }

  private start(id: unknown, work: (signal: AbortSignal) => Promise<void>): void {
    const key = JSON.stringify(id);
    const controller = new AbortController();
    this.running.set(key, controller);
    work(controller.signal)
      .catch((error) => (controller.signal.aborted ? undefined : this.fail(id, error)))
      .finally(() => this.running.delete(key));
  }

  private stop(): void {
    for (const controller of this.running.values()) controller.abort();
    this.running.clear();
    for (const waiting of this.awaiting.values()) waiting.reject(new Unavailable("the connection to tributary was lost"));
    this.awaiting.clear();
  }

  private reply(id: unknown, data: unknown): Promise<void> {
    this.send({ id, op: REPLY, data });
    return Promise.resolve();
  }

  /** A failure, in the analyst's terms: the plugin's message, never an exception's type. */
  private fail(id: unknown, error: unknown): void {
    if (error instanceof DatasourceError || error instanceof QueryError) {
      this.send({ id, op: REPLY, data: { error: { kind: error.kind, message: error.message } } });
      return;
    }
    this.log(`answering tributary failed: ${(error as Error)?.stack ?? error}`);
    const plugin = this.spec.name ?? this.spec.id;
    const message = (error as Error)?.message;
    this.send({
      id,
      op: REPLY,
      data: { error: { kind: "unavailable", message: message ? `the ${plugin} plugin failed: ${message}` : `the ${plugin} plugin failed (its log has the details)` } },
    });
  }

  private async search(id: unknown, data: any, signal: AbortSignal): Promise<void> {
    const spec = this.spec;
    const request: SearchRequest = {
      query: String(data.query ?? ""),
      parsed: data.parsed,
      from: Number(data.from ?? 0),
      size: Number(data.size ?? 20),
      context: data.context ?? {},
      signal,
      matcher(fields?: Field[]): Matcher {
        if (!this.parsed) throw new BadQuery("this server sends no parsed query: update tributary");
        return evaluate(this.parsed, fields ?? spec.fields);
      },
    };
    const page = await spec.search.call(spec, request);
    await this.stream(id, page, request.size, signal);
  }

  /** Sends the page in replies under 64 KiB, as it is produced; stops on CANCEL. */
  private async stream(id: unknown, page: Page, size: number, signal: AbortSignal): Promise<void> {
    const head = `{"id":${JSON.stringify(id)},"op":${REPLY},"data":{"total":${Math.trunc(page.total)},"results":[`;
    let chunk: string[] = [];
    let bytes = 0;
    let sent = 0;
    for await (const result of page.results as AsyncIterable<Result>) {
      if (signal.aborted) return;
      if (sent >= size) break;
      const text = JSON.stringify(result);
      if (text.length + head.length + 32 > REPLY_BYTES) {
        throw new Unavailable(`result ${JSON.stringify(result.id)} is ${text.length} bytes: more than one reply may carry`);
      }
      if (chunk.length && (bytes + text.length + head.length + 32 > REPLY_BYTES || chunk.length >= REPLY_RESULTS)) {
        this.ws?.send(`${head}${chunk.join(",")}],"done":false}}`);
        chunk = [];
        bytes = 0;
      }
      chunk.push(text);
      bytes += text.length + 1;
      sent += 1;
    }
    if (!signal.aborted) this.ws?.send(`${head}${chunk.join(",")}],"done":true}}`);
  }

  private async expand(id: unknown, data: ExpandRequest): Promise<void> {
    if (!this.spec.expand) throw new Unavailable("this plugin does not answer EXPAND");
    const found = await this.spec.expand.call(this.spec, data);
    await this.reply(id, found);
  }

  private async health(id: unknown): Promise<void> {
    if (!this.spec.health) throw new Unavailable("this plugin does not answer HEALTH");
    const started = performance.now();
    let verdict = await this.spec.health.call(this.spec);
    const tookMs = Math.round(performance.now() - started);
    if (typeof verdict === "boolean") verdict = { ok: verdict };
    if (typeof verdict?.ok !== "boolean") throw new TypeError('health() must return true, false or {"ok": true or false, …}');
    await this.reply(id, { latency_ms: tookMs, ...verdict });
  }
}
