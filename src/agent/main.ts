/**
 * The in-cluster agent: `kasgate agent`. Finds Flux GitRepositories on our GitLab, keeps a
 * Receiver for each, and triggers the right ones when the gateway reports a push.
 */
import { readFile } from 'node:fs/promises';
import { CoreV1Api, CustomObjectsApi, KubernetesObjectApi, type KubeConfig } from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';
import type { SubscribeFrame } from '../protocol/kasgate-v1.js';
import { sleep } from './backoff.js';
import { AgentConfigError, parseAgentConfig, type AgentConfig } from './config.js';
import { PushDispatcher } from './dispatcher.js';
import { EventCursor } from './event-cursor.js';
import { GatewayClient } from './gateway-client.js';
import { createAgentMetrics, startHealthServer, type AgentMetrics, type AgentStatus, type HealthServer } from './health.js';
import { describeError, loadKubeConfig, missingFluxCrds, watchGitRepositories, type GitRepositoryWatch } from './kube.js';
import { ReceiverManager } from './receivers.js';
import { gitlabLocation } from './repo-url.js';
import { RepositoryRegistry } from './repositories.js';
import { ReceiverTrigger, receiverUrlFromHello } from './trigger.js';

export { parseAgentConfig, AgentConfigError, type AgentConfig } from './config.js';
export { TokenRevokedError } from './gateway-client.js';

export interface AgentDeps {
  logger?: Logger;
  /** Used instead of loading one from `config.kubeconfig` or the in-cluster service account. */
  kubeConfig?: KubeConfig;
}

export interface AgentHandle {
  /** Resolves after close(); rejects with TokenRevokedError when the gateway refuses the token for good. */
  readonly done: Promise<void>;
  /** Port of the health endpoint, when it is enabled. */
  readonly healthPort: number | undefined;
  readonly metrics: AgentMetrics;
  status(): AgentStatus;
  close(): Promise<void>;
}

