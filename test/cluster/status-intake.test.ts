/** Assembling status frames into store work: parts, restarts, changes held during an assembly, coalescing. */
import { expect, test } from 'vitest';
import { absorb, DELETED, StatusIntake, type StatusWork } from '../../src/cluster/status-intake.js';
import { StatusFrame, type StatusFrameInput } from '../../src/protocol/kasgate-v1.js';

const object = (name: string) => ({ kind: 'GitRepository' as const, namespace: 'ns', name, ready: 'True' as const });
const frame = (input: Omit<StatusFrameInput, 'type'>) => StatusFrame.parse({ type: 'status', ...input });
const keys = (work: StatusWork | undefined) => [...(work?.objects.keys() ?? [])];

test('a full set in parts is work only at its last part; part 1 restarts it', () => {
  const intake = new StatusIntake(100);
  expect(intake.receive(frame({ full: true, objects: [object('a')], part: 1, parts: 2 }))).toEqual({ ok: true });
  expect(intake.receive(frame({ full: true, objects: [object('x')], part: 1, parts: 2 }))).toEqual({ ok: true });
  const done = intake.receive(frame({ full: true, objects: [object('y')], part: 2, parts: 2, truncated: true }));
  expect(done.ok && done.work).toMatchObject({ full: true, agentTruncated: true });
  expect(done.ok && keys(done.work)).toEqual(['GitRepository/ns/x', 'GitRepository/ns/y']);
});

test('a part that does not follow is an error and drops the assembly', () => {
  const intake = new StatusIntake(100);
  expect(intake.receive(frame({ full: true, objects: [], part: 2, parts: 2 }))).toMatchObject({ ok: false, code: 'status_part_out_of_order' });
  intake.receive(frame({ full: true, objects: [object('a')], part: 1, parts: 3 }));
  expect(intake.receive(frame({ full: true, objects: [], part: 2, parts: 4 }))).toMatchObject({ ok: false });
  expect(intake.receive(frame({ full: true, objects: [], part: 3, parts: 3 }))).toMatchObject({ ok: false });
});

test('changes during an assembly are applied after it; a full set beyond the limit counts the overflow', () => {
  const intake = new StatusIntake(2);
  intake.receive(frame({ full: true, objects: [object('a'), object('b'), object('c')], part: 1, parts: 2 }));
  expect(intake.receive(frame({ full: false, objects: [{ kind: 'GitRepository', namespace: 'ns', name: 'a', deleted: true }, object('d')] }))).toEqual({ ok: true });
  const done = intake.receive(frame({ full: true, objects: [], part: 2, parts: 2 }));
  expect(done.ok && keys(done.work)).toEqual(['GitRepository/ns/b', 'GitRepository/ns/d']);
  expect(done.ok && done.work!.overflow).toBe(1);
});

test('absorb: a full set takes later changes in; changes take later changes; a full set replaces everything before it', () => {
  const work = (full: boolean, entries: [string, 'del' | string][]): StatusWork => ({
    full,
    objects: new Map(entries.map(([k, v]) => [k, v === 'del' ? DELETED : (object(v) as never)])),
    agentTruncated: undefined,
    overflow: 0,
  });
  expect(keys(absorb(work(true, [['a', 'a'], ['b', 'b']]), work(false, [['a', 'del'], ['c', 'c']])))).toEqual(['b', 'c']);
  const changes = absorb(work(false, [['a', 'a']]), work(false, [['a', 'del']]));
  expect(changes.full).toBe(false);
  expect(changes.objects.get('a')).toBe(DELETED);
  expect(keys(absorb(work(false, [['a', 'a']]), work(true, [['z', 'z']])))).toEqual(['z']);
});
