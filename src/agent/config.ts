/**
 * Environment → typed agent configuration (zod). It is handed an env object and never reads
 * `process.env` itself. A bad value throws an AgentConfigError naming the variable.
 */
import { z } from 'zod';
import { TRIGGER_MODES, type TriggerMode } from './reconciler.js';
import { parseRegistryHost, type RegistryHost } from './repo-url.js';

export class AgentConfigError extends Error {
  override name = 'AgentConfigError';
}

export const DEFAULT_WEBHOOK_RECEIVER_URL = 'http://webhook-receiver.flux-system.svc.cluster.local';

export interface AgentConfig {
  /** Gateway base URL (http, https, ws or wss); the agent connects to its `/agent/v1/connect`. */
  gatewayUrl: string;
  /** The agent token, or a file to read it from on every connection attempt (rotation without restart). */
  agentToken?: string | undefined;
  agentTokenFile?: string | undefined;
  /** GitLab's external URL: GitRepositories on this host are mapped to projects. */
  gitlabUrl: string;
  /** GitLab's container registry (`$CI_REGISTRY`: host[:port]); OCIRepositories on it are managed. None: no OCIRepository is. */
  registryHost?: RegistryHost | undefined;
  /** How Flux is asked to reconcile: annotate the source (default), or call its Receiver. */
  triggerMode: TriggerMode;
  /** Namespaces to watch; empty means all namespaces. */
  watchNamespaces: string[];
  /** Receiver mode: used when the gateway's config does not set `flux.webhookReceiverUrl`. */
  webhookReceiverUrl: string;
  /** Path of a kubeconfig file; absent means in-cluster configuration. */
  kubeconfig?: string | undefined;
  health: { host: string; port: number } | false;
  reconnect: { minMs: number; maxMs: number };
  subscribeDebounceMs: number;
  /** Per reconcile request: attempts (5xx, conflicts, network errors; Receiver refreshes after a 4xx), backoff, timeout per call. */
  trigger: { attempts: number; minDelayMs: number; maxDelayMs: number; timeoutMs: number };
  /** How often to look for the Flux CRDs again while they are missing, and to restart a failed watch. */
  kubeRetryMs: number;
  /** How long status changes are gathered before they are sent (the contract allows at most a second). */
  statusBatchMs: number;
  /** Backoff between attempts to write a credentials Secret that failed (no rights yet, a foreign Secret, ...). */
  credentialsRetry: { minMs: number; maxMs: number };
  logLevel: string;
}

const optionalString = z
  .string()
  .optional()
  .transform((s) => (s === undefined || s.trim() === '' ? undefined : s.trim()));

const required = optionalString.refine((s) => s !== undefined, { message: 'is required' });

const int = (fallback: number, min: number, max: number) =>
  optionalString
    .transform((s) => s ?? String(fallback))
    .pipe(z.string().regex(/^\d+$/, 'must be a whole number'))
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const isUrl = (value: string, protocols: string[]): boolean => {
  try {
    return protocols.includes(new URL(value).protocol);
  } catch {
    return false;
  }
};

const SERVICE_PROXY_PATH = /^\/api\/v1\/namespaces\/[^/]+\/services\/[^/]+\/proxy\/?$/;

