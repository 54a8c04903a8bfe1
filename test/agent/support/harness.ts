/**
 * The cluster side of an agent test: the test API server, the test Flux receiver (also reachable
 * through the API server's service proxy as flux-system/webhook-receiver), a kubeconfig file
 * for them, and agents started in-process with fast timings (annotate mode and the registry
 * REGISTRY_HOST unless a test says otherwise).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import type { AgentConfig } from '../../../src/agent/config.js';
import { startAgent, type AgentHandle } from '../../../src/agent/main.js';
import { FakeFluxReceiver } from './fake-flux-receiver.js';
import { FakeKube, type FakeKubeOptions } from './fake-kube.js';

export const GITLAB_URL = 'https://gitlab.example.com';
export const REGISTRY_HOST = 'registry.example.com';

export interface Harness {
  kube: FakeKube;
  receiver: FakeFluxReceiver;
  kubeconfigPath: string;
  agents: AgentHandle[];
  /** Starts an agent in-process; `logger` replaces the default one (silent unless LOG_LEVEL says otherwise). */
  startAgent(config: Pick<AgentConfig, 'gatewayUrl' | 'agentToken'> & Partial<AgentConfig>, logger?: Logger): Promise<AgentHandle>;
  close(): Promise<void>;
}

export async function createHarness(kubeOptions: FakeKubeOptions = {}): Promise<Harness> {
  const kube = await new FakeKube(kubeOptions).start();
  const receiver = await new FakeFluxReceiver(kube).start();
  kube.services.set('flux-system/webhook-receiver', receiver.url);
  const dir = await mkdtemp(join(tmpdir(), 'kasgate-agent-'));
  const kubeconfigPath = join(dir, 'kubeconfig');
  await writeFile(kubeconfigPath, kube.kubeconfig());
  const agents: AgentHandle[] = [];
  return {
    kube,
    receiver,
    kubeconfigPath,
    agents,
    async startAgent(overrides, logger) {
      const config: AgentConfig = {
        gitlabUrl: GITLAB_URL,
        registryHost: REGISTRY_HOST,
        triggerMode: 'annotate',
        watchNamespaces: [],
        webhookReceiverUrl: receiver.url,
        kubeconfig: kubeconfigPath,
        health: { host: '127.0.0.1', port: 0 },
        reconnect: { minMs: 50, maxMs: 400 },
        subscribeDebounceMs: 50,
        trigger: { attempts: 4, minDelayMs: 20, maxDelayMs: 100, timeoutMs: 2000 },
        kubeRetryMs: 200,
        statusBatchMs: 200,
        credentialsRetry: { minMs: 50, maxMs: 400 },
        logLevel: 'silent',
        ...overrides,
      };
      const agent = await startAgent(config, { logger: logger ?? pino({ level: process.env['LOG_LEVEL'] ?? 'silent' }) });
      agents.push(agent);
      return agent;
    },
    async close() {
      await Promise.all(agents.map((a) => a.close()));
      await receiver.close();
      await kube.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
