/**
 * HTTP for the GitLab client: node:http(s) on keep-alive agents, one timer per request. The
 * WHATWG fetch (with AbortSignal.timeout and AbortSignal.any per request) cost enough event-loop
 * time at a few hundred commit statuses a second to slow webhook answers; this does not.
 */
import http from 'node:http';
import https from 'node:https';

export interface Answer {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
}

export class TransportError extends Error {
  constructor(
    message: string,
    /** 'timeout': no answer in time; 'aborted': the client closed; 'network': refused, reset… */
    readonly reason: 'timeout' | 'aborted' | 'network',
  ) {
    super(message);
  }
}

const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 32 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 32 }),
};

export function send(
  url: URL,
  init: { method: string; headers: Record<string, string>; body: string | undefined; timeoutMs: number; signal: AbortSignal },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    if (init.signal.aborted) return reject(new TransportError('the client is closed', 'aborted'));
    const module = url.protocol === 'https:' ? https : http;
    const headers = { ...init.headers, ...(init.body === undefined ? {} : { 'content-length': String(Buffer.byteLength(init.body)) }) };
    let settled = false;
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      init.signal.removeEventListener('abort', onAbort);
      outcome();
    };
    const request = module.request(url, { method: init.method, headers, agent: agents[url.protocol as 'http:' | 'https:'] }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', (err) => finish(() => reject(new TransportError(err.message, 'network'))));
      response.on('end', () =>
        finish(() => {
          const answerHeaders: Record<string, string> = {};
          for (const [name, value] of Object.entries(response.headers)) {
            if (value !== undefined) answerHeaders[name] = Array.isArray(value) ? value.join(', ') : value;
          }
          resolve({ status: response.statusCode ?? 0, headers: answerHeaders, body: Buffer.concat(chunks) });
        }),
      );
    });
    const timer = setTimeout(() => {
      finish(() => reject(new TransportError(`no answer within ${init.timeoutMs} ms`, 'timeout')));
      request.destroy();
    }, init.timeoutMs);
    const onAbort = () => {
      finish(() => reject(new TransportError('the client is closed', 'aborted')));
      request.destroy();
    };
    init.signal.addEventListener('abort', onAbort, { once: true });
    request.on('error', (err) => finish(() => reject(new TransportError(err.message, 'network'))));
    request.end(init.body);
  });
}
