/** `kasgate tokens create|list|revoke`: an agent's tokens, for rotation and revocation. */
import type { z } from 'zod';
import type { TokenInfo as TokenInfoSchema } from '../routes/admin/schemas.js';
import { clientFor, printIssuedToken, resolveAgent, type IssuedToken } from './agents.js';
import type { AdminClient } from './admin-client.js';
import type { CommandSpec } from './command.js';
import { CliError, EXIT } from './exit-codes.js';
import { age, print, printJson, table } from './output.js';

type TokenInfo = z.infer<typeof TokenInfoSchema>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const listTokens = async (client: AdminClient, agentId: string) =>
  (await client.request<{ tokens: TokenInfo[] }>('GET', `/agents/${agentId}/tokens`)).tokens;

const create: CommandSpec = {
  name: 'tokens create',
  summary: 'Issue another token for an agent (to rotate: create, roll it out, then revoke the old one).',
  admin: true,
  args: [{ name: 'agent', description: 'name or id' }],
  async run(input, env) {
    const client = clientFor(input, env);
    const agent = await resolveAgent(client, input.args[0]!);
    const token = await client.request<IssuedToken>('POST', `/agents/${agent.id}/tokens`);
    if (input.values.json) printJson(token);
    else {
      print(`New token for agent ${agent.name}.`);
      printIssuedToken(token);
    }
    return EXIT.ok;
  },
};

const list: CommandSpec = {
  name: 'tokens list',
  summary: "List an agent's tokens (never the secrets: kasgate keeps only their hashes).",
  admin: true,
  args: [{ name: 'agent', description: 'name or id' }],
  async run(input, env) {
    const client = clientFor(input, env);
    const agent = await resolveAgent(client, input.args[0]!);
    const tokens = await listTokens(client, agent.id);
    if (input.values.json) printJson({ tokens });
    else {
      print(
        table(
          ['ID', 'PREFIX', 'CREATED', 'LAST USED', 'REVOKED'],
          tokens.map((t) => [t.id, t.prefix, age(t.createdAt), t.lastUsedAt ? age(t.lastUsedAt) : 'never', t.revokedAt ? age(t.revokedAt) : '-']),
        ),
      );
    }
    return EXIT.ok;
  },
};

const revoke: CommandSpec = {
  name: 'tokens revoke',
  summary: 'Revoke a token: every socket using it closes (4401) on every replica within a second.',
  admin: true,
  args: [
    { name: 'agent', description: 'name or id' },
    { name: 'token', description: 'token id, or its prefix as `tokens list` shows it (kgagent_xxxxxx)' },
  ],
  async run(input, env) {
    const client = clientFor(input, env);
    const agent = await resolveAgent(client, input.args[0]!);
    const ref = input.args[1]!;
    let tokenId = ref;
    if (!UUID.test(ref)) {
      const matching = (await listTokens(client, agent.id)).filter((t) => t.prefix === ref && t.revokedAt === null);
      if (matching.length === 0) throw new CliError(`agent ${agent.name} has no live token ${JSON.stringify(ref)}`, EXIT.notFound);
      if (matching.length > 1) throw new CliError(`${matching.length} tokens start with ${ref}: give the token id`, EXIT.usage);
      tokenId = matching[0]!.id;
    }
    const revoked = await client.request<TokenInfo>('DELETE', `/agents/${agent.id}/tokens/${encodeURIComponent(tokenId)}`);
    if (input.values.json) printJson(revoked);
    else print(`Token ${revoked.prefix}… (${revoked.id}) of agent ${agent.name} revoked.`);
    return EXIT.ok;
  },
};

export const tokenCommands: CommandSpec[] = [create, list, revoke];
