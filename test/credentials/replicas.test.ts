/** Deploy tokens across replicas: made once (the work is claimed by one replica), sent where the agent is connected. */
import { describe, expect, it } from 'vitest';
import { useReplicaPair } from '../support/gateway.js';
import { useFakeGitLab } from '../support/use-fake-gitlab.js';
import { connectAgent, eventually } from '../support/agent-client.js';
import { credentialsOf, encryptionKey, isCredentials, projectEntry, setFluxAccess } from './support.js';

describe('deploy tokens on two replicas', () => {
  const fake = useFakeGitLab();
  const [first, second] = useReplicaPair({ env: fake.env({ KASGATE_ENCRYPTION_KEY: encryptionKey() }) });

  it('makes one token per entry whichever replica is told, and the agent gets it on the replica it is connected to', async () => {
    fake.gitlab.addProject({ id: 7, path: 'acme/app', defaultBranch: 'main' });
    const agent = await first.createAgent('spread', 'acme/config');
    const socket = await connectAgent(second.wsUrl, agent.token);
    // Both replicas hear of it (as after a config read on one, then the periodic check on the other).
    await setFluxAccess(first, agent.id, { rotateSeconds: 86_400, entries: [projectEntry('acme/app', 'app-git')] });
    second.ctx.fluxAccess.changed(agent.id);
    const frame = await socket.waitFor(isCredentials, 10_000);
    expect(fake.gitlab.deployTokens.works(frame.password)).toBe(true);
    socket.send({ type: 'credentials_applied', id: frame.id });
    await eventually(() => credentialsOf(first, agent.id), (b) => b.credentials[0]?.state === 'applied');
    // Give both workers time to look again: still one token.
    await new Promise((r) => setTimeout(r, 1500));
    expect(fake.gitlab.deployTokens.tokens).toHaveLength(1);
    await socket.close();
  });
});
