/**
 * A subscriber process: holds thousands of kasgate.v1 agent sockets and records when push frames
 * arrive, driven by the runner over IPC. Kept lean on the receiving path (no JSON parse) so that
 * the driver is never what limits delivery.
 */
import WebSocket from 'ws';
import { keyOfFrame, nowUs, sentAtUs } from './clock.js';
import type { ClientSpec, Collected, SubscriberReply, SubscriberRequest } from './subscriber-protocol.js';

const clients = new Set<WebSocket>();
let unexpectedCloses = 0;
let frames = 0;
let firstUs = 0;
let lastUs = 0;
let keepSamples = false;
let samples: number[] = [];
let byKey = new Map<string, { count: number; lastUs: number }>();

function reset(samplesWanted: boolean): void {
  frames = 0;
  firstUs = 0;
  lastUs = 0;
  keepSamples = samplesWanted;
  samples = [];
  byKey = new Map();
}

/** The status frames of a reporting agent (see ClientSpec.status). */
function statusObjects(project: string, sha: string | undefined) {
  const revision = sha ? `main@sha1:${sha}` : null;
  const source = {
    kind: 'GitRepository',
    namespace: 'flux-system',
    name: 'app',
    ready: sha ? 'True' : 'Unknown',
    revision,
    url: `https://gitlab.example.com/${project}.git`,
    project,
    ref: { branch: 'main' },
  };
  const workload = {
    kind: 'Kustomization',
    namespace: 'flux-system',
    name: 'app',
    ready: sha ? 'True' : 'Unknown',
    reason: sha ? 'ReconciliationSucceeded' : 'Progressing',
    message: sha ? `Applied revision: ${revision}` : null,
    revision,
    attemptedRevision: revision,
    sourceRef: { kind: 'GitRepository', namespace: 'flux-system', name: 'app' },
  };
  return [source, workload];
}

function onPush(data: Buffer, ws?: WebSocket, project?: string): void {
  const at = nowUs();
  frames++;
  if (firstUs === 0) firstUs = at;
  lastUs = at;
  const key = keyOfFrame(data);
  if (key === undefined) return;
  // The stand-in controllers fetch and apply at once.
  if (ws && project) ws.send(JSON.stringify({ type: 'status', full: false, objects: statusObjects(project, key) }));
  const entry = byKey.get(key);
  if (entry) {
    entry.count++;
    entry.lastUs = at;
  } else byKey.set(key, { count: 1, lastUs: at });
  if (keepSamples) samples.push(at - sentAtUs(key));
}

/** Connects, waits for hello, subscribes, waits for subscribed. */
function connect(spec: ClientSpec, localAddress: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${spec.url}/agent/v1/connect`, 'kasgate.v1', {
      headers: spec.token ? { authorization: `Bearer ${spec.token}` } : {},
      localAddress,
      perMessageDeflate: false,
      handshakeTimeout: 30_000,
    });
    let stage: 'hello' | 'subscribed' | 'live' = 'hello';
    ws.on('message', (data: Buffer) => {
      if (stage === 'live') return onPush(data, ws, spec.status?.project);
      if (stage === 'hello') {
        stage = 'subscribed';
        ws.send(JSON.stringify({ type: 'subscribe', projects: spec.projects }));
      } else if (data.includes('"subscribed"')) {
        stage = 'live';
        if (spec.status) ws.send(JSON.stringify({ type: 'status', full: true, objects: statusObjects(spec.status.project, undefined) }));
        clients.add(ws);
        resolve();
      }
    });
    ws.on('error', (err) => {
      if (stage !== 'live') reject(err);
    });
    ws.on('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.on('close', (code) => {
      if (stage !== 'live') reject(new Error(`closed ${code} before subscribing`));
      else if (clients.delete(ws)) unexpectedCloses++;
    });
  });
}

/**
 * Connects every client, a few at a time. A refused or dropped attempt is retried twice (an agent
 * reconnects too), and reported: the runner logs it, since a healthy server refuses nothing.
 */
async function connectAll(specs: ClientSpec[], localAddresses: string[], concurrency: number) {
  let next = 0;
  let failed = 0;
  let retried = 0;
  const errors = new Set<string>();
  const worker = async () => {
    while (next < specs.length) {
      const index = next++;
      for (let attempt = 0; ; attempt++) {
        try {
          await connect(specs[index]!, localAddresses[(index + attempt) % localAddresses.length]!);
          break;
        } catch (err) {
          if (errors.size < 5) errors.add((err as Error).message);
          if (attempt === 2) {
            failed++;
            break;
          }
          retried++;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { connected: specs.length - failed, failed, retried, errors: [...errors] };
}

async function closeAll(): Promise<void> {
  const all = [...clients];
  clients.clear();
  await Promise.all(
    all.map(
      (ws) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            ws.terminate();
            resolve();
          }, 5000);
          ws.once('close', () => {
            clearTimeout(timer);
            resolve();
          });
          ws.close();
        }),
    ),
  );
}

function collected(): Collected {
  return {
    frames,
    firstUs,
    lastUs,
    samples: keepSamples ? samples : [],
    keys: Object.fromEntries(byKey),
    open: clients.size,
    unexpectedCloses,
  };
}

process.on('message', (request: SubscriberRequest) => {
  const answer = (reply: SubscriberReply) => process.send!({ id: request.id, ...reply });
  switch (request.cmd) {
    case 'connect':
      void connectAll(request.clients, request.localAddresses, request.concurrency).then((result) => answer({ cmd: 'connected', ...result }));
      break;
    case 'reset':
      reset(request.samples);
      answer({ cmd: 'done' });
      break;
    case 'collect':
      answer({ cmd: 'collected', collected: collected() });
      break;
    case 'close':
      void closeAll().then(() => answer({ cmd: 'done' }));
      break;
  }
});
process.on('disconnect', () => process.exit(0));
