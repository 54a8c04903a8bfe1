/**
 * The in-cluster agent: `kasgate agent`. Finds the Flux sources on our GitLab (GitRepositories)
 * and its container registry (OCIRepositories), subscribes to their projects, and asks Flux to
 * reconcile the right ones when the gateway reports a push or an artifact: by annotating them
 * (the default), or through a Receiver per source (receiver mode). It reports the state of those
 * sources and of the Kustomizations and HelmReleases on them (`status` frames), and writes the
 * credentials the gateway sends for Flux as Secrets.
 */
import { readFile } from 'node:fs/promises';
import { CoreV1Api, CustomObjectsApi, KubernetesObjectApi, type KubeConfig } from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';
import { ErrorCode, type SubscribeFrame } from '../protocol/kasgate-v1.js';
import { AnnotateReconciler } from './annotate.js';
import { sleep } from './backoff.js';
import { AgentConfigError, parseAgentConfig, type AgentConfig } from './config.js';
import { CredentialsWriter } from './credentials.js';
import { EventDispatcher } from './dispatcher.js';
import { EventCursor } from './event-cursor.js';
import { GatewayClient } from './gateway-client.js';
import { createAgentMetrics, startHealthServer, type AgentMetrics, type AgentStatus, type HealthServer } from './health.js';
import {
  GIT_REPOSITORY,
  HELM_RELEASE,
  KUSTOMIZATION,
  OCI_REPOSITORY,
  RECEIVER,
  crdName,
  describeError,
  loadKubeConfig,
  missingCrds,
  watchObjects,
  type CrdRef,
  type SourceWatch,
  type WatchHandlers,
} from './kube.js';
import type { Reconciler } from './reconciler.js';
import { ReceiverReconciler } from './receiver-mode.js';
import { ReceiverManager } from './receivers.js';
import { gitlabLocation } from './repo-url.js';
import { SourceRegistry, type SourceKind } from './sources.js';
import { StatusReporter } from './status-reporter.js';
import { ReceiverTrigger, receiverUrlFromConfig } from './trigger.js';
import { WorkloadRegistry, type WorkloadKind } from './workloads.js';

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
  /** The managed sources (what status reporting builds on). */
  readonly sources: SourceRegistry;
  /** The Kustomizations and HelmReleases the agent watches (those on managed sources are reported). */
  readonly workloads: WorkloadRegistry;
  status(): AgentStatus;
  close(): Promise<void>;
}

type WatchedKind = SourceKind | WorkloadKind;

/** How long the first full status set waits for the first lists of Kustomizations and HelmReleases. */
const PRIMED_TIMEOUT_MS = 10_000;

const KIND_CRDS: Record<WatchedKind, CrdRef> = {
  GitRepository: GIT_REPOSITORY,
  OCIRepository: OCI_REPOSITORY,
  Kustomization: KUSTOMIZATION,
  HelmRelease: HELM_RELEASE,
};

/**
 * What discovery must list before the agent starts: GitRepositories, and Receivers only in
 * receiver mode (annotate mode needs no notification-controller).
 */
export function requiredCrds(config: AgentConfig): CrdRef[] {
  return config.triggerMode === 'receiver' ? [GIT_REPOSITORY, RECEIVER] : [GIT_REPOSITORY];
}

/**
 * What the agent uses when it is there: OCIRepositories (`v1` since Flux 2.6) when it knows the
 * registry, and Kustomizations and HelmReleases (for status reporting; a cluster may run without
 * helm-controller). Without one of them the agent works without it and keeps looking for it.
 */
export function optionalCrds(config: AgentConfig): CrdRef[] {
  return [...(config.registryHost === undefined ? [] : [OCI_REPOSITORY]), KUSTOMIZATION, HELM_RELEASE];
}

