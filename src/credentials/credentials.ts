/**
 * Deploy tokens for Flux (DESIGN.md "GitLab API: agent configuration, access and Flux's tokens").
 *
 * For each accepted flux_access entry of an agent, a project or group deploy token is made on
 * GitLab (the role as its scope, named `kasgate-<agent>-<secret_name>`, expiring after `rotate`),
 * sealed into Postgres (AES-256-GCM, see seal.ts) and sent to the agent's connections in a
 * `credentials` frame; `credentials_applied` drops the sealed copy. At two thirds of the lifetime
 * a new token is made and sent; the one it replaces is revoked on GitLab only once the agent has
 * applied the new one. Tokens of entries no longer in flux_access, and of deleted agents, are
 * revoked at once.
 *
 * Who does what:
 * - GitLab work (make, revoke) is per agent, claimed by one replica at a time (a lease on
 *   flux_credential_work, FOR UPDATE SKIP LOCKED) and retried with backoff when GitLab fails;
 *   it is asked for when flux_access changes, when the agent answers, and when a rotation is due.
 *   Nothing here runs on the webhook path.
 * - Sending: the token never travels over the bus (Redis). A replica that made tokens rings
 *   `credentials_due {agentId}`; every replica with a connection of that agent reads the sealed
 *   tokens, opens them and sends them there. A new connection gets what is still unapplied at
 *   once; tokens unanswered (or failed) are sent again with backoff.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from 'pino';
import { isUuid, type AgentStore } from '../agents/agent-store.js';
import type { FluxAccessEntry, FluxAccessSource } from '../agents/config-file/flux-access.js';
import type { Bus } from '../fanout/bus.js';
import type { AgentSession } from '../fanout/agent-session.js';
import { backoffMs, type GitLabApi } from '../gitlab/api/client.js';
import { createDeployToken, revokeDeployToken } from '../gitlab/api/deploy-tokens.js';
import type { Metrics } from '../metrics.js';
import { sleep } from '../gitlab/api/rate-limiter.js';
import type { CredentialsAppliedFrame, CredentialsFailedFrame, CredentialsFrame } from '../protocol/kasgate-v1.js';
import { createCredentialStore, type CredentialKind, type CredentialRow, type CredentialStore } from './credential-store.js';
import { open, seal } from './seal.js';
import { createNap } from '../lib/nap.js';

export interface CredentialsOptions {
  pool: pg.Pool;
  /** Undefined without KASGATE_GITLAB_URL/TOKEN: nothing is made, nothing runs. */
  api: GitLabApi | undefined;
  source: FluxAccessSource;
  agents: Pick<AgentStore, 'get'>;
  bus: Bus;
  /** This replica's open connections of an agent. */
  localSessions: (agentId: string) => AgentSession[];
  /** KASGATE_ENCRYPTION_KEY; without it no token is made (it would have to wait in clear). */
  encryptionKey: Buffer | undefined;
  /** KASGATE_REGISTRY_HOST, for read_registry entries (dockerconfigjson). */
  registryHost: string | undefined;
  replicaId: string;
  leaseMs: number;
  log: Logger;
  metrics: Pick<Metrics, 'deployTokens'>;
  pollMs?: number;
  /** How often every agent with flux_access is looked at even if nothing asked (default 10 min). */
  recheckMs?: number;
}

const NO_KEY = 'KASGATE_ENCRYPTION_KEY is not set: kasgate makes no deploy tokens (one waiting for its agent would have to be kept in clear)';
const NO_REGISTRY = 'needs KASGATE_REGISTRY_HOST (the registry host for the dockerconfigjson Secret); no token made';

/** GitLab work tried again after 1 s doubling, at most 5 minutes. */
const workRetryMs = (attempts: number) => backoffMs(attempts, 1000, 300_000);
/** A token unanswered (or failed on the agent) is sent again after 5 s doubling, at most 5 minutes. */
export const resendMs = (attempts: number) => backoffMs(attempts, 5000, 300_000);

const slotOf = (r: { target_kind: string; target_path: string; secret_name: string }) =>
  `${r.target_kind}:${r.target_path.toLowerCase()}:${r.secret_name}`;