export async function startAgent(config: AgentConfig, deps: AgentDeps = {}): Promise<AgentHandle> {
  const logger = deps.logger ?? pino({ name: 'kasgate-agent', level: config.logLevel });
  const kc = deps.kubeConfig ?? loadKubeConfig(config.kubeconfig);
  const objects = KubernetesObjectApi.makeApiClient(kc);
  const receivers = new ReceiverManager({ objects, core: kc.makeApiClient(CoreV1Api), custom: kc.makeApiClient(CustomObjectsApi) });
  const stop = new AbortController();
  const metrics = createAgentMetrics();
  const cursor = new EventCursor();
  const state = {
    fluxCrds: 'unknown' as AgentStatus['fluxCrds'],
    synced: false,
    gateway: 'connecting' as AgentStatus['gateway'],
    helloReceiverUrl: undefined as string | undefined,
  };
  let gateway: GatewayClient | undefined;
  let watch: GitRepositoryWatch | undefined;
  let subscribedKey: string | undefined;
  let debounce: NodeJS.Timeout | undefined;

  const sendSubscribe = (): void => {
    if (!gateway?.ready) return;
    const projects = registry.projectPaths();
    const key = JSON.stringify(projects);
    if (key === subscribedKey) return;
    const frame: SubscribeFrame = { type: 'subscribe', projects };
    // Only the first subscribe of a connection asks for a replay; later ones just change the set.
    if (subscribedKey === undefined && cursor.resumeAfter !== undefined) frame.resumeAfter = cursor.resumeAfter;
    if (gateway.send(frame)) {
      subscribedKey = key;
      logger.info({ projects, resumeAfter: frame.resumeAfter }, 'subscribed');
    }
  };

  const registry = new RepositoryRegistry({
    receivers,
    gitlab: gitlabLocation(config.gitlabUrl),
    logger,
    retryMs: config.kubeRetryMs,
    onChange: () => {
      metrics.managedRepositories.set(registry.size);
      clearTimeout(debounce);
      debounce = setTimeout(sendSubscribe, config.subscribeDebounceMs);
    },
  });
  const dispatcher = new PushDispatcher({
    registry,
    receivers,
    trigger: new ReceiverTrigger(kc, config.trigger, logger, stop.signal),
    cursor,
    metrics,
    logger,
    policy: config.trigger,
    stopSignal: stop.signal,
    receiverBaseUrl: () => state.helloReceiverUrl ?? config.webhookReceiverUrl,
    ack: (eventId) => void gateway?.send({ type: 'ack', eventId }),
  });

  const status = (): AgentStatus => ({
    ready: state.fluxCrds === 'found' && state.synced && state.gateway === 'connected',
    fluxCrds: state.fluxCrds,
    gitRepositoriesSynced: state.synced,
    gateway: state.gateway,
    managedRepositories: registry.size,
  });
  let health: HealthServer | undefined;
  if (config.health) health = await startHealthServer(config.health.host, config.health.port, metrics, status);

  const readToken = config.agentToken !== undefined ? async () => config.agentToken as string : () => readTokenFile(config.agentTokenFile as string);

  let settle: { resolve: () => void; reject: (err: unknown) => void } | undefined;
  const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  done.catch(() => {});

  const connect = (): void => {
    gateway = new GatewayClient({
      baseUrl: config.gatewayUrl,
      readToken,
      reconnect: config.reconnect,
      logger,
      handlers: {
        onHello: (frame) => {
          state.helloReceiverUrl = receiverUrlFromHello(frame.config);
          subscribedKey = undefined;
          logger.info({ agentId: frame.agentId, connectionId: frame.connectionId }, 'gateway said hello');
          sendSubscribe();
        },
        onSubscribed: (frame) => {
          const unverified = frame.projects.filter((p) => p.access === 'unverified').map((p) => p.path);
          if (unverified.length > 0) logger.info({ projects: unverified }, 'projects not granted: their pushes arrive only while public');
        },
        onPush: (frame) => dispatcher.handlePush(frame),
        onResync: (frame) => dispatcher.handleResync(frame.reason),
        onConnectedChange: (connected) => {
          state.gateway = connected ? 'connected' : 'connecting';
          metrics.connected.set(connected ? 1 : 0);
        },
      },
    });
    gateway.done.then(
      () => settle?.resolve(),
      (err: unknown) => {
        state.gateway = 'revoked';
        settle?.reject(err);
      },
    );
  };

  const lifecycle = async (): Promise<void> => {
    let reported: string | undefined;
    while (!stop.signal.aborted) {
      try {
        const missing = await missingFluxCrds(kc);
        if (missing.length === 0) break;
        state.fluxCrds = 'missing';
        if (reported !== missing.join()) logger.warn({ missing }, 'Flux CRDs not found; waiting for them');
        reported = missing.join();
      } catch (err) {
        logger.warn({ err: describeError(err) }, 'Kubernetes API discovery failed; retrying');
      }
      await sleep(config.kubeRetryMs, stop.signal);
    }
    if (stop.signal.aborted) return;
    state.fluxCrds = 'found';
    const handlers = { onUpsert: registry.upsert.bind(registry), onDelete: registry.remove.bind(registry) };
    watch = watchGitRepositories(kc, config.watchNamespaces, handlers, config.kubeRetryMs, logger);
    await Promise.race([watch.synced, new Promise((resolve) => stop.signal.addEventListener('abort', resolve, { once: true }))]);
    if (stop.signal.aborted) return;
    state.synced = true;
    logger.info({ gitRepositories: registry.size, projects: registry.projectPaths() }, 'GitRepositories listed');
    connect();
  };
  void lifecycle();

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      logger.info('agent stopping');
      stop.abort();
      clearTimeout(debounce);
      await gateway?.close();
      await watch?.stop();
      registry.close();
      await dispatcher.idle();
      await health?.close();
      state.gateway = state.gateway === 'revoked' ? 'revoked' : 'stopped';
      metrics.connected.set(0);
      logger.info('agent stopped');
      settle?.resolve();
    })());

  return { done, healthPort: health?.port, metrics, status, close };
}

async function readTokenFile(path: string): Promise<string> {
  const token = (await readFile(path, 'utf8')).trim();
  if (token === '') throw new Error(`the token file ${path} is empty`);
  return token;
}

/** `kasgate agent`: runs until SIGTERM or SIGINT, or until the gateway revokes the token (then it throws). */
export async function runAgent(env: NodeJS.ProcessEnv): Promise<void> {
  const config = parseAgentConfig(env);
  if (config.agentTokenFile !== undefined) {
    await readTokenFile(config.agentTokenFile).catch((err: unknown) => {
      throw new AgentConfigError(`KASGATE_AGENT_TOKEN_FILE cannot be read: ${err instanceof Error ? err.message : String(err)}`);
    });
  }
  const agent = await startAgent(config);
  const stopOnSignal = (): void => void agent.close();
  process.once('SIGTERM', stopOnSignal);
  process.once('SIGINT', stopOnSignal);
  try {
    await agent.done;
  } finally {
    process.off('SIGTERM', stopOnSignal);
    process.off('SIGINT', stopOnSignal);
    await agent.close();
  }
}
