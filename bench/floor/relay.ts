/**
 * The floor relay: the least this stack (fastify + ws, optionally one Redis pub/sub hop) can do
 * to turn a POSTed GitLab push into a frame on the sockets subscribed to that project. No auth,
 * no storage, no validation, no heartbeat. kasgate's figures are read as ratios against it.
 *
 *   FLOOR_MODE=memory  POST → write to local sockets → 202
 *   FLOOR_MODE=redis   POST → PUBLISH → 202; every replica's subscriber → local sockets
 *
 * It speaks just enough of kasgate.v1 (same path, hello, subscribe/subscribed, push frame shape)
 * for the benchmark's subscribers to treat both servers alike.
 */
import Fastify from 'fastify';
import websocket from '@fastify/websocket';
import { Redis } from 'ioredis';
import type { WebSocket } from 'ws';

const mode = process.env.FLOOR_MODE === 'redis' ? 'redis' : 'memory';
const port = Number(process.env.PORT ?? 0);
const channel = process.env.FLOOR_CHANNEL ?? 'floor:push';

const byProject = new Map<string, Set<WebSocket>>();
let nextEventId = 0;

function deliver(path: string, frame: Buffer): void {
  const sockets = byProject.get(path);
  if (!sockets) return;
  for (const ws of sockets) ws.send(frame, { binary: false });
}

function frameOf(body: any): Buffer {
  const project = body.project;
  return Buffer.from(
    JSON.stringify({
      type: 'push',
      eventId: String(++nextEventId),
      project: { id: project.id, path: project.path_with_namespace, defaultBranch: project.default_branch },
      ref: body.ref,
      before: body.before,
      after: body.after,
      receivedAt: new Date().toISOString(),
    }),
  );
}

const app = Fastify({ logger: false });
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
await app.register(websocket, { options: { perMessageDeflate: false } });

let publish: (path: string, frame: Buffer) => Promise<void> = async (path, frame) => deliver(path, frame);
let redis: { pub: Redis; sub: Redis } | undefined;
if (mode === 'redis') {
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  redis = { pub: new Redis(url), sub: new Redis(url) };
  // One message per push: "<path>\n<frame>", so the subscriber routes without parsing JSON.
  redis.sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => {
    const newline = message.indexOf(10);
    deliver(message.toString('utf8', 0, newline), message.subarray(newline + 1));
  });
  await redis.sub.subscribe(channel);
  const { pub } = redis;
  publish = async (path, frame) => {
    await pub.publish(channel, Buffer.concat([Buffer.from(`${path}\n`), frame]));
  };
}

app.get('/healthz', async () => ({ status: 'ok' }));

app.post('/webhooks/gitlab', async (request, reply) => {
  const body = JSON.parse((request.body as Buffer).toString('utf8'));
  const frame = frameOf(body);
  await publish(body.project.path_with_namespace, frame);
  return reply.code(202).send({ status: 'accepted', eventId: String(nextEventId), duplicate: false });
});

app.get('/agent/v1/connect', { websocket: true }, (ws) => {
  let projects: string[] = [];
  const unindex = () => {
    for (const path of projects) byProject.get(path)?.delete(ws);
  };
  ws.send(JSON.stringify({ type: 'hello', agentId: 'floor', connectionId: 'floor', heartbeatSeconds: 30, config: {} }));
  ws.on('message', (data) => {
    const frame = JSON.parse(data.toString());
    if (frame.type !== 'subscribe') return;
    unindex();
    projects = frame.projects;
    for (const path of projects) {
      let sockets = byProject.get(path);
      if (!sockets) byProject.set(path, (sockets = new Set()));
      sockets.add(ws);
    }
    ws.send(JSON.stringify({ type: 'subscribed', projects: projects.map((path) => ({ path, access: 'granted' })) }));
  });
  ws.on('close', unindex);
});

await app.listen({ port, host: '127.0.0.1' });

process.on('SIGTERM', () => {
  void (async () => {
    await app.close();
    redis?.sub.disconnect();
    redis?.pub.disconnect();
    process.exit(0);
  })();
});
