/**
 * What is wrong with Redis, in words, for /readyz and the log: never ioredis' own text, never
 * the credentials in REDIS_URL.
 */

/** redis://host:port of a Redis URL, without user, password or database. */
export function redisAddress(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.hostname}:${u.port || '6379'}`;
  } catch {
    return 'REDIS_URL';
  }
}

/** Why a Redis connection or command failed, as a few words. */
export function describeRedisError(err: Error | undefined): string {
  if (!err) return 'not connected yet';
  const code = (err as { code?: string }).code;
  const text = err.message;
  if (code === 'ECONNREFUSED' || /ECONNREFUSED/.test(text)) return 'connection refused';
  if (code === 'ETIMEDOUT' || /ETIMEDOUT|connect.*timed? ?out/i.test(text)) return 'connection timed out';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || /ENOTFOUND|EAI_AGAIN/.test(text)) return 'host not found';
  if (code === 'ECONNRESET' || code === 'EPIPE' || /ECONNRESET|EPIPE/.test(text)) return 'connection reset';
  if (/NOAUTH|WRONGPASS|invalid (username-)?password|AUTH failed/i.test(text)) return 'authentication failed (check the credentials in REDIS_URL)';
  if (text.startsWith('LOADING')) return 'still loading its data set';
  if (/Command timed out/.test(text)) return 'not answering (a command timed out)';
  if (/certificate|SSL|TLS/i.test(text)) return 'TLS handshake failed';
  return 'connection lost';
}
