/**
 * Calling a Flux Receiver the way notification-controller's `generic-hmac` type expects:
 * POST <receiver base URL><status.webhookPath> with `X-Signature: sha256=<hex HMAC-SHA256 of the
 * body, keyed with the Receiver's token>`.
 *
 * The base URL is an http(s) URL of the webhook-receiver Service, or an API-server service-proxy
 * path (`/api/v1/namespaces/<ns>/services/<svc>/proxy`), sent to the API server with the
 * agent's own Kubernetes credentials (no extra network path into the cluster needed).
 */
import { createHmac } from 'node:crypto';
import type http from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { backoffDelay, sleep } from './backoff.js';
import { isWebhookReceiverUrl } from './config.js';
import { httpPost } from './http-post.js';

export interface TriggerTarget {
  namespace: string;
  /** Receiver name. */
  name: string;
  /** HMAC key; never logged. */
  token: string;
  webhookPath: string;
}

export interface TriggerPolicy {
  attempts: number;
  minDelayMs: number;
  maxDelayMs: number;
  timeoutMs: number;
}

export type TriggerOutcome =
  | { ok: true; status: number; attempts: number }
  | { ok: false; reason: 'rejected' | 'exhausted' | 'stopped'; status?: number; attempts: number };

export function signBody(body: string, token: string): string {
  return `sha256=${createHmac('sha256', token).update(body).digest('hex')}`;
}

/** `flux.webhookReceiverUrl` of the agent config the gateway sends (hello and config frames), when it is a usable receiver URL. */
export function receiverUrlFromConfig(config: Record<string, unknown>): string | undefined {
  const flux = config['flux'];
  if (!flux || typeof flux !== 'object') return undefined;
  const url = (flux as Record<string, unknown>)['webhookReceiverUrl'];
  return typeof url === 'string' && isWebhookReceiverUrl(url.trim()) ? url.trim() : undefined;
}

export class ReceiverTrigger {
  constructor(
    private readonly kc: KubeConfig,
    private readonly policy: TriggerPolicy,
    private readonly logger: Logger,
    private readonly stopSignal: AbortSignal,
  ) {}

  /** POSTs `body` to the Receiver; retries 5xx and network errors with backoff, never a 4xx. */
  async trigger(baseUrl: string, target: TriggerTarget, body: string): Promise<TriggerOutcome> {
    const log = this.logger.child({ receiver: `${target.namespace}/${target.name}` });
    const headers = { 'content-type': 'application/json', 'x-signature': signBody(body, target.token) };
    for (let attempt = 1; ; attempt++) {
      if (this.stopSignal.aborted) return { ok: false, reason: 'stopped', attempts: attempt - 1 };
      let retryable: boolean;
      let status: number | undefined;
      try {
        const { url, options } = await this.resolve(baseUrl, target.webhookPath);
        const signal = AbortSignal.any([this.stopSignal, AbortSignal.timeout(this.policy.timeoutMs)]);
        const result = await httpPost(url, body, headers, options, signal);
        status = result.status;
        if (status >= 200 && status < 300) {
          log.info({ status, attempt }, 'Receiver triggered');
          return { ok: true, status, attempts: attempt };
        }
        retryable = status >= 500;
        log.warn({ status, attempt, response: result.text }, 'Receiver answered with an error');
      } catch (err) {
        retryable = true;
        log.warn({ err: err instanceof Error ? err.message : String(err), attempt }, 'Receiver call failed');
      }
      if (!retryable) return { ok: false, reason: 'rejected', status, attempts: attempt };
      if (attempt >= this.policy.attempts) return { ok: false, reason: 'exhausted', status, attempts: attempt };
      await sleep(backoffDelay(attempt - 1, { minMs: this.policy.minDelayMs, maxMs: this.policy.maxDelayMs }), this.stopSignal);
    }
  }

  private async resolve(baseUrl: string, webhookPath: string): Promise<{ url: URL; options: http.RequestOptions }> {
    const base = baseUrl.replace(/\/+$/, '');
    if (!base.startsWith('/')) return { url: new URL(base + webhookPath), options: {} };
    const server = this.kc.getCurrentCluster()?.server;
    if (!server) throw new Error('no Kubernetes API server configured for the service-proxy receiver URL');
    const options: http.RequestOptions = {};
    await this.kc.applyToHTTPSOptions(options);
    return { url: new URL(server.replace(/\/+$/, '') + base + webhookPath), options };
  }
}