/** A receiver URL is an http(s) URL, or an API server service-proxy path. */
export function isWebhookReceiverUrl(value: string): boolean {
  return isUrl(value, ['http:', 'https:']) || SERVICE_PROXY_PATH.test(value);
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const EnvSchema = z.object({
  KASGATE_URL: required.refine((s) => s === undefined || isUrl(s, ['http:', 'https:', 'ws:', 'wss:']), {
    message: 'must be an http(s) or ws(s) URL of the gateway',
  }),
  KASGATE_AGENT_TOKEN: optionalString,
  KASGATE_AGENT_TOKEN_FILE: optionalString,
  GITLAB_EXTERNAL_URL: required.refine((s) => s === undefined || isUrl(s, ['http:', 'https:']), {
    message: 'must be the http(s) URL of the GitLab instance',
  }),
  KASGATE_REGISTRY_HOST: optionalString.refine((s) => s === undefined || parseRegistryHost(s) !== undefined, {
    message: 'must be the registry host, with its port if it has one, as GitLab CI says it in $CI_REGISTRY (e.g. registry.example.com or gitlab.example.com:5050), without a scheme or path',
  }),
  KASGATE_TRIGGER_MODE: optionalString
    .transform((s) => (s ?? 'annotate').toLowerCase())
    .pipe(z.enum(TRIGGER_MODES, { message: 'must be annotate or receiver' })),
  KASGATE_WATCH_NAMESPACES: optionalString
    .transform((s) => (s ?? '').split(',').map((item) => item.trim()).filter(Boolean))
    .refine((names) => names.every((n) => n.length <= 63 && DNS_LABEL.test(n)), {
      message: 'must be a comma-separated list of namespace names',
    }),
  KASGATE_FLUX_WEBHOOK_RECEIVER_URL: optionalString.refine((s) => s === undefined || isWebhookReceiverUrl(s), {
    message: 'must be an http(s) URL or a path /api/v1/namespaces/<ns>/services/<svc>/proxy',
  }),
  KUBECONFIG: optionalString,
  KUBERNETES_SERVICE_HOST: optionalString,
  KASGATE_AGENT_HEALTH_HOST: optionalString.transform((s) => s ?? '0.0.0.0'),
  KASGATE_AGENT_HEALTH_PORT: int(8081, 0, 65535),
  KASGATE_RECONNECT_MAX_SECONDS: int(30, 1, 3600),
  KASGATE_SUBSCRIBE_DEBOUNCE_MS: int(1000, 0, 60_000),
  KASGATE_TRIGGER_ATTEMPTS: int(5, 1, 20),
  LOG_LEVEL: optionalString
    .transform((s) => s ?? 'info')
    .pipe(z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])),
});

export function parseAgentConfig(env: Record<string, string | undefined>): AgentConfig {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const variable = issue?.path[0] === undefined ? 'environment' : String(issue.path[0]);
    throw new AgentConfigError(`${variable} ${issue?.message ?? 'is invalid'}`);
  }
  const e = parsed.data;
  if ((e.KASGATE_AGENT_TOKEN === undefined) === (e.KASGATE_AGENT_TOKEN_FILE === undefined)) {
    throw new AgentConfigError('KASGATE_AGENT_TOKEN or KASGATE_AGENT_TOKEN_FILE must be set (exactly one of them)');
  }
  if (e.KUBECONFIG === undefined && e.KUBERNETES_SERVICE_HOST === undefined) {
    throw new AgentConfigError('KUBECONFIG must be set when the agent runs outside a cluster (KUBERNETES_SERVICE_HOST is not set)');
  }
  return {
    gatewayUrl: e.KASGATE_URL as string,
    agentToken: e.KASGATE_AGENT_TOKEN,
    agentTokenFile: e.KASGATE_AGENT_TOKEN_FILE,
    gitlabUrl: e.GITLAB_EXTERNAL_URL as string,
    registryHost: e.KASGATE_REGISTRY_HOST === undefined ? undefined : parseRegistryHost(e.KASGATE_REGISTRY_HOST),
    triggerMode: e.KASGATE_TRIGGER_MODE,
    watchNamespaces: e.KASGATE_WATCH_NAMESPACES,
    webhookReceiverUrl: e.KASGATE_FLUX_WEBHOOK_RECEIVER_URL ?? DEFAULT_WEBHOOK_RECEIVER_URL,
    kubeconfig: e.KUBECONFIG,
    health: { host: e.KASGATE_AGENT_HEALTH_HOST, port: e.KASGATE_AGENT_HEALTH_PORT },
    reconnect: { minMs: 500, maxMs: e.KASGATE_RECONNECT_MAX_SECONDS * 1000 },
    subscribeDebounceMs: e.KASGATE_SUBSCRIBE_DEBOUNCE_MS,
    trigger: { attempts: e.KASGATE_TRIGGER_ATTEMPTS, minDelayMs: 500, maxDelayMs: 10_000, timeoutMs: 10_000 },
    kubeRetryMs: 15_000,
    statusBatchMs: 1000,
    credentialsRetry: { minMs: 1000, maxMs: 300_000 },
    logLevel: e.LOG_LEVEL,
  };
}
