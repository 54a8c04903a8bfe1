/**
 * A test Flux webhook receiver with notification-controller's semantics:
 * - a Receiver is found by its `status.webhookPath`, which Flux sets to
 *   `/hook/` + hex sha256(token + name + namespace) when it reconciles the Receiver (404 when no
 *   Receiver has the path);
 * - `generic-hmac` needs `X-Signature: <sha1|sha256|sha512>=<hex HMAC of the body keyed with the
 *   token>`, the token read from the Receiver's Secret at the time of the request (400 when
 *   missing or wrong, as Flux answers a failed validation);
 * - 200 when accepted, after annotating each resource the Receiver names with
 *   `reconcile.fluxcd.io/requestedAt` (notification-controller's receiver handler requests the
 *   reconciliation that way, so source-controller then does what it does for `flux reconcile`).
 * Receivers and their Secrets are read from the test API server, as Flux reads them from the cluster.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FakeKube } from './fake-kube.js';

export function fluxWebhookPath(token: string, name: string, namespace: string): string {
  return `/hook/${createHash('sha256').update(token + name + namespace).digest('hex')}`;
}

export interface ReceiverCall {
  namespace: string;
  name: string;
  /** The sources (`Kind/name`) the Receiver would annotate for reconciliation. */
  resources: string[];
  body: string;
  headers: http.IncomingHttpHeaders;
}

export class FakeFluxReceiver {
  readonly calls: ReceiverCall[] = [];
  readonly rejected: { path: string; status: number }[] = [];
  /** Statuses to answer (in order) before handling requests normally, to test retries. */
  readonly failNext: number[] = [];
  private server: http.Server | undefined;
  url = '';

  constructor(private readonly kube: FakeKube) {}

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const status = this.handle(req, Buffer.concat(chunks).toString('utf8'));
        res.writeHead(status, { 'content-type': 'text/plain' });
        res.end(http.STATUS_CODES[status]);
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }

  callsTo(namespace: string, name: string): ReceiverCall[] {
    return this.calls.filter((c) => c.namespace === namespace && c.name === name);
  }

  private handle(req: http.IncomingMessage, body: string): number {
    const path = req.url ?? '/';
    const reject = (status: number): number => {
      this.rejected.push({ path, status });
      return status;
    };
    const injected = this.failNext.shift();
    if (injected !== undefined) return reject(injected);
    if (req.method !== 'POST' || !path.startsWith('/hook/')) return reject(404);
    const receiver = [...this.kube.receivers.values()].find((r) => r['status']?.webhookPath === path);
    if (!receiver) return reject(404);
    const { name, namespace } = receiver.metadata;
    const token = this.kube.secretToken(namespace, receiver['spec']?.secretRef?.name);
    if (token === undefined) return reject(400);
    if (receiver['spec']?.type !== 'generic-hmac') return reject(400);
    if (!validSignature(req.headers['x-signature'], body, token)) return reject(400);
    const resources: { kind: string; name: string }[] = receiver['spec']?.resources ?? [];
    this.calls.push({ namespace, name, resources: resources.map((r) => `${r.kind}/${r.name}`), body, headers: req.headers });
    for (const resource of resources) {
      if (resource.kind === 'GitRepository' || resource.kind === 'OCIRepository') {
        this.kube.annotate(resource.kind, namespace, resource.name, { 'reconcile.fluxcd.io/requestedAt': new Date().toISOString() });
      }
    }
    return 200;
  }
}

function validSignature(header: string | string[] | undefined, body: string, token: string): boolean {
  if (typeof header !== 'string') return false;
  const match = /^(sha1|sha256|sha512)=([0-9a-f]+)$/.exec(header);
  if (!match) return false;
  const expected = createHmac(match[1] as string, token).update(body).digest();
  const given = Buffer.from(match[2] as string, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
