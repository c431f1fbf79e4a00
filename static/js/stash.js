// What an opened investigation hands to the page it reloads into: its
// records, too many for localStorage (a few MB at most), kept in IndexedDB
// for the one reload. No other state lives here.

const DATABASE = "tributary";
const STORE = "stash";
const KEY = "investigation";

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DATABASE, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("IndexedDB cannot be opened"));
  });
}

function run(mode, act) {
  return open().then((db) => new Promise((resolve, reject) => {
    const transaction = db.transaction(STORE, mode);
    const result = act(transaction.objectStore(STORE));
    transaction.oncomplete = () => { db.close(); resolve(result.result); };
    transaction.onerror = () => { db.close(); reject(transaction.error ?? new Error("IndexedDB failed")); };
  }));
}

/** Keeps `value` for the next page load. */
export function stash(value) {
  return run("readwrite", (store) => store.put(value, KEY));
}

/** What was stashed (once: it is removed), or null. */
export async function takeStash() {
  try {
    // A browser that keeps IndexedDB waiting must not keep the page from starting.
    const waited = new Promise((resolve) => setTimeout(() => resolve(undefined), 3000));
    const value = await Promise.race([run("readonly", (store) => store.get(KEY)), waited]);
    if (value !== undefined) await run("readwrite", (store) => store.delete(KEY));
    return value ?? null;
  } catch {
    // No IndexedDB (a private window may refuse it): nothing was stashed.
    return null;
  }
}