export async function startAgent(config: AgentConfig, deps: AgentDeps = {}): Promise<AgentHandle> {
  const logger = deps.logger ?? pino({ name: 'kasgate-agent', level: config.logLevel });
  const kc = deps.kubeConfig ?? loadKubeConfig(config.kubeconfig);
  const stop = new AbortController();
  const metrics = createAgentMetrics();
  const cursor = new EventCursor();
  const state = {
    fluxCrds: 'unknown' as AgentStatus['fluxCrds'],
    missingCrds: [] as string[],
    synced: false,
    gateway: 'connecting' as AgentStatus['gateway'],
    /** `flux.webhookReceiverUrl` from the gateway (hello, then config frames). */
    gatewayReceiverUrl: undefined as string | undefined,
  };
  let gateway: GatewayClient | undefined;
  const watches: SourceWatch[] = [];
  /** The Kustomization and HelmRelease watches: the full status set waits for their first list. */
  const workloadWatches: SourceWatch[] = [];
  let subscribedKey: string | undefined;
  let scheduledKey: string | undefined;
  let debounce: NodeJS.Timeout | undefined;

  const registry = new SourceRegistry({ gitlab: gitlabLocation(config.gitlabUrl), registryHost: config.registryHost, logger });
  const workloads = new WorkloadRegistry(logger);
  const reporter = new StatusReporter({
    sources: registry,
    workloads,
    logger,
    metrics,
    batchMs: config.statusBatchMs,
    send: (text) => gateway?.sendText(text) ?? false,
    // Bounded: an API server that never answers a list must not hold back the sources' state.
    primed: () => Promise.race([Promise.all(workloadWatches.map((w) => w.settled)).then(() => undefined), sleep(PRIMED_TIMEOUT_MS, stop.signal)]),
  });
  const credentials = new CredentialsWriter({
    core: kc.makeApiClient(CoreV1Api),
    objects: KubernetesObjectApi.makeApiClient(kc),
    logger,
    metrics,
    send: (frame) => gateway?.send(frame) ?? false,
    retry: config.credentialsRetry,
  });

  const sendSubscribe = (): void => {
    if (!gateway?.ready) return;
    const projects = registry.subscriptionPaths();
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

  registry.onChange(() => {
    for (const kind of ['GitRepository', 'OCIRepository'] as const) metrics.managedSources.set({ kind }, registry.count(kind));
    // Status updates come often; only a change of the subscribed set (re)starts the debounce.
    const key = JSON.stringify(registry.subscriptionPaths());
    if (key === scheduledKey) return;
    scheduledKey = key;
    clearTimeout(debounce);
    debounce = setTimeout(sendSubscribe, config.subscribeDebounceMs);
  });

  const reconciler: Reconciler =
    config.triggerMode === 'annotate'
      ? new AnnotateReconciler(kc, config.trigger, logger, stop.signal)
      : new ReceiverReconciler({
          registry,
          receivers: new ReceiverManager({
            objects: KubernetesObjectApi.makeApiClient(kc),
            core: kc.makeApiClient(CoreV1Api),
            custom: kc.makeApiClient(CustomObjectsApi),
          }),
          trigger: new ReceiverTrigger(kc, config.trigger, logger, stop.signal),
          policy: config.trigger,
          logger,
          stopSignal: stop.signal,
          retryMs: config.kubeRetryMs,
          receiverBaseUrl: () => state.gatewayReceiverUrl ?? config.webhookReceiverUrl,
        });
  const dispatcher = new EventDispatcher({
    registry,
    reconciler,
    cursor,
    metrics,
    logger,
    ack: (eventId) => void gateway?.send({ type: 'ack', eventId }),
  });

  const status = (): AgentStatus => ({
    ready: state.fluxCrds === 'found' && state.synced && state.gateway === 'connected',
    triggerMode: config.triggerMode,
    fluxCrds: state.fluxCrds,
    missingCrds: state.missingCrds,
    sourcesSynced: state.synced,
    gateway: state.gateway,
    managedSources: { GitRepository: registry.count('GitRepository'), OCIRepository: registry.count('OCIRepository') },
  });
  let health: HealthServer | undefined;
  if (config.health) health = await startHealthServer(config.health.host, config.health.port, metrics, status);

  const readToken = config.agentToken !== undefined ? async () => config.agentToken as string : () => readTokenFile(config.agentTokenFile as string);

  let settle: { resolve: () => void; reject: (err: unknown) => void } | undefined;
  const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  done.catch(() => {});

  const takeGatewayConfig = (gatewayConfig: Record<string, unknown>): void => {
    const url = receiverUrlFromConfig(gatewayConfig);
    if (url !== state.gatewayReceiverUrl && config.triggerMode === 'receiver') {
      logger.info({ webhookReceiverUrl: url ?? config.webhookReceiverUrl }, 'receiver URL from the gateway');
    }
    state.gatewayReceiverUrl = url;
  };

  const connect = (): void => {
    gateway = new GatewayClient({
      baseUrl: config.gatewayUrl,
      readToken,
      reconnect: config.reconnect,
      logger,
      handlers: {
        onHello: (frame) => {
          takeGatewayConfig(frame.config);
          reporter.connected(frame.limits);
          subscribedKey = undefined;
          logger.info({ agentId: frame.agentId, connectionId: frame.connectionId }, 'gateway said hello');
          sendSubscribe();
        },
        onConfig: (frame) => takeGatewayConfig(frame.config),
        onSubscribed: (frame) => {
          reporter.subscribed();
          const unverified = frame.projects.filter((p) => p.access === 'unverified').map((p) => p.path);
          if (unverified.length > 0) logger.info({ projects: unverified }, 'projects not granted: their events arrive only while public');
        },
        onPush: (frame) => dispatcher.handlePush(frame),
        onArtifact: (frame) => dispatcher.handleArtifact(frame),
        onResync: (frame) => dispatcher.handleResync(frame.reason),
        onCredentials: (frame) => credentials.handle(frame),
        onError: (frame) => {
          // The gateway lost track of a full set being assembled: it asks for the set again.
          // The gateway asks for the full status set again, from part 1.
          if (frame.code === ErrorCode.StatusPartOutOfOrder) reporter.resendFull();
        },
        onConnectedChange: (connected) => {
          if (!connected) reporter.disconnected();
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
    logger.info(
      { triggerMode: config.triggerMode, registryHost: config.registryHost ?? null, namespaces: config.watchNamespaces },
      'agent starting',
    );
    if (config.registryHost === undefined) logger.info('KASGATE_REGISTRY_HOST is not set: OCIRepositories are not managed');
    const required = requiredCrds(config);
    const optional = optionalCrds(config);
    let missing: string[] = [];
    let reported: string | undefined;
    while (!stop.signal.aborted) {
      try {
        missing = await missingCrds(kc, [...required, ...optional]);
        state.missingCrds = missing;
        if (!required.some((crd) => missing.includes(crdName(crd)))) break;
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
    startWatch('GitRepository');
    const optionalKinds: WatchedKind[] = [
      ...(optional.includes(OCI_REPOSITORY) ? (['OCIRepository'] as const) : []),
      'Kustomization',
      'HelmRelease',
    ];
    for (const kind of optionalKinds) {
      if (missing.includes(crdName(KIND_CRDS[kind]))) void watchWhenFound(kind);
      else startWatch(kind);
    }
    const stopped = new Promise((resolve) => stop.signal.addEventListener('abort', resolve, { once: true }));
    // The sources must be known before subscribing; Kustomizations and HelmReleases only matter
    // for the status set, which waits for them by itself.
    await Promise.race([Promise.all(watches.map((w) => w.synced)), stopped]);
    if (stop.signal.aborted) return;
    state.synced = true;
    logger.info(
      { gitRepositories: registry.count('GitRepository'), ociRepositories: registry.count('OCIRepository'), projects: registry.subscriptionPaths() },
      'sources listed',
    );
    connect();
  };

  const startWatch = (kind: WatchedKind): void => {
    if (kind === 'Kustomization' || kind === 'HelmRelease') {
      const handlers: WatchHandlers = { onUpsert: (o) => workloads.upsert(kind, o), onDelete: (o) => workloads.remove(kind, o) };
      workloadWatches.push(watchObjects(kc, KIND_CRDS[kind], config.watchNamespaces, handlers, config.kubeRetryMs, logger));
      return;
    }
    const handlers: WatchHandlers = { onUpsert: (o) => registry.upsert(kind, o), onDelete: (o) => registry.remove(kind, o) };
    watches.push(watchObjects(kc, KIND_CRDS[kind], config.watchNamespaces, handlers, config.kubeRetryMs, logger));
  };

  /** A CRD the agent can do without: look for it until it appears, then watch its objects. */
  const watchWhenFound = async (kind: WatchedKind): Promise<void> => {
    const crd = KIND_CRDS[kind];
    const what = kind === 'OCIRepository' ? `${kind}s are not managed` : `${kind}s are not reported`;
    logger.warn({ missing: crdName(crd) }, `${kind} CRD not found: ${what} until it appears`);
    while (!stop.signal.aborted) {
      await sleep(config.kubeRetryMs, stop.signal);
      if (stop.signal.aborted) return;
      try {
        if ((await missingCrds(kc, [crd])).length > 0) continue;
      } catch (err) {
        logger.warn({ err: describeError(err) }, 'Kubernetes API discovery failed; retrying');
        continue;
      }
      state.missingCrds = state.missingCrds.filter((name) => name !== crdName(crd));
      logger.info({ crd: crdName(crd) }, `${kind} CRD found; watching ${kind}s`);
      startWatch(kind);
      return;
    }
  };
  void lifecycle();

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      logger.info('agent stopping');
      stop.abort();
      clearTimeout(debounce);
      reporter.close();
      credentials.close();
      await gateway?.close();
      await Promise.all([...watches, ...workloadWatches].map((w) => w.stop()));
      reconciler.close();
      await Promise.all([dispatcher.idle(), credentials.idle()]);
      registry.close();
      workloads.close();
      await health?.close();
      state.gateway = state.gateway === 'revoked' ? 'revoked' : 'stopped';
      metrics.connected.set(0);
      logger.info('agent stopped');
      settle?.resolve();
    })());

  return { done, healthPort: health?.port, metrics, sources: registry, workloads, status, close };
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
