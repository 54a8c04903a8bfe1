/**
 * One benchmark run's kasgate deployment on the shared Postgres and Redis: a fresh schema and
 * key prefix (dropped and cleaned afterwards), secrets, and real agents holding real tokens.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { generateToken } from '../../src/agents/token-store.js';
import { deleteRedisKeys, dropSchema } from '../../test/support/cleanup.js';

export interface Deployment {
  schema: string;
  redisPrefix: string;
  redisUrl: string;
  adminToken: string;
  webhookSecret: string;
  kasgateEnv: Record<string, string>;
  cleanup(): Promise<void>;
}

export interface BenchAgent {
  name: string;
  token: string;
}

export function createDeployment(databaseUrl: string, redisUrl: string): Deployment {
  const id = randomBytes(5).toString('hex');
  const schema = `bench_${id}`;
  const redisPrefix = `kgbench_${id}:`;
  const adminToken = `admin-${randomBytes(16).toString('hex')}`;
  const webhookSecret = `hook-${randomBytes(16).toString('hex')}`;
  return {
    schema,
    redisPrefix,
    redisUrl,
    adminToken,
    webhookSecret,
    kasgateEnv: {
      HOST: '127.0.0.1',
      DATABASE_URL: databaseUrl,
      KASGATE_DB_SCHEMA: schema,
      REDIS_URL: redisUrl,
      KASGATE_REDIS_PREFIX: redisPrefix,
      KASGATE_ADMIN_TOKEN: adminToken,
      KASGATE_WEBHOOK_SECRETS: webhookSecret,
    },
    async cleanup() {
      await dropSchema(databaseUrl, schema);
      await deleteRedisKeys(redisUrl, redisPrefix);
    },
  };
}

/** Registers agents through the admin API (`POST /api/v1/agents`), a few requests at a time. */
export async function createAgentsViaApi(url: string, adminToken: string, names: string[]): Promise<BenchAgent[]> {
  const agents: BenchAgent[] = [];
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const index = next++;
      const name = names[index]!;
      const response = await fetch(`${url}/api/v1/agents`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name, configProject: `bench-config/${name}` }),
      });
      const body = (await response.json()) as { token?: { token: string } };
      if (response.status !== 201 || !body.token) throw new Error(`creating agent ${name}: ${response.status} ${JSON.stringify(body)}`);
      agents[index] = { name, token: body.token.token };
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return agents;
}

/**
 * Registers many agents at once by SQL into the deployment's own schema: the same rows the admin
 * API writes (agent, token hash and prefix from kasgate's own generateToken), in one statement,
 * because tens of thousands of API calls would eat the run's time budget.
 */
export async function createAgentsViaSql(databaseUrl: string, schema: string, names: string[]): Promise<BenchAgent[]> {
  const tokens = names.map(() => generateToken());
  const client = new pg.Client({ connectionString: databaseUrl, options: `-c search_path=${schema}` });
  await client.connect();
  try {
    await client.query(
      `WITH input AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[]) AS t(name, config_project, token_hash, token_prefix)
       ), created AS (
         INSERT INTO agents (name, config_project) SELECT name, config_project FROM input RETURNING id, name
       )
       INSERT INTO agent_tokens (agent_id, token_hash, token_prefix)
       SELECT created.id, input.token_hash, input.token_prefix FROM created JOIN input USING (name)`,
      [names, names.map((n) => `bench-config/${n}`), tokens.map((t) => t.hash), tokens.map((t) => t.prefix)],
    );
  } finally {
    await client.end();
  }
  return names.map((name, i) => ({ name, token: tokens[i]!.token }));
}
