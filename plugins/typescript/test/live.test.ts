// The package against a real tributary (PLUGIN_TEST_TRIBUTARY, the server binary):
// a Node.js datasource over the kit's vector records answers every vector
// query with the total of tributary's embedded datasource over the same
// records; publish() reaches a live query; health() is the datasource's
// health; a failure reaches the analyst in words.
import { strict as assert } from "node:assert";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

import { ndjsonDatasource } from "../examples/ndjson-datasource.js";
import { serve, Served } from "../src/index.js";

const TOKEN = "typescript-package-token";
const vectors = fileURLToPath(new URL("../../../conformance/vectors/", import.meta.url));
const binary = process.env.PLUGIN_TEST_TRIBUTARY;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

let port = 0;
let server: ReturnType<typeof spawn> | undefined;
let served: Served;
const stop = new AbortController();
let ws: WebSocket;
const inbox: any[] = [];
const waiters: (() => void)[] = [];

async function next(predicate: (m: any) => boolean, ms = 20_000): Promise<any> {
  const deadline = Date.now() + ms;
  for (;;) {
    const index = inbox.findIndex(predicate);
    if (index >= 0) return inbox.splice(index, 1)[0];
    assert.ok(Date.now() < deadline, `no such message in time; received: ${JSON.stringify(inbox.slice(-3)).slice(0, 500)}`);
    await new Promise<void>((resolve) => {
      waiters.push(resolve);
      setTimeout(resolve, 100);
    });
  }
}

async function totalOf(datasource: string, query: string, rid: string): Promise<number | null> {
  ws.send(JSON.stringify({ type: "ITEMS_REQUEST", datasources: [datasource], query, size: 0, "request-id": rid }));
  const done = await next((m) => m.type === "REQUEST_COMPLETED" && m["request-id"] === rid);
  return done.datasources[datasource].total ?? null;
}

before(async () => {
  assert.ok(binary, "set PLUGIN_TEST_TRIBUTARY to the tributary binary");
  port = await freePort();
  const folder = mkdtempSync(join(tmpdir(), "tributary-ts-"));
  const config = join(folder, "tributary.toml");
  writeFileSync(config, `listen = "127.0.0.1:${port}"
[datasources.vectors]
type = "embedded"
path = "${vectors}records.ndjson"
[services.ts]
token = "${TOKEN}"
datasources = ["*"]
[live]
health_interval = "200ms"
[limits]
max_messages_per_second = 10000
`);
  server = spawn(binary!, ["--config", config], { stdio: process.env.DEBUG_TS ? "inherit" : "ignore" });
  for (let i = 0; i < 600; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/healthz`);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const spec = ndjsonDatasource(`${vectors}records.ndjson`, "vectors_ts", "Vectors in Node");
  const search = spec.search;
  spec.search = function (request) {
    if (request.query === "boom") throw new Error("the backend exploded");
    return search.call(this, request);
  };
  let up = false;
  spec.health = () => (up ? { ok: true, latency_ms: 42 } : { ok: false, message: "the backend does not answer" });
  (globalThis as any).setUp = (value: boolean) => (up = value);
  served = serve(spec, { url: `ws://127.0.0.1:${port}/ws/services`, token: TOKEN, signal: stop.signal, log: () => {} });
  ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  ws.on("message", (raw) => {
    inbox.push(JSON.parse(raw.toString())); if (process.env.DEBUG_TS) console.error("GOT", inbox[inbox.length - 1].type);
    waiters.splice(0).forEach((w) => w());
  });
  const initial = await next((m) => m.type === "INITIAL_STATE_RECEIVE");
  if (!initial.state.datasources.some((d: any) => d.id === "vectors_ts")) {
    await next((m) => m.type === "DATASOURCES_CHANGED" && m.state.datasources.some((d: any) => d.id === "vectors_ts"));
  }
});

after(() => {
  stop.abort();
  ws?.close();
  server?.kill();
});

test("a Node.js datasource answers the kit's query vectors as the embedded datasource does", async () => {
  const queries = JSON.parse(readFileSync(`${vectors}queries.json`, "utf8"));
  const differ: string[] = [];
  let i = 0;
  for (const { query } of queries) {
    const ours = await totalOf("vectors_ts", query, `ts-${i}`);
    const theirs = await totalOf("vectors", query, `embedded-${i++}`);
    if (ours !== theirs) differ.push(`\`${query}\`: node ${ours}, embedded ${theirs}`);
  }
  assert.deepEqual(differ, []);
});

test("a failure reaches the analyst in words, not as an exception's type", async () => {
  ws.send(JSON.stringify({ type: "ITEMS_REQUEST", datasources: ["vectors_ts"], query: "boom", "request-id": "boom" }));
  const error = await next((m) => m.type === "ERROR" && m["request-id"] === "boom");
  assert.match(error.error.message, /the Vectors in Node plugin failed: the backend exploded/);
  assert.doesNotMatch(error.error.message, /Error:/);
});

test("health() is the datasource's health", async () => {
  const health = async () => (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()).datasources.vectors_ts;
  assert.deepEqual(await health(), { ok: false, error: "the backend does not answer" });
  (globalThis as any).setUp(true);
  assert.deepEqual(await health(), { ok: true });
});

test("publish() reaches a live query", async () => {
  ws.send(JSON.stringify({ type: "ITEMS_REQUEST", datasources: ["vectors_ts"], query: "name:zelda", size: 0, live: true, "request-id": "live" }));
  await next((m) => m.type === "LIVE_STARTED" && m["request-id"] === "live");
  const answer = await served.publish([{ id: "z1", name: "Zelda Fitzgerald" }, { id: "z2", name: "Other Person" }]);
  assert.equal(answer.records, 2);
  const append = await next((m) => m.type === "ITEMS_RECEIVE" && m["request-id"] === "live" && m.items.append);
  assert.deepEqual(append.items.results.map((r: any) => r.id), ["z1"]);
});
