/**
 * The composition root: pools, Redis, stores, the hub and the dispatcher, wired once, and their
 * shutdown in reverse order. Everything else receives what it needs from here.
 */
import type pg from 'pg';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { createPool } from './db/pool.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './db/embedded.js';
import { migrate } from './db/migrate.js';
import { resolveSecrets } from './embedded-secrets.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createAgentStore, type AgentStore } from './agents/agent-store.js';
import { createTokenStore, type TokenStore } from './agents/token-store.js';
import { createCursorStore, type CursorStore } from './agents/cursor-store.js';
import { createProjectStore, type ProjectStore } from './projects/project-store.js';
import { createEventLog, type EventLog } from './events/event-log.js';
import { startRetention } from './events/retention.js';
import { createWebhookVerifier } from './gitlab/verify.js';
import { createWebhookIngest, type WebhookIngest } from './gitlab/ingest.js';
import { createRegistryIngest, type RegistryIngest } from './registry/ingest.js';
import { describeStoreError, storeAddress } from './db/store-failure.js';
import { describeRedisError, redisAddress } from './fanout/redis-failure.js';
import { connectRedis, type RedisConnections } from './fanout/redis-connections.js';
import { createInProcessBus, type Bus } from './fanout/bus.js';
import { createRedisBus } from './fanout/redis-bus.js';
import { createInProcessPresence, type Presence } from './fanout/presence.js';
import { createRedisPresence } from './fanout/redis-presence.js';
import { createHub, type Hub } from './fanout/hub.js';
import { startDispatcher, type Dispatcher } from './fanout/dispatcher.js';
import { applyControl, isControlMessage, sendControl } from './fanout/control.js';
import { createLiveFeed, type LiveFeed } from './ui/live-feed.js';
import type { ClusterView } from './ui/cluster-view.js';
import { createStatusQueries } from './ui/status-queries.js';
import { createGitLabApi, type GitLabApi } from './gitlab/api/client.js';
import type { StatusWorker } from './gitlab/commit-statuses/outbox.js';
import { startDeploymentTracking } from './deployments/start.js';
import type { DeliveryRecorder } from './deployments/deliveries.js';
import type { DeploymentStore } from './deployments/deployment-store.js';
import { createChangeFeed, type ChangeFeed } from './deployments/changes.js';
import type { ClusterState } from './cluster/cluster-state.js';
import { createFluxAccessStore, type FluxAccessStore } from './agents/config-file/flux-access-store.js';
import { startCredentials, type Credentials } from './credentials/credentials.js';
import { forgetConfigFiles, startConfigRefresher, type ConfigRefresher } from './agents/config-file/refresher.js';
import { createProjectVisibility, type ProjectVisibility } from './gitlab/project-visibility.js';

export interface AppContext {
  config: Config;
  log: Logger;
  metrics: Metrics;
  pool: pg.Pool;
  redis: Redis | undefined;
  adminToken: string;
  agents: AgentStore;
  tokens: TokenStore;
  cursors: CursorStore;
  projects: ProjectStore;
  events: EventLog;
  ingest: WebhookIngest;
  registryIngest: RegistryIngest;
  bus: Bus;
  presence: Presence;
  hub: Hub;
  dispatcher: Dispatcher;
  /** The status page's live feed (one per replica). */
  live: LiveFeed;
  /** Cluster state as the status page reads it (objects, deliveries, deployments). */
  clusterView: ClusterView;
  retention: ReturnType<typeof startRetention>;
  /** The GitLab API client (commit statuses; config files, deploy tokens); undefined without KASGATE_GITLAB_URL/TOKEN. */
  gitlabApi: GitLabApi | undefined;
  /** Agents' Flux objects as reported in status frames. */
  cluster: ClusterState;
  /** Per-agent deliveries (the hub and replay record them; deployments/deliveries.ts writes them). */
  deliveries: DeliveryRecorder;
  /** Deliveries and deployments of events, for the API and the status page. */
  deployments: DeploymentStore;
  /** What this replica just changed, for live views. */
  changes: ChangeFeed;
  /** Posts the commit statuses owed; undefined without the GitLab API. */
  statusWorker: StatusWorker | undefined;
  /** The accepted flux_access of each agent's config file (empty without the GitLab API). */
  fluxAccess: FluxAccessStore;
  /** Flux's deploy tokens: made, sent, rotated and revoked (inactive without the GitLab API). */
  credentials: Credentials;
  /** Reads agents' config files (src/agents/config-file); undefined without the GitLab API. */
  configFiles: ConfigRefresher | undefined;
  /** Which watched projects GitLab says are public (subscribe answers); undefined without the GitLab API. */
  projectVisibility: ProjectVisibility | undefined;
  /** Per dependency: 'ok' or what is wrong. */
  readiness(): Promise<Record<string, string>>;
  close(): Promise<void>;
}

