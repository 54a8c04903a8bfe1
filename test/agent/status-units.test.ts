/**
 * The pure parts of status reporting: which source a Kustomization or HelmRelease stands on,
 * what an OBJECT says about a Flux object, and how objects are packed into frames.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { readyState, reportWorkload, cutText } from '../../src/agent/status-objects.js';
import { fitObject, packFrames } from '../../src/agent/status-frames.js';
import { workloadSourceRef, type Workload } from '../../src/agent/workloads.js';
import { StatusFrame } from '../../src/protocol/kasgate-v1.js';

const meta = { name: 'web', namespace: 'apps' };

describe('the source a Kustomization or HelmRelease uses', () => {
  it('Kustomization: spec.sourceRef, namespace defaulting to its own; only GitRepository and OCIRepository count', () => {
    const k = (sourceRef: Record<string, string>) => ({ metadata: meta, spec: { sourceRef } }) as KubernetesObject;
    expect(workloadSourceRef('Kustomization', k({ kind: 'GitRepository', name: 'app' }))).toEqual({ kind: 'GitRepository', namespace: 'apps', name: 'app' });
    expect(workloadSourceRef('Kustomization', k({ kind: 'OCIRepository', name: 'm', namespace: 'shared' }))).toEqual({ kind: 'OCIRepository', namespace: 'shared', name: 'm' });
    expect(workloadSourceRef('Kustomization', k({ kind: 'Bucket', name: 'b' }))).toBeUndefined();
    expect(workloadSourceRef('Kustomization', k({ kind: 'ExternalArtifact', name: 'e' }))).toBeUndefined();
    expect(workloadSourceRef('Kustomization', { metadata: meta, spec: {} } as KubernetesObject)).toBeUndefined();
  });

  it('HelmRelease: chartRef OCIRepository; a chart template built from a GitRepository; the OCIRepository helm-controller makes from a template', () => {
    const hr = (spec: Record<string, unknown>) => ({ metadata: meta, spec }) as KubernetesObject;
    expect(workloadSourceRef('HelmRelease', hr({ chartRef: { kind: 'OCIRepository', name: 'chart' } }))).toEqual({ kind: 'OCIRepository', namespace: 'apps', name: 'chart' });
    expect(workloadSourceRef('HelmRelease', hr({ chartRef: { kind: 'HelmChart', name: 'chart', namespace: 'x' } }))).toBeUndefined();
    expect(workloadSourceRef('HelmRelease', hr({ chart: { spec: { chart: './c', sourceRef: { kind: 'GitRepository', name: 'app', namespace: 'src' } } } }))).toEqual({
      kind: 'GitRepository',
      namespace: 'src',
      name: 'app',
    });
    expect(workloadSourceRef('HelmRelease', hr({ chart: { kind: 'HelmChart', spec: { chart: './c', sourceRef: { kind: 'GitRepository', name: 'app' } } } }))).toEqual({
      kind: 'GitRepository',
      namespace: 'apps',
      name: 'app',
    });
    expect(workloadSourceRef('HelmRelease', hr({ chart: { spec: { chart: 'podinfo', sourceRef: { kind: 'HelmRepository', name: 'p' } } } }))).toBeUndefined();
    expect(workloadSourceRef('HelmRelease', hr({ chart: { kind: 'OCIRepository', spec: { url: 'oci://registry.example.com/group/chart' } } }))).toEqual({
      kind: 'OCIRepository',
      namespace: 'apps',
      name: 'apps-web',
    });
  });
});

describe('what an OBJECT says', () => {
  it('Ready from the Ready condition only; Unknown when there is none', () => {
    expect(readyState({})).toEqual({ ready: 'Unknown' });
    expect(readyState({ status: { conditions: [{ type: 'Reconciling', status: 'True', reason: 'Progressing', message: 'x' }] } })).toEqual({ ready: 'Unknown' });
    expect(
      readyState({ status: { conditions: [{ type: 'Ready', status: 'False', reason: 'BuildFailed', message: 'kustomize build failed', lastTransitionTime: '2025-01-02T03:04:05Z' }] } }),
    ).toEqual({ ready: 'False', reason: 'BuildFailed', message: 'kustomize build failed', updatedAt: '2025-01-02T03:04:05Z' });
    expect(readyState({ status: { conditions: [{ type: 'Ready', status: 'maybe' }] } }).ready).toBe('Unknown');
  });

  it('a HelmRelease reports the chart version running now (the newest deployed snapshot), and its last attempt', () => {
    const workload: Workload = {
      kind: 'HelmRelease',
      key: 'HelmRelease/apps/web',
      namespace: 'apps',
      name: 'web',
      sourceRef: { kind: 'GitRepository', namespace: 'apps', name: 'app' },
      suspended: false,
      object: {
        metadata: meta,
        status: {
          lastAttemptedRevision: '1.3.0',
          history: [
            { version: 3, status: 'failed', chartVersion: '1.3.0' },
            { version: 2, status: 'deployed', chartVersion: '1.2.0' },
            { version: 1, status: 'superseded', chartVersion: '1.1.0' },
          ],
        },
      } as never,
    };
    expect(reportWorkload(workload)).toMatchObject({ revision: '1.2.0', attemptedRevision: '1.3.0', sourceRef: workload.sourceRef });
    const legacy = { ...workload, object: { metadata: meta, status: { lastAppliedRevision: '0.9.0' } } as never };
    expect(reportWorkload(legacy).revision).toBe('0.9.0');
  });

  it('cuts text at the limit with an ellipsis, never halving a surrogate pair', () => {
    expect(cutText('abc', 3)).toBe('abc');
    expect(cutText('abcdef', 4)).toBe('abc…');
    expect(cutText('ab🚀cd', 4)).toBe('ab…'); // the rocket would be cut in half
  });
});

describe('packing objects into frames', () => {
  const object = (i: number, extra = '') => JSON.stringify({ kind: 'GitRepository', namespace: 'apps', name: `app-${i}`, ready: 'True', message: `m${extra}`, suspended: false });

  it('one full frame when it fits; parts 1..n when not, each within the limit, objects in order', () => {
    const objects = Array.from({ length: 40 }, (_, i) => object(i));
    expect(packFrames(objects, { full: true, truncated: false, maxFrameBytes: 65536 }).frames).toHaveLength(1);
    const { frames, dropped } = packFrames(objects, { full: true, truncated: true, maxFrameBytes: 700 });
    expect(dropped).toBe(0);
    expect(frames.length).toBeGreaterThan(4);
    const parsed = frames.map((f) => StatusFrame.parse(JSON.parse(f)));
    expect(parsed.map((f) => [f.part, f.parts, f.full, f.truncated])).toEqual(parsed.map((_, i) => [i + 1, frames.length, true, true]));
    for (const f of frames) expect(Buffer.byteLength(f)).toBeLessThanOrEqual(700);
    expect(parsed.flatMap((f) => f.objects.map((o) => o.name))).toEqual(objects.map((_, i) => `app-${i}`));
  });

  it('an empty full set is one frame; empty changes are none; changes carry no parts', () => {
    expect(packFrames([], { full: true, truncated: false, maxFrameBytes: 1000 }).frames).toEqual(['{"type":"status","full":true,"truncated":false,"objects":[]}']);
    expect(packFrames([], { full: false, truncated: false, maxFrameBytes: 1000 }).frames).toEqual([]);
    const changes = packFrames(Array.from({ length: 20 }, (_, i) => object(i)), { full: false, truncated: false, maxFrameBytes: 500 }).frames;
    expect(changes.length).toBeGreaterThan(1);
    for (const f of changes) {
      expect(Buffer.byteLength(f)).toBeLessThanOrEqual(500);
      expect(JSON.parse(f)).not.toHaveProperty('part');
    }
  });

  it('an object too large for a frame has its message cut (multi-byte text counted in bytes), then dropped', () => {
    const big = object(1, 'ü'.repeat(2000));
    const fitted = fitObject(big, 400) as string;
    expect(Buffer.byteLength(fitted)).toBeLessThanOrEqual(400);
    expect((JSON.parse(fitted) as { message: string }).message).toMatch(/^mü+…$/);
    const noRoom = fitObject(big, 60);
    expect(noRoom === undefined || !('message' in JSON.parse(noRoom))).toBe(true);
    expect(fitObject(big, 10)).toBeUndefined();
    expect(packFrames([big, object(2)], { full: false, truncated: false, maxFrameBytes: 60 }).dropped).toBe(2);
  });
});
