import { createHash, timingSafeEqual } from 'node:crypto';

const SHA256_PREFIX = 'sha256:';

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** A key's id for logs: the first 8 hex digits of its sha256, never the key. */
export function keyId(digest: Buffer): string {
  return digest.subarray(0, 4).toString('hex');
}

/** The configured API keys, held as sha256 digests only, checked in constant time. */
export class ApiKeys {
  private readonly digests: Buffer[];

  /** `entries`: each a plain key or `sha256:<64 hex digits>` (validated at start-up). */
  constructor(entries: readonly string[]) {
    this.digests = entries.map((entry) =>
      entry.startsWith(SHA256_PREFIX) ? Buffer.from(entry.slice(SHA256_PREFIX.length), 'hex') : sha256(entry),
    );
  }

  /** No keys configured: every caller is let in. */
  get required(): boolean {
    return this.digests.length > 0;
  }

  /**
   * The id of the configured key `presented` is, or undefined. Every configured key is compared, in constant time,
   * whichever matches: how long it takes says nothing about the keys.
   */
  identify(presented: string): string | undefined {
    const digest = sha256(presented);
    let match: Buffer | undefined;
    for (const configured of this.digests) if (timingSafeEqual(configured, digest)) match = configured;
    return match && keyId(match);
  }
}
