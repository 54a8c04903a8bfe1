/**
 * A baseline kasgate to measure against in the same run: the tree of a git ref (by default
 * `merge-base`: where this branch left main, i.e. the code without this branch's work),
 * exported with `git archive` under <tmpdir>/kasgate-bench-baseline/<commit>/ (kept between runs),
 * running on this checkout's node_modules. Nothing of the working tree is touched.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './servers.js';

export interface Baseline {
  ref: string;
  commit: string;
  root: string;
}

export function exportBaseline(ref: string, options: { built: boolean }): Baseline {
  const git = (...args: string[]) => execFileSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' }).trim();
  const commit = ref === 'merge-base' ? git('merge-base', 'HEAD', 'main') : git('rev-parse', '--verify', `${ref}^{commit}`);
  if (commit === git('rev-parse', 'HEAD')) throw new Error(`${ref} is HEAD itself (on main, set BENCH_BASELINE to an earlier ref)`);
  const root = join(tmpdir(), 'kasgate-bench-baseline', commit.slice(0, 12));
  if (!existsSync(join(root, 'src/main.ts'))) {
    mkdirSync(root, { recursive: true });
    const archive = execFileSync('git', ['-C', ROOT, 'archive', '--format=tar', commit], { maxBuffer: 256 * 2 ** 20 });
    execFileSync('tar', ['-x', '-C', root], { input: archive });
  }
  if (!existsSync(join(root, 'node_modules'))) symlinkSync(join(ROOT, 'node_modules'), join(root, 'node_modules'), 'dir');
  if (options.built && !existsSync(join(root, 'dist/main.js'))) execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'ignore' });
  return { ref, commit, root };
}
