/** The status page's small rules: escaping, where sign-in may send you back to, how things are said. */
import { describe, expect, test } from 'vitest';
import { html, join } from '../../src/ui/html.js';
import { safeNext } from '../../src/ui/routes.js';
import { ago, duration, kindLabel, refLabel, shortSha } from '../../src/ui/format.js';

describe('html', () => {
  test('escapes every interpolated value, but not fragments made by html itself', () => {
    const name = `<img src=x onerror="alert('x')">&`;
    const out = html`<td title="${name}">${name}${html`<b>${name}</b>`}</td>`.value;
    expect(out).toBe(
      '<td title="&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;">&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;<b>&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;</b></td>',
    );
  });

  test('lists are joined; null, undefined and booleans are nothing', () => {
    expect(html`${['<a>', html`<i></i>`]}${null}${undefined}${false}${true}${0}`.value).toBe('&lt;a&gt;<i></i>0');
    expect(join(['x', html`<br>`]).value).toBe('x<br>');
  });
});

describe('safeNext', () => {
  test.each([
    ['/ui/agents/1', '/ui/agents/1'],
    ['/ui?agent=x', '/ui?agent=x'],
    ['/ui', '/ui'],
    [undefined, '/ui'],
    ['https://evil.example/ui', '/ui'],
    ['//evil.example/ui', '/ui'],
    ['/ui\\@evil.example', '/ui'],
    ['/uix/other', '/ui'],
    ['/api/v1/agents', '/ui'],
  ])('%s → %s', (next, expected) => {
    expect(safeNext(next)).toBe(expected);
  });
});

describe('format', () => {
  test('refs, shas, kinds, ages and durations read as people say them', () => {
    expect(refLabel('refs/heads/main')).toEqual({ name: 'main', tag: false });
    expect(refLabel('refs/tags/v1.2.0')).toEqual({ name: 'v1.2.0', tag: true });
    expect(shortSha('a1b2c3d4e5f6')).toBe('a1b2c3d4');
    expect(kindLabel({ kind: 'tag_push' })).toBe('tag push');
    expect(kindLabel({ kind: 'artifact', source: 'registry' })).toBe('artifact (registry)');
    const now = Date.parse('2026-01-01T12:00:00Z');
    expect(ago('2026-01-01T11:59:58Z', now)).toBe('2 s ago');
    expect(ago('2026-01-01T11:55:00Z', now)).toBe('5 min ago');
    expect(ago('2025-12-30T12:00:00Z', now)).toBe('2 d ago');
    expect(duration(850)).toBe('850 ms');
    expect(duration(4200)).toBe('4.2 s');
    expect(duration(125_000)).toBe('2 min 5 s');
  });
});
