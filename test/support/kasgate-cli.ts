/**
 * One run of the real `kasgate` command (src/main.ts through tsx) to its exit, with stdout and
 * stderr kept apart, as a script calling it would see them.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { killWithTests } from './kasgate-process.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runKasgate(args: string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<CliResult> {
  const child = killWithTests(
    spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kasgate ${args.join(' ')} did not exit within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The CLI pointed at a gateway with its admin token. */
export function adminCli(gateway: { url: string; adminToken: string }, extraEnv: Record<string, string> = {}) {
  return (...args: string[]) => runKasgate(args, { KASGATE_URL: gateway.url, KASGATE_ADMIN_TOKEN: gateway.adminToken, ...extraEnv });
}
