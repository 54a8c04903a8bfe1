/**
 * Sign-in sessions of the status page, kept by @fastify/session: a random session id in a signed
 * cookie, the session itself in Redis when there is one (so any replica can serve the browser) or
 * in process otherwise (one replica). The keys that sign the cookies are derived from the admin
 * token with HKDF, so every replica derives the same ones without another secret to configure,
 * and changing the admin token signs everybody out.
 */
import { hkdfSync } from 'node:crypto';
import type { Session } from 'fastify';
import type { Redis } from 'ioredis';
import fastifySession from '@fastify/session';

declare module 'fastify' {
  interface Session {
    /** When the admin signed in (ms since the epoch); the session ends `uiSessionTtlMs` later. */
    signedInAt?: number;
  }
}

export type SessionStore = fastifySession.SessionStore;

/** A 64-character key for one purpose, from the admin token. */
export function derivedSecret(adminToken: string, purpose: string): string {
  return Buffer.from(hkdfSync('sha256', adminToken, 'kasgate-status-page', purpose, 32)).toString('hex');
}

/** Sessions in Redis under the deployment prefix, each expiring with its cookie. */
export function createRedisSessionStore(redis: Redis, prefix: string, ttlMs: number): SessionStore {
  const key = (id: string) => `${prefix}ui:session:${id}`;
  /** The store interface is callback-style; the work is a promise. */
  const settle = async <T>(work: () => Promise<T>, done: (err: Error | null, value?: T) => void): Promise<void> => {
    let value: T;
    try {
      value = await work();
    } catch (err) {
      done(err as Error);
      return;
    }
    done(null, value);
  };
  return {
    set(sessionId, session, callback) {
      const expires = session.cookie.expires ? new Date(session.cookie.expires).getTime() : Date.now() + ttlMs;
      const px = Math.max(1, expires - Date.now());
      void settle(() => redis.set(key(sessionId), JSON.stringify(session), 'PX', px), (err) => callback(err ?? undefined));
    },
    get(sessionId, callback) {
      void settle(
        async () => {
          const text = await redis.get(key(sessionId));
          return text ? (JSON.parse(text) as Session) : null;
        },
        (err, session) => callback(err, session),
      );
    },
    destroy(sessionId, callback) {
      void settle(() => redis.del(key(sessionId)), (err) => callback(err ?? undefined));
    },
  };
}

/** Whether the store still has this session (signed out elsewhere, or expired). */
export function sessionExists(store: SessionStore, sessionId: string): Promise<boolean> {
  return new Promise((resolve, reject) => store.get(sessionId, (err, session) => (err ? reject(err) : resolve(!!session))));
}
