/** docs/protocol.md describes every frame, close code and error code of src/protocol/kasgate-v1.ts, so it cannot rot. */
import { readFile } from 'node:fs/promises';
import { expect, test } from 'vitest';
import { z } from 'zod';
import { ClientFrame, CloseCode, ErrorCode, ServerFrame } from '../../src/protocol/kasgate-v1.js';

const doc = await readFile(new URL('../../docs/protocol.md', import.meta.url), 'utf8');

/** The `type` of every frame of a union, through nested unions (artifact is one of pipeline or registry). */
function frameTypes(schema: z.ZodType): string[] {
  if (schema instanceof z.ZodUnion) return schema.options.flatMap((option) => frameTypes(option as z.ZodType));
  if (schema instanceof z.ZodObject) {
    const type = (schema.shape as Record<string, z.ZodType>).type;
    if (type instanceof z.ZodLiteral) return [String(type.value)];
  }
  throw new Error(`not a frame: ${schema.def.type}`);
}

const section = (title: string) => {
  const start = doc.indexOf(`## ${title}\n`);
  if (start < 0) throw new Error(`docs/protocol.md has no "## ${title}" section`);
  const end = doc.indexOf('\n## ', start + 1);
  return doc.slice(start, end === -1 ? undefined : end);
};
const headings = (text: string) => [...text.matchAll(/^### `([a-z_]+)`$/gm)].map((m) => m[1]);

test('every server frame type has its own heading under "Server → agent", and every agent frame under "Agent → server"', () => {
  const server = [...new Set(frameTypes(ServerFrame))];
  const client = [...new Set(frameTypes(ClientFrame))];
  expect(server).toEqual(expect.arrayContaining(['hello', 'push', 'artifact', 'error']));
  expect(client).toEqual(expect.arrayContaining(['subscribe', 'ack', 'status']));
  expect(headings(section('Server → agent')).sort()).toEqual(server.sort());
  expect(headings(section('Agent → server')).sort()).toEqual(client.sort());
});

test('both artifact sources are described', () => {
  expect(section('Server → agent')).toMatch(/- `pipeline`[\s\S]*"source":"pipeline"[\s\S]*- `registry`[\s\S]*"source":"registry"/);
});

test('every close code and every error code is in its table', () => {
  const rows = (title: string) => [...section(title).matchAll(/^\| (\d+) \|/gm)].map((m) => m[1]);
  expect(rows('Close codes').sort()).toEqual(Object.values(CloseCode).map(String).sort());
  const errorTable = section('Server → agent').slice(section('Server → agent').indexOf('### `error`'));
  expect([...errorTable.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]).sort()).toEqual(Object.values(ErrorCode).sort());
});
