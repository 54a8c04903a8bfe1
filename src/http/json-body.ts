/** Webhook bodies: JSON media types, and strict parsing of the raw bytes into an object. */

/** application/json, or any application/…+json, whatever its parameters. */
export function isJsonMediaType(contentType: string | undefined): boolean {
  const type = contentType?.split(';')[0]?.trim().toLowerCase();
  return type === 'application/json' || (type !== undefined && /^application\/[a-z0-9.+-]+\+json$/.test(type));
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export type ParsedBody = { ok: true; body: Record<string, unknown> } | { ok: false; code: 'invalid_json' | 'invalid_body'; message: string };

/** The body as a JSON object; anything else (not UTF-8, not JSON, not an object) says what it is. */
export function parseJsonObject(rawBody: Buffer): ParsedBody {
  let body: unknown;
  try {
    body = JSON.parse(strictUtf8.decode(rawBody));
  } catch (err) {
    const what = err instanceof SyntaxError ? 'not valid JSON' : err instanceof TypeError ? 'not valid UTF-8' : 'not parseable';
    return { ok: false, code: 'invalid_json', message: `body: ${what}` };
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return { ok: false, code: 'invalid_body', message: 'body: must be a JSON object' };
  }
  return { ok: true, body: body as Record<string, unknown> };
}

/** A header's first value. */
/** Request headers as node gives them (lower-cased names). */
export type RequestHeaders = Record<string, string | string[] | undefined>;

export function header(headers: RequestHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}