const entrySlot = (e: FluxAccessEntry) => slotOf({ target_kind: e.kind, target_path: e.path, secret_name: e.secretName });
const sameSet = (a: string[], b: string[]) => a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');
const kindOf = (e: FluxAccessEntry): CredentialKind => (e.role === 'read_registry' ? 'dockerconfigjson' : 'basic-auth');

export function startCredentials(options: CredentialsOptions) {
  const { api: baseApi, source, bus, log, encryptionKey, registryHost, replicaId } = options;
  const store: CredentialStore = createCredentialStore(options.pool);
  const pollMs = options.pollMs ?? 1000;
  const recheckMs = options.recheckMs ?? 600_000;
  // One attempt per call: the work queue retries, durably, and a lease stays short.
  const api = baseApi?.withPolicy({ maxAttempts: 1 });
  const state = { stopped: false };
  const nap = createNap();

  if (api && !encryptionKey) log.warn(NO_KEY);

  const registryFor = (entry: FluxAccessEntry) => (entry.role === 'read_registry' ? (registryHost ?? null) : null);

  async function make(agentId: string, agentName: string, entry: FluxAccessEntry, rotateSeconds: number): Promise<void> {
    await store.extendLease(agentId, replicaId, options.leaseMs);
    const createdAt = new Date();
    const lifetimeMs = rotateSeconds * 1000;
    const expiresAt = new Date(createdAt.getTime() + lifetimeMs);
    const made = await createDeployToken(api!, { kind: entry.kind, path: entry.path }, {
      name: `kasgate-${agentName}-${entry.secretName}`,
      scopes: [entry.role],
      expiresAt,
    });
    const id = randomUUID();
    try {
      await store.insert({
        id,
        agentId,
        targetKind: entry.kind,
        targetPath: entry.path,
        role: entry.role,
        secretName: entry.secretName,
        namespaces: entry.namespaces,
        kind: kindOf(entry),
        registry: registryFor(entry),
        gitlabTokenId: made.id,
        username: made.username,
        sealedToken: seal(encryptionKey!, made.token, id),
        createdAt,
        expiresAt,
        rotateAt: new Date(createdAt.getTime() + Math.floor((lifetimeMs * 2) / 3)),
        firstResendAt: new Date(createdAt.getTime() + resendMs(1)),
      });
    } catch (err) {
      // Not recorded, so never sent: take it back rather than leave it live on GitLab.
      await revokeDeployToken(api!, { kind: entry.kind, path: entry.path }, made.id).catch(() => {});
      throw err;
    }
    options.metrics.deployTokens.inc({ event: 'created' });
    log.info({ agentId, credentialId: id, [entry.kind]: entry.path, secretName: entry.secretName, deployTokenId: made.id, expiresAt }, 'deploy token made for Flux');
  }

  /** One look at an agent's tokens; returns when to look again, and what went wrong. */
  async function reconcile(agentId: string): Promise<{ nextInMs: number; error: string | null; failed: boolean; done: boolean }> {
    const agent = await options.agents.get(agentId);
    const access = agent ? await source.fluxAccessOf(agentId) : undefined;
    const desired = access?.entries ?? [];
    const now = Date.now();
    let nextAt = now + recheckMs;
    const errors: string[] = [];
    let failed = false;
    let made = 0;
    const fail = (what: string, err: unknown) => {
      errors.push(`${what}: ${(err as Error).message}`);
      failed = true;
    };

    let live = await store.live(agentId);
    const wanted = new Set<string>();
    for (const entry of desired) {
      const slot = entrySlot(entry);
      if (wanted.has(slot)) continue;
      wanted.add(slot);
      const usable = live.filter((r) => slotOf(r) === slot && r.revoke_reason === null);
      const newest = usable[0];
      const fits = newest !== undefined && newest.role === entry.role && sameSet(newest.namespaces, entry.namespaces) && newest.registry === registryFor(entry);
      const expired = newest !== undefined && newest.expires_at.getTime() <= now;
      const rotationDue = newest !== undefined && newest.state === 'applied' && newest.rotate_at.getTime() <= now;
      if (fits && !expired && !rotationDue) {
        // Not applied yet: nothing to rotate before it is (or it expires and is made again).
        nextAt = Math.min(nextAt, (newest.state === 'applied' ? newest.rotate_at : newest.expires_at).getTime());
        continue;
      }
      const what = `${entry.kind} ${entry.path} (${entry.secretName})`;
      if (!encryptionKey) {
        errors.push(NO_KEY);
        continue;
      }
      if (entry.role === 'read_registry' && !registryHost) {
        errors.push(`${what}: read_registry ${NO_REGISTRY}`);
        continue;
      }
      try {
        await make(agentId, agent!.name, entry, access!.rotateSeconds);
        made++;
        nextAt = Math.min(nextAt, now + Math.max(1000, Math.floor((access!.rotateSeconds * 2000) / 3)));
        await store.markForRevocation(usable.map((r) => r.id), 'superseded');
      } catch (err) {
        fail(`making a deploy token for ${what}`, err);
      }
    }
    const gone = live.filter((r) => !wanted.has(slotOf(r)) && r.revoke_reason === null).map((r) => r.id);
    await store.markForRevocation(gone, agent ? 'removed from flux_access' : 'agent deleted');
    if (made > 0) await announce(agentId);

    live = await store.live(agentId);
    for (const row of live) {
      if (row.revoke_reason === null) continue;
      // A replaced token stays valid until the agent has applied a newer one of its slot.
      if (row.revoke_reason === 'superseded' && !live.some((o) => slotOf(o) === slotOf(row) && o.created_at > row.created_at && o.state === 'applied')) {
        continue;
      }
      try {
        await store.extendLease(agentId, replicaId, options.leaseMs);
        await revokeDeployToken(api!, { kind: row.target_kind, path: row.target_path }, Number(row.gitlab_token_id));
        await store.markRevoked(row.id);
        options.metrics.deployTokens.inc({ event: 'revoked' });
        log.info({ agentId, credentialId: row.id, deployTokenId: row.gitlab_token_id, reason: row.revoke_reason }, 'deploy token revoked');
      } catch (err) {
        await store.setError(row.id, `revoking: ${(err as Error).message}`).catch(() => {});
        fail(`revoking deploy token ${row.gitlab_token_id} of ${row.target_kind} ${row.target_path}`, err);
      }
    }
    const done = !agent && (await store.live(agentId)).length === 0;
    return { nextInMs: Math.max(0, nextAt - Date.now()), error: errors.length > 0 ? errors.join('; ') : null, failed, done };
  }

  async function runWork(): Promise<void> {
    const claimed = await store.claimWork(replicaId, options.leaseMs, 8);
    for (const work of claimed) {
      if (state.stopped) break;
      try {
        const outcome = await reconcile(work.agent_id);
        if (outcome.done) {
          await store.forget(work.agent_id, replicaId);
          continue;
        }
        const nextInMs = outcome.failed ? Math.min(outcome.nextInMs, workRetryMs(work.attempts)) : outcome.nextInMs;
        if (outcome.error !== null && (work.attempts === 1 || work.attempts % 10 === 0 || outcome.error !== work.last_error)) {
          log.warn({ agentId: work.agent_id, attempts: work.attempts, retryInMs: Math.round(nextInMs), err: outcome.error }, 'deploy tokens for Flux: not everything could be done; will retry');
        }
        await store.finishWork(work.agent_id, replicaId, { nextInMs, error: outcome.error, failed: outcome.failed });
      } catch (err) {
        const message = (err as Error).message;
        log.warn({ agentId: work.agent_id, err: message }, 'deploy tokens for Flux: look failed; will retry');
        await store
          .finishWork(work.agent_id, replicaId, { nextInMs: workRetryMs(work.attempts), error: message, failed: true })
          .catch(() => {});
      }
    }
  }

  /** Rings every replica (this one too) to send the agent's waiting tokens where it is connected. */
  async function announce(agentId: string): Promise<void> {
    try {
      await bus.publish({ type: 'credentials_due', agentId });
    } catch (err) {
      log.warn({ agentId, err: (err as Error).message }, 'bus unavailable; sending credentials from this replica only (others resend later)');
      await deliver(agentId);
    }
  }

  /** Sends the agent's waiting tokens to its connections here (or to the one given). */
  async function deliver(agentId: string, only?: AgentSession): Promise<void> {
    const sessions = (only ? [only] : options.localSessions(agentId)).filter((s) => s.isOpen);
    if (sessions.length === 0 || !encryptionKey) return;
    const rows = await store.sealedOf(agentId);
    const sent: string[] = [];
    for (const row of rows) {
      const password = open(encryptionKey, row.sealed_token, row.id);
      if (password === undefined) {
        log.warn({ agentId, credentialId: row.id }, 'a stored deploy token does not open under KASGATE_ENCRYPTION_KEY; it is revoked and made again');
        await store.dropUnreadable(row.id);
        await schedule(agentId);
        continue;
      }
      const frame: CredentialsFrame = {
        type: 'credentials',
        id: row.id,
        secretName: row.secret_name,
        namespaces: row.namespaces,
        kind: row.kind,
        username: row.username,
        password,
        registry: row.registry,
        expiresAt: row.expires_at.toISOString(),
      };
      for (const session of sessions) session.send(frame);
      sent.push(row.id);
    }
    await store.markSent(sent);
  }

  async function schedule(agentId: string): Promise<void> {
    await store.schedule(agentId);
    nap.wake();
  }

  if (api) {
    source.onFluxAccessChanged((agentId) => {
      schedule(agentId).catch((err: Error) => log.warn({ agentId, err: err.message }, 'could not schedule a look at deploy tokens; the periodic check does it'));
    });
  }

  const loop = (async () => {
    if (!api) return;
    let lastSweep = 0;
    while (!state.stopped) {
      try {
        if (Date.now() - lastSweep >= recheckMs) {
          lastSweep = Date.now();
          await store.scheduleMissing(await source.agentsWithFluxAccess());
        }
        for (const agentId of await store.claimResends(resendMs)) await announce(agentId);
        await runWork();
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'deploy tokens for Flux: store unavailable; retrying');
      }
      if (state.stopped) break;
      await nap.sleep(pollMs);
    }
  })();

  return {
    enabled: api !== undefined,

    /** For /readyz: 'ok', or why no token is made (degraded, never not-ready). */
    readiness(): string {
      if (!api) return 'off (no GitLab API)';
      return encryptionKey ? 'ok' : `degraded: ${NO_KEY}`;
    },

    /** A connection of the agent said hello: it gets every token still waiting. */
    connected(session: AgentSession): void {
      if (!api) return;
      deliver(session.agentId, session).catch((err: Error) => log.warn({ agentId: session.agentId, err: err.message }, 'could not send waiting credentials; resent later'));
    },

    /** A bus doorbell: tokens are waiting for this agent. */
    due(agentId: string): void {
      if (!api) return;
      deliver(agentId).catch((err: Error) => log.warn({ agentId, err: err.message }, 'could not send waiting credentials; resent later'));
    },

    /** The agent's answer to a credentials frame. */
    async received(agentId: string, frame: CredentialsAppliedFrame | CredentialsFailedFrame): Promise<void> {
      if (!api || !isUuid(frame.id)) return;
      if (frame.type === 'credentials_applied') {
        if (await store.markApplied(agentId, frame.id)) {
          options.metrics.deployTokens.inc({ event: 'applied' });
          log.info({ agentId, credentialId: frame.id }, 'Flux credentials applied by the agent');
          // Tokens it replaces may now be revoked.
          await schedule(agentId);
        }
      } else if (await store.markFailed(agentId, frame.id, frame.message, resendMs)) {
        options.metrics.deployTokens.inc({ event: 'failed' });
        log.warn({ agentId, credentialId: frame.id, err: frame.message }, 'the agent could not apply Flux credentials; sent again later');
      }
    },

    /** What GET /agents/{id}/credentials shows (never the secret). */
    async list(agentId: string): Promise<{ credentials: CredentialRow[]; error: string | null }> {
      const [credentials, error] = await Promise.all([store.list(agentId), store.workError(agentId)]);
      return { credentials, error: error ?? (api && !encryptionKey ? NO_KEY : null) };
    },

    /** Look at the agent's tokens soon (on any replica). */
    schedule,

    async stop(): Promise<void> {
      state.stopped = true;
      api?.close();
      nap.wake();
      await Promise.race([loop, sleep(2000)]);
      await store.releaseLeases(replicaId).catch(() => {});
    },
  };
}

export type Credentials = ReturnType<typeof startCredentials>;
