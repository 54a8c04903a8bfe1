import { describe, expect, test } from 'vitest';
import {
  buildAccess,
  isGranted,
  isPublic,
  isWellFormedPath,
  mayReceive,
  subscriptionAccess,
  type AgentAccess,
} from '../../src/agents/access-rule.js';

const PRIVATE = 0;
const INTERNAL = 10;
const PUBLIC = 20;

const agent: AgentAccess = buildAccess('agent-1', 'Infra/Cluster-Config', {
  projects: ['team/Exact-App'],
  groups: ['Platform/Tools', 'nested'],
});
const bare: AgentAccess = buildAccess('agent-2', 'other/config', { projects: [], groups: [] });

describe('mayReceive: the whole rule, per event', () => {
  // [project path, visibility carried by the push, expected]
  const table: [string, number | null, boolean][] = [
    // 1. the configuration project, whatever its visibility, in any case
    ['infra/cluster-config', PRIVATE, true],
    ['INFRA/CLUSTER-CONFIG', PRIVATE, true],
    ['Infra/Cluster-Config', null, true],
    ['infra/cluster-config/sub', PRIVATE, false], // a config project is not a group grant
    ['infra/cluster', PRIVATE, false],
    ['infra/cluster-config2', PRIVATE, false],
    // 2. public in that very push
    ['someone/else', PUBLIC, true],
    ['SomeOne/Else', PUBLIC, true],
    ['someone/else', INTERNAL, false],
    ['someone/else', PRIVATE, false],
    ['someone/else', null, false],
    ['someone/else', 30, false],
    ['someone/else', -1, false],
    ['someone/else', 21, false],
    // 3a. an exact project grant
    ['team/exact-app', PRIVATE, true],
    ['TEAM/EXACT-APP', INTERNAL, true],
    ['team/exact-app/child', PRIVATE, false],
    ['team/exact-ap', PRIVATE, false],
    ['team/exact-app2', PRIVATE, false],
    ['team', PRIVATE, false],
    // 3b. a group grant, on path-segment boundaries, nested groups included
    ['platform/tools/app', PRIVATE, true],
    ['PLATFORM/TOOLS/APP', PRIVATE, true],
    ['platform/tools/deep/er/app', PRIVATE, true],
    ['platform/tools', PRIVATE, false], // the group path itself is not a project under it
    ['platform/toolsmith/app', PRIVATE, false],
    ['platform/tool/app', PRIVATE, false],
    ['platform/app', PRIVATE, false],
    ['nested/a/b/c', INTERNAL, true],
    ['nestedx/a', PRIVATE, false],
    // odd paths fail closed, even when public or looking granted
    ['', PUBLIC, false],
    ['platform/tools//app', PRIVATE, false],
    ['platform/tools/', PRIVATE, false],
    ['/platform/tools/app', PRIVATE, false],
    ['platform/tools/../secret', PRIVATE, false],
    ['platform/tools/./app', PRIVATE, false],
    ['platform/tools/app ', PRIVATE, false],
    [' infra/cluster-config', PRIVATE, false],
    ['infra/cluster-config\n', PUBLIC, false],
    ['team/exact-app\u0000', PRIVATE, false],
    ['x/' + 'a'.repeat(1100), PUBLIC, false],
  ];

  test.each(table)('%j with visibility %j → %j', (projectPath, visibility, expected) => {
    expect(mayReceive(agent, { projectPath, visibility })).toBe(expected);
  });

  test('an agent with no grants sees only its config project and public pushes', () => {
    expect(mayReceive(bare, { projectPath: 'other/config', visibility: PRIVATE })).toBe(true);
    expect(mayReceive(bare, { projectPath: 'infra/cluster-config', visibility: PRIVATE })).toBe(false);
    expect(mayReceive(bare, { projectPath: 'team/exact-app', visibility: INTERNAL })).toBe(false);
    expect(mayReceive(bare, { projectPath: 'platform/tools/app', visibility: PRIVATE })).toBe(false);
    expect(mayReceive(bare, { projectPath: 'platform/tools/app', visibility: PUBLIC })).toBe(true);
  });
});

describe('isGranted', () => {
  test('a group grant covers what is under it, not siblings sharing a prefix', () => {
    const a = buildAccess('x', 'c/p', { projects: [], groups: ['a/b'] });
    expect(isGranted(a, 'a/b/c')).toBe(true);
    expect(isGranted(a, 'a/b/c/d')).toBe(true);
    expect(isGranted(a, 'a/bc')).toBe(false);
    expect(isGranted(a, 'a/b')).toBe(false);
    expect(isGranted(a, 'a')).toBe(false);
    expect(isGranted(a, 'A/B/C')).toBe(true);
  });

  test('grants stored in any case match paths in any case', () => {
    const a = buildAccess('x', 'CFG/Project', { projects: ['One/TWO'], groups: ['GrOuP'] });
    expect(isGranted(a, 'cfg/project')).toBe(true);
    expect(isGranted(a, 'one/two')).toBe(true);
    expect(isGranted(a, 'group/x')).toBe(true);
  });

  test('odd grants match nothing', () => {
    const a = buildAccess('x', 'c/p', { projects: [''], groups: ['', '/', 'a/', 'b//c', ' d'] });
    for (const path of ['', 'a/x', 'b/c/x', 'b//c/x', ' d/x', 'd/x', '/x', 'x']) expect(isGranted(a, path)).toBe(false);
  });

  test('an empty config project matches nothing', () => {
    const a = buildAccess('x', '', { projects: [], groups: [] });
    expect(isGranted(a, '')).toBe(false);
  });
});

