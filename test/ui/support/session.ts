/** Signing in to the status page over plain HTTP, as a browser would, with a small cookie jar. */

export class CookieJar {
  private readonly cookies = new Map<string, string>();
  /** The raw Set-Cookie headers of the last response, for asserting flags. */
  lastSetCookies: string[] = [];

  take(response: Response): void {
    this.lastSetCookies = response.headers.getSetCookie();
    for (const line of this.lastSetCookies) {
      const [pair, ...attributes] = line.split(';');
      const [name, ...value] = pair!.split('=');
      const expired = attributes.some((a) => /^\s*expires=thu, 01 jan 1970/i.test(a)) || value.join('=') === '';
      if (expired) this.cookies.delete(name!.trim());
      else this.cookies.set(name!.trim(), value.join('='));
    }
  }

  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  get(name: string): string | undefined {
    return this.cookies.get(name);
  }
}

export async function fetchWithJar(jar: CookieJar, url: string, init: RequestInit = {}): Promise<Response> {
  const response = await fetch(url, {
    redirect: 'manual',
    ...init,
    headers: { cookie: jar.header(), ...(init.headers as Record<string, string> | undefined) },
  });
  jar.take(response);
  return response;
}

export function csrfOf(page: string): string {
  const match = /name="_csrf" value="([^"]+)"/.exec(page);
  if (!match) throw new Error('no CSRF token on the page');
  return match[1]!;
}

/** GET the form, POST the token: the sign-in response (303 on success). */
export async function signIn(baseUrl: string, jar: CookieJar, token: string, headers: Record<string, string> = {}): Promise<Response> {
  const form = await fetchWithJar(jar, `${baseUrl}/ui/login`, { headers });
  const csrf = csrfOf(await form.text());
  return fetchWithJar(jar, `${baseUrl}/ui/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ token, _csrf: csrf, next: '/ui' }).toString(),
  });
}

/** A server-sent events reader: frames as they come, for asserting what the live feed sends. */
export interface SseFrame {
  id?: string;
  event?: string;
  data: string;
}

export async function openSse(url: string, jar: CookieJar, headers: Record<string, string> = {}) {
  const controller = new AbortController();
  const response = await fetch(url, {
    headers: { accept: 'text/event-stream', cookie: jar.header(), ...headers },
    signal: controller.signal,
  });
  const frames: SseFrame[] = [];
  const waiters = new Set<() => void>();
  let ended = false;
  void (async () => {
    if (!response.body) return;
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const frame: SseFrame = { data: '' };
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) frame.id = line.slice(4);
            else if (line.startsWith('event: ')) frame.event = line.slice(7);
            else if (line.startsWith('data: ')) frame.data += line.slice(6);
          }
          if (frame.event || frame.data) frames.push(frame);
          for (const wake of waiters) wake();
        }
      }
    } catch {
      // aborted
    } finally {
      ended = true;
      for (const wake of waiters) wake();
    }
  })();
  return {
    response,
    frames,
    get ended() {
      return ended;
    },
    waitFor(predicate: (frame: SseFrame) => boolean, timeoutMs = 5000): Promise<SseFrame> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = frames.find(predicate);
          if (found) {
            done();
            resolve(found);
          } else if (ended) {
            done();
            reject(new Error(`stream ended; frames: ${JSON.stringify(frames.map((f) => f.event))}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out; frames: ${JSON.stringify(frames.map((f) => f.event))}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    close: () => controller.abort(),
  };
}
