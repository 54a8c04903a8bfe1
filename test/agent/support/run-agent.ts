/** `kasgate agent` as a process, for tests: runAgent with this process's environment. */
import { runAgent } from '../../../src/agent/main.js';

try {
  await runAgent(process.env);
} catch (err) {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
}
