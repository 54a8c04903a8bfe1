/**
 * A POST over node:http(s) that accepts the request options client-node prepares (TLS agent,
 * Authorization header), which the global fetch cannot take.
 */
import http from 'node:http';
import https from 'node:https';

export interface PostResult {
  status: number;
  /** The start of the response body, for logs. */
  text: string;
}

const MAX_BODY_KEPT = 512;

export function httpPost(
  url: URL,
  body: string,
  headers: Record<string, string>,
  base: http.RequestOptions,
  signal: AbortSignal,
): Promise<PostResult> {
  const transport = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const request = transport.request(
      url,
      {
        ...base,
        method: 'POST',
        headers: { ...flattenHeaders(base.headers), ...headers, 'content-length': String(Buffer.byteLength(body)) },
        signal,
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          if (text.length < MAX_BODY_KEPT) text += chunk;
        });
        response.on('end', () => resolve({ status: response.statusCode ?? 0, text: text.slice(0, MAX_BODY_KEPT) }));
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

function flattenHeaders(headers: http.RequestOptions['headers']): Record<string, string> {
  const flat: Record<string, string> = {};
  if (!headers || Array.isArray(headers)) return flat;
  for (const [key, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    flat[key.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value);
  }
  return flat;
}
