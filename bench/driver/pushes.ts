/**
 * Push webhooks as GitLab sends them: the Push Hook fixture, varied per project, with the send
 * time in the `after` sha (see clock.ts). Sent over keep-alive HTTP/1.1.
 */
import http from 'node:http';
import { pushBody } from '../../test/support/fixtures.js';
import { afterSha, nowUs } from './clock.js';

const PLACEHOLDER = 'f'.repeat(40);

export interface Target {
  url: string;
  /** Headers every webhook carries (the secret, for kasgate). */
  headers: Record<string, string>;
}

export function webhookHeaders(secret: string | undefined): Record<string, string> {
  return {
    'content-type': 'application/json',
    'x-gitlab-event': 'Push Hook',
    ...(secret ? { 'x-gitlab-token': secret } : {}),
  };
}

export const projectPath = (group: string, index: number) => `bench-${group}/project-${index}`;

/** One body template per project: public (visibility 20), so every subscribed agent may see it. */
export function bodyTemplates(group: string, projects: number, firstId: number): string[] {
  return Array.from({ length: projects }, (_, i) =>
    JSON.stringify(pushBody({ path: projectPath(group, i), projectId: firstId + i, visibility: 20, after: PLACEHOLDER })),
  );
}

let sequence = 0;
/** The body with a fresh `after` sha carrying the time of this call. */
export function stamp(template: string): { body: string; sha: string; sentUs: number } {
  const sentUs = nowUs();
  const sha = afterSha(++sequence, sentUs);
  return { body: template.replaceAll(PLACEHOLDER, sha), sha, sentUs };
}

/** Static bodies for autocannon (throughput): the send time does not matter there. */
export function staticBodies(templates: string[]): string[] {
  return templates.map((t) => stamp(t).body);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/** POSTs a webhook; resolves with the status (0 on a transport error), and records the answer time in µs when asked. */
export function post(target: Target, body: string, answerUs?: number[]): Promise<number> {
  const started = nowUs();
  return new Promise((resolve) => {
    const request = http.request(`${target.url}/webhooks/gitlab`, { method: 'POST', agent, headers: target.headers }, (response) => {
      response.resume();
      response.on('end', () => {
        answerUs?.push(nowUs() - started);
        resolve(response.statusCode ?? 0);
      });
    });
    request.on('error', () => resolve(0));
    request.end(body);
  });
}

/**
 * Open loop: sends at `rate` per second for `seconds`, whatever the answers do, each stamped
 * when it leaves. Returns the statuses.
 */
export async function openLoop(target: Target, templates: string[], rate: number, seconds: number, answerUs?: number[]) {
  const total = rate * seconds;
  const started = nowUs();
  const answers: Promise<number>[] = [];
  while (answers.length < total) {
    const due = Math.min(total, Math.floor(((nowUs() - started) / 1e6) * rate) + 1);
    while (answers.length < due) answers.push(post(target, stamp(templates[answers.length % templates.length]!).body, answerUs));
    await new Promise((r) => setTimeout(r, 1));
  }
  const sendSeconds = (nowUs() - started) / 1e6;
  const statuses = await Promise.all(answers);
  return {
    sent: total,
    sendSeconds,
    non2xx: statuses.filter((s) => s < 200 || s > 299).length,
  };
}
