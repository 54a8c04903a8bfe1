import type { Redis } from 'ioredis';
import type { ConnectionRecord, Presence } from './presence.js';

/**
 * Redis layout, under the deployment prefix:
 *   presence:conn:<connectionId>  hash { record, projects } with a TTL, rewritten whole on every
 *                                 heartbeat (so a Redis restart heals at the next beat)
 *   presence:agent:<agentId>      zset connectionId → expiry (ms), for per-agent listing and limits
 *   presence:all                  zset connectionId → expiry (ms), for listing everything
 * Zset members past their expiry are pruned whenever they are read.
 */
const REGISTER = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[3], 'record', ARGV[5], 'projects', ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[7])
return 1
`;

export function createRedisPresence(redis: Redis, prefix: string, ttlMs: number): Presence {
  const connKey = (id: string) => `${prefix}presence:conn:${id}`;
  const agentKey = (id: string) => `${prefix}presence:agent:${id}`;
  const allKey = `${prefix}presence:all`;

  const meta = (r: ConnectionRecord) => JSON.stringify({ ...r, projects: undefined });

  async function load(ids: string[]): Promise<ConnectionRecord[]> {
    if (ids.length === 0) return [];
    const pipeline = redis.pipeline();
    for (const id of ids) pipeline.hmget(connKey(id), 'record', 'projects');
    const replies = (await pipeline.exec()) ?? [];
    const records: ConnectionRecord[] = [];
    for (const [err, value] of replies) {
      const [record, projects] = (value as (string | null)[] | null) ?? [];
      if (err || !record) continue;
      const parsed = JSON.parse(record) as ConnectionRecord;
      parsed.projects = projects ? (JSON.parse(projects) as string[]) : [];
      records.push(parsed);
    }
    return records;
  }

  async function liveIds(key: string): Promise<string[]> {
    const now = Date.now();
    await redis.zremrangebyscore(key, '-inf', now);
    return redis.zrangebyscore(key, now, '+inf');
  }

  async function refresh(records: ConnectionRecord[]): Promise<void> {
    if (records.length === 0) return;
    const expiresAt = Date.now() + ttlMs;
    const pipeline = redis.pipeline();
    for (const r of records) {
      pipeline.hset(connKey(r.connectionId), 'record', meta(r), 'projects', JSON.stringify(r.projects));
      pipeline.pexpire(connKey(r.connectionId), ttlMs);
      pipeline.zadd(agentKey(r.agentId), expiresAt, r.connectionId);
      pipeline.zadd(allKey, expiresAt, r.connectionId);
    }
    const replies = (await pipeline.exec()) ?? [];
    const failed = replies.find(([err]) => err);
    if (failed) throw failed[0];
  }

  return {
    kind: 'redis',
    async register(record, maxPerAgent) {
      const now = Date.now();
      const ok = await redis.eval(
        REGISTER,
        3,
        agentKey(record.agentId),
        allKey,
        connKey(record.connectionId),
        now,
        maxPerAgent,
        now + ttlMs,
        record.connectionId,
        meta(record),
        JSON.stringify(record.projects),
        ttlMs,
      );
      return ok === 1 ? 'registered' : 'over_limit';
    },
    put: (record) => refresh([record]),
    refresh,
    async remove(record) {
      await redis
        .multi()
        .del(connKey(record.connectionId))
        .zrem(agentKey(record.agentId), record.connectionId)
        .zrem(allKey, record.connectionId)
        .exec();
    },
    async list() {
      return load(await liveIds(allKey));
    },
    async listForAgent(agentId) {
      return load(await liveIds(agentKey(agentId)));
    },
    async ping() {
      await redis.ping();
    },
  };
}