export async function createContext(config: Config, log: Logger): Promise<AppContext> {
  const closers: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const closer of closers.toReversed()) await closer().catch((err: Error) => log.warn({ err: err.message }, 'error during shutdown'));
  };

  try {
    let embedded: EmbeddedPostgres | undefined;
    let connection: pg.ClientConfig;
    if (config.databaseUrl === undefined) {
      embedded = await startEmbeddedPostgres(config.dataDir);
      closers.push(() => embedded!.close());
      connection = embedded.connection;
      log.info({ dataDir: config.dataDir }, 'DATABASE_URL not set: using embedded PGlite');
    } else {
      connection = { connectionString: config.databaseUrl };
    }
    await migrate(connection, config.dbSchema, log);
    // Embedded: one connection. pglite-socket feeds every socket's protocol messages into PGlite's
    // one session in arrival order, so two connections running parameterized queries at once can
    // bind each other's unnamed statements ("malformed array literal"); PGlite runs one statement
    // at a time anyway.
    const pool = createPool(
      { connection, schema: config.dbSchema, timeoutMs: config.dbTimeoutMs, max: embedded ? 1 : 10 },
      log,
    );
    closers.push(() => pool.end());
    // Cluster state, deployments and commit statuses write from their own small pool, so that no
    // amount of agent status traffic or GitLab trouble can queue a webhook behind it (on Postgres),
    // committing asynchronously so that their WAL flushes do not delay the event log's.
    const backgroundPool = embedded
      ? pool
      : createPool({ connection, schema: config.dbSchema, timeoutMs: Math.max(config.dbTimeoutMs, 10_000), max: 6, asyncCommit: true }, log);
    if (!embedded) closers.push(() => backgroundPool.end());

    const secrets = embedded
      ? await resolveSecrets(config, log)
      : { adminToken: config.adminToken!, webhookSecrets: config.webhookSecrets, encryptionKey: config.encryptionKey };

    let redis: RedisConnections | undefined;
    let bus: Bus;
    let presence: Presence;
    const presenceTtlMs = 3 * config.heartbeatSeconds * 1000;
    if (config.redisUrl !== undefined) {
      const conns = await connectRedis(config.redisUrl, log);
      closers.push(async () => {
        conns.subscriber.disconnect();
        await conns.client.quit().catch(() => conns.client.disconnect());
      });
      redis = conns;
      bus = createRedisBus(conns.client, conns.subscriber, config.redisPrefix, log);
      presence = createRedisPresence(conns.client, config.redisPrefix, presenceTtlMs);
    } else {
      log.warn('REDIS_URL not set: in-process bus and presence; only one replica is supported');
      bus = createInProcessBus();
      presence = createInProcessPresence(presenceTtlMs);
    }
    closers.push(() => bus.close());
    const live = createLiveFeed({ bus, presence, queries: createStatusQueries(pool), cluster: () => context.clusterView, log });
    closers.push(async () => live.close());
    presence = live.observePresence(presence);

    const metrics = createMetrics();
    // Assigned below: the event log and the dispatcher need each other.
    let dispatcher: Dispatcher | undefined;
    let configFiles: ConfigRefresher | undefined;
    const agents = createAgentStore(pool);
    const tokens = createTokenStore(pool, log);
    closers.push(() => tokens.close());
    const cursors = createCursorStore(pool, log);
    closers.push(() => cursors.close());
    const projects = createProjectStore(pool);
    const fluxAccess = createFluxAccessStore(pool, log);
    const events = createEventLog(pool, {
      log,
      metrics,
      onAppended: (batch) => {
        const message = { type: 'events' as const, ...batch, storedAt: Date.now() };
        // Local agents need no round trip through Redis (nor Redis at all); the dispatcher
        // drops the copy that comes back on the bus.
        void dispatcher?.offer(message);
        // Committed by now; this only marks agents due (no GitLab call on the webhook's path).
        configFiles?.pushed(batch.events);
        bus.publish(message).catch((err: Error) => {
          log.warn({ err: err.message, through: batch.events.at(-1)?.id }, 'doorbell not rung; other replicas catch up by sweep');
        });
      },
    });

    // A webhook waits for the store a little longer than one query may take, then answers 503.
    const deadlineMs = config.dbTimeoutMs + 300;
    const ingest = createWebhookIngest({
      verifier: createWebhookVerifier(secrets.webhookSecrets, config.webhookSigningKeys),
      events,
      metrics,
      deadlineMs,
    });
    const registryIngest = createRegistryIngest({ secrets: config.registrySecrets, events, projects, metrics, deadlineMs });

    const changes = createChangeFeed();
    const gitlabApi = config.gitlab
      ? createGitLabApi({
          url: config.gitlab.url,
          token: config.gitlab.token,
          requestsPerSecond: config.gitlab.requestsPerSecond,
          burst: config.gitlab.burst,
          timeoutMs: config.gitlab.timeoutMs,
          log,
          metrics,
        })
      : undefined;
    if (gitlabApi) closers.push(async () => gitlabApi.close());
    const tracking = startDeploymentTracking({
      config,
      pool: backgroundPool,
      gitlabApi,
      presence,
      changes,
      metrics,
      log,
    });
    closers.push(...tracking.closers);
    const { statusWorker, cluster, deliveries, deployments, clusterView } = tracking;
    // Deployments this replica changed: one bus message, and every replica's page re-reads them.
    changes.onEvents((eventIds, deliveriesOnly) => live.deploymentsChanged(eventIds, deliveriesOnly));

    const hub = createHub({ deliveries, agents, tokens, presence, metrics, log, heartbeatSeconds: config.heartbeatSeconds });
    closers.push(async () => hub.stop());
    dispatcher = await startDispatcher({ events, hub: live.dispatchingTo(hub), bus, metrics, log, sweepSeconds: config.sweepSeconds });
    live.startAfter(dispatcher.highestDispatched);
    closers.push(() => dispatcher.stop());
    const credentials = startCredentials({
      pool: backgroundPool,
      api: gitlabApi,
      source: fluxAccess,
      agents,
      bus,
      localSessions: (agentId) => hub.localSessions(agentId),
      encryptionKey: secrets.encryptionKey,
      registryHost: config.registryHost,
      replicaId: config.replicaId,
      leaseMs: 3 * (config.gitlab?.timeoutMs ?? 10_000) + 5000,
      log,
      metrics,
    });
    closers.push(() => credentials.stop());
    bus.onMessage((message) => {
      if (isControlMessage(message)) applyControl(hub, message, log);
      else if (message.type === 'credentials_due') credentials.due(message.agentId);
    });
    if (gitlabApi) {
      configFiles = startConfigRefresher({
        pool: backgroundPool,
        api: gitlabApi,
        fluxAccess,
        control: (message) => sendControl({ bus, hub, log }, message),
        log,
        metrics,
        refreshMs: config.configRefreshMs,
        // Registration answers within a few seconds whatever GitLab does; a slow read lands later.
        registrationWaitMs: Math.min(config.gitlab!.timeoutMs, 3000),
      });
      closers.push(() => configFiles!.stop());
    } else {
      await forgetConfigFiles(pool, log);
    }
    const projectVisibility = gitlabApi ? createProjectVisibility({ api: gitlabApi, log, waitMs: 800 }) : undefined;
    // Control messages may have been lost while the bus was away: re-check access and tokens now.
    bus.onReconnect(() => void hub.reconcile());
    const retention = startRetention(pool, config.eventRetentionMs, log);
    closers.push(() => retention.stop());

    const context: AppContext = {
      config,
      log,
      metrics,
      pool,
      redis: redis?.client,
      adminToken: secrets.adminToken,
      agents,
      tokens,
      cursors,
      projects,
      events,
      ingest,
      registryIngest,
      bus,
      presence,
      hub,
      dispatcher,
      live,
      clusterView,
      retention,
      gitlabApi,
      cluster,
      deliveries,
      deployments,
      changes,
      statusWorker,
      fluxAccess,
      credentials,
      configFiles,
      projectVisibility,
      async readiness() {
        const degraded = `cross-replica fan-out degraded to the periodic sweep (every ${config.sweepSeconds} s)`;
        const postgres = pool.query('SELECT 1').then(
          () => 'ok',
          (err: unknown) =>
            `unreachable at ${storeAddress(connection, embedded !== undefined)}: ${describeStoreError(err, config.dbTimeoutMs)}; webhooks are answered 503 (senders retry) until it is back`,
        );
        const redisState = async (conns: RedisConnections, url: string): Promise<string> => {
          try {
            await presence.ping();
          } catch (err) {
            return `unreachable at ${redisAddress(url)}: ${describeRedisError(conns.lastError() ?? (err as Error))}; ${degraded}`;
          }
          return bus.joined ? 'ok' : `connected to ${redisAddress(url)} but not subscribed to the bus yet; ${degraded}`;
        };
        const [postgresState, redisCheck] = await Promise.all([
          postgres,
          redis && config.redisUrl !== undefined ? redisState(redis, config.redisUrl) : 'ok (in-process)',
        ]);
        const checks: Record<string, string> = { postgres: postgresState, redis: redisCheck };
        if (gitlabApi) {
          const health = gitlabApi.health();
          // Degraded, never not-ready: webhooks and deliveries do not need GitLab's API.
          checks.gitlab = health.ok
            ? 'ok'
            : `degraded since ${health.since}: ${health.message}; webhooks and deliveries go on, config files and commit statuses wait`;
        }
        if (credentials.enabled) checks.credentials = credentials.readiness();
        return checks;
      },
      close,
    };
    return context;
  } catch (err) {
    await close();
    throw err;
  }
}
