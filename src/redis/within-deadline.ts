import { errorMessage } from '../logging/error-message.js';

/**
 * `operation`'s result, or `onMiss(why)` when it fails or takes longer than `ms`: a Redis command must never hold a
 * request longer than that (a paused or swapping Redis can leave the connection open and answer nothing).
 */
export async function withinDeadline<T, M>(operation: Promise<T>, ms: number, onMiss: (why: string) => M): Promise<T | M> {
  let timer: NodeJS.Timeout | undefined;
  const missed = Symbol('missed');
  const deadline = new Promise<typeof missed>((resolve) => (timer = setTimeout(() => resolve(missed), ms)));
  try {
    const result = await Promise.race([operation, deadline]);
    return result === missed ? onMiss(`no answer within ${ms} ms`) : result;
  } catch (error) {
    return onMiss(errorMessage(error));
  } finally {
    clearTimeout(timer);
  }
}
