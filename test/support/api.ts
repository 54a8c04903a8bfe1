/** HTTP calls a test makes to a gateway it did not start itself (a child process, another replica). */

export async function adminRequest<T = any>(
  baseUrl: string,
  adminToken: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const response = await fetch(`${baseUrl}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

export async function registerAgent(
  baseUrl: string,
  adminToken: string,
  agent: { name: string; configProject: string; config?: Record<string, unknown> },
): Promise<{ id: string; token: string }> {
  const { status, body } = await adminRequest(baseUrl, adminToken, 'POST', '/agents', agent);
  if (status !== 201) throw new Error(`creating agent ${agent.name}: ${status} ${JSON.stringify(body)}`);
  return { id: body.agent.id, token: body.token.token };
}

/** A Push Hook delivery with the given secret (headers override the defaults). */
export function sendWebhook(
  baseUrl: string,
  secret: string,
  body: object | string | Buffer,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${baseUrl}/webhooks/gitlab`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-gitlab-token': secret, 'x-gitlab-event': 'Push Hook', ...headers },
    body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
}
