/**
 * The agent's status frames against the real gateway (Postgres + Redis), with a small
 * KASGATE_MAX_FRAME_BYTES: the gateway's own parser and size check take every frame (a frame
 * over the limit would close the socket with 4400, a bad one would be counted as rejected),
 * for the full set in parts and for the changes a push brings through the Flux stand-ins.
 *
 * What the gateway does with them (storage, deployments, commit statuses) is the gateway's side
 * of issue 11; its end-to-end tests go with it.
 */
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pushBody } from '../support/fixtures.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { createHarness, type Harness } from './support/harness.js';
import { settle, waitFor } from './support/wait.js';

const PROJECT = 'mike/diaspora';
const sha = (n: number): string => createHash('sha1').update(`e2e ${n}`).digest('hex');

let gateway: TestGateway;
let h: Harness;

beforeEach(async () => {
  gateway = await startGateway({ env: { KASGATE_MAX_FRAME_BYTES: '4096' } });
  h = await createHarness({ controllers: { stepMs: 10 } });
});

afterEach(async () => {
  await h?.close();
  await gateway?.close();
});

async function connections(agentId: string): Promise<{ connectionId: string; projects: string[] }[]> {
  const { status, body } = await gateway.admin<{ connections: { connectionId: string; projects: string[] }[] }>('GET', `/agents/${agentId}/connections`);
  return status === 200 ? body.connections : [];
}

async function sampleValue(metrics: string, pattern: RegExp): Promise<number> {
  return Number(pattern.exec(metrics)?.[1] ?? 0);
}

describe('status frames through the real gateway', () => {
  it('every frame is taken: the full set in parts under maxFrameBytes, then the changes of a push', async () => {
    const flux = h.kube.flux!;
    flux.setGitHead(PROJECT, 'main', sha(0));
    h.kube.putGitRepository('apps', 'diaspora', { url: `https://gitlab.example.com/${PROJECT}.git`, ref: { branch: 'main' } });
    h.kube.putKustomization('apps', 'diaspora', { sourceRef: { kind: 'GitRepository', name: 'diaspora' } });
    for (let i = 0; i < 25; i++) {
      flux.setGitHead(`group/app-${i}`, 'main', sha(100 + i));
      h.kube.putGitRepository('apps', `app-${i}`, { url: `https://gitlab.example.com/group/app-${i}.git`, ref: { branch: 'main' } });
      h.kube.putKustomization('apps', `app-${i}`, { sourceRef: { kind: 'GitRepository', name: `app-${i}` } });
    }
    await waitFor(() => [...h.kube.kustomizations.values()].every((k) => k['status']?.lastAppliedRevision), 10_000, 'Flux to apply everything');

    const agent = await gateway.createAgent('e2e-status', PROJECT);
    const handle = await h.startAgent({ gatewayUrl: gateway.url, agentToken: agent.token, statusBatchMs: 300 });
    await waitFor(() => handle.status().ready, 10_000, 'the agent to connect');
    const fullFrames = async () => sampleValue(await handle.metrics.registry.metrics(), /kasgate_agent_status_frames_total\{full="true"\} (\d+)/);
    const deadline = Date.now() + 10_000;
    while ((await fullFrames()) < 2 && Date.now() < deadline) await settle(50);
    expect(await fullFrames()).toBeGreaterThan(2); // 52 objects in frames of 4 KiB: parts
    const [connection] = await connections(agent.id);
    expect(connection).toBeDefined();

    flux.setGitHead(PROJECT, 'main', sha(1));
    const response = await gateway.postWebhook(pushBody({ path: PROJECT, visibility: 0, ref: 'refs/heads/main', after: sha(1) }));
    expect(response.status).toBe(202);
    await waitFor(() => h.kube.get('Kustomization', 'apps', 'diaspora')?.['status']?.lastAppliedRevision === `main@sha1:${sha(1)}`, 10_000, 'Flux to apply the push');
    const changeFrames = async () => sampleValue(await handle.metrics.registry.metrics(), /kasgate_agent_status_frames_total\{full="false"\} (\d+)/);
    while ((await changeFrames()) < 1 && Date.now() < deadline + 10_000) await settle(50);
    await settle(500);
    expect(await changeFrames()).toBeGreaterThanOrEqual(1);

    // The gateway took every frame: nothing rejected, and the agent is still on its first connection.
    expect((await gateway.ctx.metrics.framesRejected.get()).values).toEqual([]);
    expect((await connections(agent.id)).map((c) => c.connectionId)).toEqual([connection?.connectionId]);
  });
});
