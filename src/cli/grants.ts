/** `kasgate grants set|show`: the projects and groups an admin lets an agent see. */
import { clientFor, resolveAgent, type Grants } from './agents.js';
import type { CommandSpec } from './command.js';
import { EXIT, UsageError } from './exit-codes.js';
import { fields, print, printJson } from './output.js';

function printGrants(agentName: string, grants: Grants): void {
  print(
    fields([
      ['Agent', agentName],
      ['Projects', grants.projects.join(', ') || '-'],
      ['Groups', grants.groups.join(', ') || '-'],
    ]),
  );
}

const set: CommandSpec = {
  name: 'grants set',
  summary: "Replace an agent's grants: the exact projects, and the groups whose every project (subgroups too) it may see.",
  details:
    'The new set replaces the old one entirely; give every project and group the agent keeps.\n' +
    'Live connections pick the change up at once, on every replica.',
  admin: true,
  args: [{ name: 'agent', description: 'name or id' }],
  options: {
    project: { type: 'string', value: 'path', multiple: true, description: 'a project path, e.g. group/app' },
    group: { type: 'string', value: 'path', multiple: true, description: 'a group path, e.g. group or group/sub' },
    clear: { type: 'boolean', description: 'remove every grant (instead of --project / --group)' },
  },
  async run(input, env) {
    const projects = (input.values.project as string[] | undefined) ?? [];
    const groups = (input.values.group as string[] | undefined) ?? [];
    if (input.values.clear && (projects.length > 0 || groups.length > 0)) {
      throw new UsageError('--clear removes every grant: give it alone, or --project / --group without it', 'grants set');
    }
    if (!input.values.clear && projects.length === 0 && groups.length === 0) {
      // Replacing with nothing by accident would silently cut an agent off.
      throw new UsageError('give at least one --project or --group (or --clear to remove every grant)', 'grants set');
    }
    const client = clientFor(input, env);
    const agent = await resolveAgent(client, input.args[0]!);
    const grants = await client.request<Grants>('PUT', `/agents/${agent.id}/grants`, { projects, groups });
    if (input.values.json) printJson(grants);
    else printGrants(agent.name, grants);
    return EXIT.ok;
  },
};

const show: CommandSpec = {
  name: 'grants show',
  summary: "Show an agent's grants.",
  admin: true,
  args: [{ name: 'agent', description: 'name or id' }],
  async run(input, env) {
    const client = clientFor(input, env);
    const agent = await resolveAgent(client, input.args[0]!);
    const grants = await client.request<Grants>('GET', `/agents/${agent.id}/grants`);
    if (input.values.json) printJson(grants);
    else printGrants(agent.name, grants);
    return EXIT.ok;
  },
};

export const grantCommands: CommandSpec[] = [set, show];
