/** `kasgate events list`: the push event log, oldest first. */
import type { z } from 'zod';
import { commitOf, refOf } from '../events/event.js';
import type { LoggedEvent as LoggedEventSchema } from '../routes/admin/observe.js';
import { clientFor } from './agents.js';
import type { CommandSpec } from './command.js';
import { EXIT, UsageError } from './exit-codes.js';
import { age, note, print, printJson, shortSha, table } from './output.js';

type LoggedEvent = z.infer<typeof LoggedEventSchema>;

const list: CommandSpec = {
  name: 'events list',
  summary: 'List stored events (pushes and artifacts), oldest first, with how many agent connections each was delivered to.',
  details: 'The log keeps KASGATE_EVENT_RETENTION (default 24h). Page on with --after <last id shown>.',
  admin: true,
  options: {
    project: { type: 'string', value: 'path|id', description: 'only this project (path in any case, or numeric id)' },
    after: { type: 'string', value: 'id', description: 'only events after this event id' },
    limit: { type: 'string', value: 'n', description: 'at most this many, 1-1000 (default 100)' },
  },
  async run(input, env) {
    const limit = (input.values.limit as string | undefined) ?? '100';
    if (!/^\d+$/.test(limit) || Number(limit) < 1 || Number(limit) > 1000) {
      throw new UsageError(`--limit: must be a whole number from 1 to 1000 (got ${JSON.stringify(limit)})`, 'events list');
    }
    const after = input.values.after as string | undefined;
    if (after !== undefined && !/^\d+$/.test(after)) {
      throw new UsageError(`--after: must be an event id, a whole number (got ${JSON.stringify(after)})`, 'events list');
    }
    const query = new URLSearchParams({ limit });
    if (after !== undefined) query.set('after', after);
    if (input.values.project !== undefined) query.set('project', input.values.project as string);
    const client = clientFor(input, env);
    const page = await client.request<{ events: LoggedEvent[]; nextAfter: string | null }>('GET', `/events?${query}`);
    if (input.values.json) {
      printJson(page);
      return EXIT.ok;
    }
    if (page.events.length === 0) note('No events.');
    else {
      print(
        table(
          ['ID', 'PROJECT', 'REF', 'SHA', 'USER', 'DELIVERED', 'AGE'],
          // An artifact's ref and commit as the status page shows them (a registry push: repository:tag and digest).
          page.events.map((e) => [e.id, e.projectPath, refOf(e), shortSha(commitOf(e)), e.userUsername, e.deliveredCount, age(e.receivedAt)]),
        ),
      );
    }
    if (page.nextAfter !== null) note(`More: kasgate events list --after ${page.nextAfter}`);
    return EXIT.ok;
  },
};

export const eventCommands: CommandSpec[] = [list];