describe('isPublic', () => {
  test.each([
    [20, true],
    [10, false],
    [0, false],
    [null, false],
    [undefined, false],
    [Number.NaN, false],
  ] as const)('%j → %j', (visibility, expected) => {
    expect(isPublic(visibility)).toBe(expected);
  });
});

describe('isWellFormedPath', () => {
  test.each([
    ['group/app', true],
    ['a', true],
    ['g/s/u/b/app', true],
    ['Group.Name/app-1_x', true],
    ['', false],
    ['/', false],
    ['a//b', false],
    ['a/b/', false],
    ['/a/b', false],
    ['a b/c', false],
    ['a/\tb', false],
    ['a/..', false],
    ['./a', false],
    ['a/\u0007', false],
  ])('%j → %j', (path, expected) => {
    expect(isWellFormedPath(path)).toBe(expected);
  });
});

describe('subscriptionAccess: granted or unverified, never more', () => {
  // [watched path, last known visibility (undefined: never seen), expected]
  const table: [string, number | null | undefined, 'granted' | 'unverified'][] = [
    ['infra/cluster-config', undefined, 'granted'],
    ['Infra/Cluster-Config', PRIVATE, 'granted'],
    ['team/exact-app', PRIVATE, 'granted'],
    ['platform/tools/app', undefined, 'granted'],
    ['seen/public', PUBLIC, 'granted'],
    ['seen/internal', INTERNAL, 'unverified'],
    ['seen/private', PRIVATE, 'unverified'],
    ['seen/unknown', null, 'unverified'],
    ['never/seen', undefined, 'unverified'],
    ['platform/toolsmith/app', PRIVATE, 'unverified'],
    ['odd//path', PUBLIC, 'unverified'],
  ];

  test.each(table)('%j last seen %j → %j', (path, visibility, expected) => {
    expect(subscriptionAccess(agent, path, visibility)).toBe(expected);
  });

  test('a private project nobody granted reads exactly like one that does not exist', () => {
    const agents = [agent, bare, buildAccess('z', 'z/z', { projects: ['q/r'], groups: ['g'] })];
    const privateNotGranted = ['secret/project', 'Secret/Project', 'g2/app', 'q/r2', 'z/z/y'];
    for (const access of agents) {
      for (const path of privateNotGranted) {
        for (const visibility of [PRIVATE, INTERNAL, null]) {
          expect(subscriptionAccess(access, path, visibility)).toBe(subscriptionAccess(access, path, undefined));
          expect(subscriptionAccess(access, path, visibility)).toBe('unverified');
        }
      }
    }
  });
});

describe("rule 4: the config file's flux_access, only under the config project's top-level group", () => {
  const entry = (kind: 'project' | 'group', path: string) => ({ kind, path });
  const fileAgent = buildAccess('f', 'Acme/Cluster-Config', { projects: [], groups: [] }, {
    entries: [entry('project', 'acme/apps/Private-App'), entry('group', 'ACME/platform'), entry('project', 'evil/app'), entry('group', 'evil')],
  });

  test.each([
    ['acme/apps/private-app', true],
    ['Acme/Apps/Private-App', true],
    ['acme/platform/infra', true],
    ['acme/platform/deep/infra', true],
    ['acme/platformx/infra', false],
    ['acme/apps/other', false],
    ['evil/app', false],
    ['evil/anything', false],
  ] as const)('%j granted: %j', (path, expected) => {
    expect(isGranted(fileAgent, path)).toBe(expected);
    expect(mayReceive(fileAgent, { projectPath: path, visibility: PRIVATE })).toBe(expected);
    expect(subscriptionAccess(fileAgent, path, PRIVATE)).toBe(expected ? 'granted' : 'unverified');
  });

  test('the top-level group itself may be listed as a group', () => {
    const whole = buildAccess('w', 'acme/cfg', { projects: [], groups: [] }, { entries: [entry('group', 'acme')] });
    expect(isGranted(whole, 'acme/any/app')).toBe(true);
    expect(isGranted(whole, 'acmex/app')).toBe(false);
  });

  test('a config project moved to another top-level group carries none of the old entries there', () => {
    const moved = buildAccess('m', 'elsewhere/cfg', { projects: [], groups: [] }, { entries: [entry('project', 'acme/app'), entry('group', 'acme/g')] });
    expect(isGranted(moved, 'acme/app')).toBe(false);
    expect(isGranted(moved, 'acme/g/app')).toBe(false);
  });
});
