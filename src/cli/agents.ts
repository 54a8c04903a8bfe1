/** `kasgate agents create|list|show|delete`. */
import type { z } from 'zod';
import type { Agent as AgentSchema, Connection as ConnectionSchema, Grants as GrantsSchema, IssuedToken as IssuedTokenSchema } from '../routes/admin/schemas.js';
import type { FluxCredential as FluxCredentialSchema } from '../routes/admin/credentials.js';
import { ApiError, createAdminClient, type AdminClient } from './admin-client.js';
import type { CommandSpec, ParsedInput } from './command.js';
import { adminTarget } from './config.js';
import { CliError, EXIT, UsageError } from './exit-codes.js';
import { age, fields, note, print, printJson, table, when } from './output.js';

export type Agent = z.infer<typeof AgentSchema>;
export type Connection = z.infer<typeof ConnectionSchema>;
export type Grants = z.infer<typeof GrantsSchema>;
export type IssuedToken = z.infer<typeof IssuedTokenSchema>;
type FluxCredential = z.infer<typeof FluxCredentialSchema>;

function configFile(agent: Agent): string {
  const source = agent.configSource;
  return source ? `${source.project}:${source.path} at ${source.ref} (${source.commitId.slice(0, 8)}), read ${when(source.readAt)}` : '-';
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function clientFor(input: ParsedInput, env: NodeJS.ProcessEnv): AdminClient {
  return createAdminClient(adminTarget(env, input.values.url as string | undefined));
}

export async function listAllAgents(client: AdminClient): Promise<Agent[]> {
  const agents: Agent[] = [];
  let cursor: string | null = null;
  do {
    const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
    const page: { agents: Agent[]; nextCursor: string | null } = await client.request('GET', `/agents?limit=500${query}`);
    agents.push(...page.agents);
    cursor = page.nextCursor;
  } while (cursor !== null);
  return agents;
}

/** An agent by id or by name (names are what people type; the API looks up by id). */
export async function resolveAgent(client: AdminClient, ref: string): Promise<Agent> {
  if (UUID.test(ref)) {
    try {
      return await client.request<Agent>('GET', `/agents/${ref}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) throw new CliError(`agent ${ref} not found`, EXIT.notFound);
      throw err;
    }
  }
  const found = (await listAllAgents(client)).find((a) => a.name === ref.toLowerCase());
  if (!found) throw new CliError(`agent ${JSON.stringify(ref)} not found (kasgate agents list shows them)`, EXIT.notFound);
  return found;
}

/** The token block of `agents create` and `tokens create`: the secret, once, and why once. */
export function printIssuedToken(token: IssuedToken): void {
  print(
    [
      '',
      `Token ${token.prefix}… (id ${token.id}):`,
      '',
      `  ${token.token}`,
      '',
      'This is the only time the token is shown: kasgate keeps only its hash and cannot show it again.',
      'Store it now, e.g. as the agent\'s Secret (deploy/README.md).',
    ].join('\n'),
  );
}

function parseConfig(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--config: not JSON (${(err as Error).message})`, 'agents create');
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new UsageError('--config: must be a JSON object, e.g. {"flux":{"webhookReceiverUrl":"http://notification-controller.flux-system"}}', 'agents create');
  }
  return config as Record<string, unknown>;
}

const create: CommandSpec = {
  name: 'agents create',
  summary: 'Register an agent, and print its first token (shown this once).',
  details:
    'The configuration project is the GitLab project the agent belongs to: it always receives that\n' +
    "project's pushes, and later its agent configuration file. Other private projects need a grant\n" +
    '(kasgate grants set).',
  admin: true,
  args: [{ name: 'name', description: '1-63 lower-case letters, digits, dots, dashes or underscores; unique' }],
  options: {
    'config-project': { type: 'string', value: 'path', required: true, description: "the agent's configuration project, e.g. group/infra" },
    config: { type: 'string', value: 'json', description: 'configuration sent to the agent in its hello frame, a JSON object' },
  },
  async run(input, env) {
    const config = parseConfig(input.values.config as string | undefined);
    const client = clientFor(input, env);
    const created = await client.request<{ agent: Agent; token: IssuedToken }>('POST', '/agents', {
      name: input.args[0],
      configProject: input.values['config-project'],
      ...(config ? { config } : {}),
    });
    if (input.values.json) {
      printJson(created);
      return EXIT.ok;
    }
    print(
      `Agent ${created.agent.name} created.\n\n${table(['NAME', 'ID', 'CONFIG PROJECT'], [[created.agent.name, created.agent.id, created.agent.configProject]])}`,
    );
    printIssuedToken(created.token);
    return EXIT.ok;
  },
};

const list: CommandSpec = {
  name: 'agents list',
  summary: 'List the agents, with how many live connections each has (on every replica).',
  admin: true,
  async run(input, env) {
    const client = clientFor(input, env);
    const agents = await listAllAgents(client);
    if (input.values.json) {
      printJson({ agents });
      return EXIT.ok;
    }
    if (agents.length === 0) {
      note('No agents yet: kasgate agents create <name> --config-project <group/project>');
      return EXIT.ok;
    }
    // Presence lives in Redis; without it the list is still worth showing.
    const connections = await client.request<{ connections: Connection[] }>('GET', '/connections').then(
      (r) => r.connections,
      (err: Error) => {
        note(`(connections unknown: ${err.message})`);
        return undefined;
      },
    );
    const count = (id: string) => (connections === undefined ? '?' : connections.filter((c) => c.agentId === id).length);
    print(
      table(
        ['NAME', 'ID', 'CONFIG PROJECT', 'CONNECTIONS', 'AGE'],
        agents.map((a) => [a.name, a.id, a.configProject, count(a.id), age(a.createdAt)]),
      ),
    );
    return EXIT.ok;
  },
};

const show: CommandSpec = {
  name: 'agents show',
  summary: "Show one agent: its configuration (and its config file's state), grants, Flux's deploy tokens and live connections.",
  admin: true,
  args: [{ name: 'agent', description: 'name or id' }],
  async run(input, env) {
    const client = clientFor(input, env);
    const agent = await resolveAgent(client, input.args[0]!);
    const [grants, connections, credentials] = await Promise.all([
      client.request<Grants>('GET', `/agents/${agent.id}/grants`),
      client.request<{ connections: Connection[] }>('GET', `/agents/${agent.id}/connections`).then((r) => r.connections),
      client.request<{ credentials: FluxCredential[]; error: string | null }>('GET', `/agents/${agent.id}/credentials`),
    ]);
    if (input.values.json) {
      printJson({ agent, grants, connections, credentials });
      return EXIT.ok;
    }
    print(
      fields([
        ['Name', agent.name],
        ['ID', agent.id],
        ['Config project', agent.configProject],
        ['Config', JSON.stringify(agent.config)],
        ['Config file', configFile(agent)],
        ['Config error', agent.configError ?? '-'],
        ['Created', when(agent.createdAt)],
        ['Updated', when(agent.updatedAt)],
        ['Granted projects', grants.projects.join(', ') || '-'],
        ['Granted groups', grants.groups.join(', ') || '-'],
        ['Deploy tokens', credentials.error ?? String(credentials.credentials.filter((c) => c.state !== 'revoked').length)],
        ['Connections', String(connections.length)],
      ]),
    );
    const live = credentials.credentials.filter((c) => c.state !== 'revoked');
    if (live.length > 0) {
      print(
        `\n${table(
          ['SECRET', 'NAMESPACES', 'FOR', 'ROLE', 'STATE', 'EXPIRES', 'ERROR'],
          live.map((c) => [c.secretName, c.namespaces.join(','), c.project ?? `group ${c.group}`, c.role, c.state, c.expiresAt, c.lastError ?? '-']),
        )}`,
      );
    }
    if (connections.length > 0) {
      print(
        `\n${table(
          ['CONNECTION', 'REPLICA', 'ADDRESS', 'CONNECTED', 'HEARTBEAT', 'PROJECTS'],
          connections.map((c) => [c.connectionId, c.replicaId, c.remoteAddress, age(c.connectedAt), age(c.lastHeartbeatAt), c.projects.join(',')]),
        )}`,
      );
    }
    return EXIT.ok;
  },
};

const remove: CommandSpec = {
  name: 'agents delete',
  summary: 'Delete an agent: its tokens stop working and its live sockets close (4401) on every replica.',
  admin: true,
  args: [{ name: 'agent', description: 'name or id' }],
  async run(input, env) {
    const client = clientFor(input, env);
    const agent = await resolveAgent(client, input.args[0]!);
    await client.request('DELETE', `/agents/${agent.id}`);
    if (input.values.json) printJson({ deleted: { id: agent.id, name: agent.name } });
    else print(`Agent ${agent.name} (${agent.id}) deleted.`);
    return EXIT.ok;
  },
};

export const agentCommands: CommandSpec[] = [create, list, show, remove];
