import { Keyv } from 'keyv';
import { LRUCache } from 'lru-cache';

/**
 * What the embedded (no Redis) answer cache may hold, counted as below: entries beyond it are evicted, least recently
 * used first. Sized for the Deployment's 512 Mi with the image's heap setting (old space 256 MB, see the Dockerfile):
 * a quarter of the heap.
 */
export const MEMORY_CACHE_MAX_BYTES = 64 * 1024 * 1024;

/** A key, the entry's object and its wrapper, its place in the LRU: more than their text, counted once per entry. */
const ENTRY_OVERHEAD_BYTES = 256;
/**
 * An excerpt held by an entry is the knowledge base's own object's strings (the search returns them, nothing copies
 * them), so it costs an object and its score, not its text again.
 */
const EXCERPT_BYTES = 64;

/** Keyv's envelope around what cache-manager stores: `{ value, expires }` (no serialisation in memory). */
interface Stored {
  value?: unknown;
}

/**
 * A Map-shaped Keyv store over one LRU bounded by bytes (lru-cache's maxSize), not by count: answers differ in size
 * by a hundred times, and a bound by count let the heap outgrow its pod under steady new questions. Strings count
 * two bytes a character (what V8 takes for text outside Latin-1), so the bound holds whatever the language.
 */
export class ByteBoundedStore {
  private readonly entries: LRUCache<string, Stored>;

  constructor(maxBytes: number = MEMORY_CACHE_MAX_BYTES) {
    this.entries = new LRUCache<string, Stored>({ maxSize: maxBytes, sizeCalculation: entryBytes });
  }

  /** The bytes held, as counted. */
  get size(): number {
    return this.entries.calculatedSize;
  }

  get(key: string): Stored | undefined {
    return this.entries.get(key);
  }

  /** `ttl` in ms, as Keyv passes it; the entry goes once it has passed (Keyv also checks `expires` on reads). */
  set(key: string, value: Stored, ttl?: number): boolean {
    this.entries.set(key, value, ttl === undefined || ttl <= 0 ? undefined : { ttl });
    return true;
  }

  delete(key: string): boolean {
    return this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}

function entryBytes(stored: Stored, key: string): number {
  return ENTRY_OVERHEAD_BYTES + 2 * key.length + valueBytes(stored.value);
}

/** An answer's own text, and each excerpt at the cost of a reference; anything else by its JSON length. */
function valueBytes(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 2 * (JSON.stringify(value) ?? '').length;
  const { answer, excerpts } = value as { answer?: unknown; excerpts?: unknown };
  if (typeof answer !== 'string') return 2 * (JSON.stringify(value) ?? '').length;
  return 2 * answer.length + (Array.isArray(excerpts) ? excerpts.length * EXCERPT_BYTES : 0);
}

/**
 * The embedded answer cache's Keyv: entries are never mutated, so they are neither serialised nor copied (a copy was
 * most of a cache hit's cost).
 */
export function memoryKeyv(store = new ByteBoundedStore()): Keyv {
  const keyv = new Keyv({ store });
  keyv.serialize = undefined;
  keyv.deserialize = undefined;
  return keyv;
}
