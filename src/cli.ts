/**
 * The `kasgate` command: the gateway's processes (serve | migrate | agent) and the admin
 * commands over the REST API (agents, tokens, grants, events). Nothing runs before the
 * arguments parsed; `help`, `--help` and `--version` only print.
 */
import { readFileSync } from 'node:fs';
import { agentCommands } from './cli/agents.js';
import { columns, parseCommand, renderHelp, wantsHelp, type CommandSpec } from './cli/command.js';
import { eventCommands } from './cli/events.js';
import { CliError, EXIT, UsageError } from './cli/exit-codes.js';
import { grantCommands } from './cli/grants.js';
import { processCommands } from './cli/processes.js';
import { tokenCommands } from './cli/tokens.js';

const GROUPS: Record<string, { summary: string; commands: CommandSpec[] }> = {
  agents: { summary: 'agents: register, list, show, delete', commands: agentCommands },
  tokens: { summary: "an agent's tokens: issue, list, revoke", commands: tokenCommands },
  grants: { summary: 'projects and groups an agent may see beyond its own', commands: grantCommands },
  events: { summary: 'the push event log', commands: eventCommands },
};

const EXIT_CODES_HELP = `Exit codes:
${columns([
  ['0', 'ok'],
  ['1', 'failed: the gateway is unreachable or answered 5xx; serve/migrate could not start'],
  ['2', 'usage: unknown command or option, missing argument, bad configuration, input the API rejected'],
  ['3', 'not found: no such agent or token'],
  ['4', 'unauthorized: KASGATE_ADMIN_TOKEN missing or wrong'],
  ['5', 'conflict: it exists already (an agent of that name)'],
])}`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function topHelp(): string {
  const admin = Object.values(GROUPS).flatMap((g) => g.commands);
  return `usage: kasgate <command> [options]

kasgate ${version()}: instant GitOps for GitLab. GitLab webhooks in, a notification to every in-cluster
agent that watches the project and may see it, and Flux reconciles at once.

Gateway and agent:
${columns(processCommands.map((c) => [c.name, c.summary]))}

Administration, over the REST API at $KASGATE_URL with $KASGATE_ADMIN_TOKEN (tables, or --json):
${columns(admin.map((c) => [c.name, c.summary]))}

  kasgate help <command> or kasgate <command> --help shows a command's arguments and options;
  kasgate --version prints the version.

${EXIT_CODES_HELP}
`;
}

function groupHelp(name: string): string {
  const group = GROUPS[name]!;
  const subcommands = group.commands.map((c) => c.name.split(' ')[1]!);
  return `usage: kasgate ${name} <${subcommands.join('|')}> [options]

${group.summary[0]!.toUpperCase()}${group.summary.slice(1)}.

${columns(group.commands.map((c) => [c.name.split(' ')[1]!, c.summary]))}

kasgate ${name} <command> --help shows its arguments and options.
`;
}

/** The spec a command line names, or undefined when it names a group only. */
function findSpec(words: string[]): { spec?: CommandSpec; group?: string; rest: string[] } {
  const [first, second, ...rest] = words;
  const processCommand = processCommands.find((c) => c.name === first);
  if (processCommand) return { spec: processCommand, rest: words.slice(1) };
  if (first === undefined || !(first in GROUPS)) {
    throw first?.startsWith('-')
      ? new UsageError(`unknown option ${first}`, '')
      : new UsageError(`unknown command ${JSON.stringify(first)}`, '');
  }
  if (second === undefined || second.startsWith('-') || second === 'help') return { group: first, rest: words.slice(1) };
  const spec = GROUPS[first]!.commands.find((c) => c.name === `${first} ${second}`);
  if (!spec) throw new UsageError(`unknown command ${JSON.stringify(`${first} ${second}`)}`, first);
  return { spec, rest };
}

function help(words: string[]): number {
  if (words.length === 0) {
    process.stdout.write(topHelp());
    return EXIT.ok;
  }
  const found = findSpec(words.slice(0, 2));
  process.stdout.write(found.spec ? renderHelp(found.spec) : groupHelp(found.group!));
  return EXIT.ok;
}

async function dispatch(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    process.stderr.write(topHelp());
    return EXIT.usage;
  }
  if (first === '--version' || first === '-V' || first === 'version') {
    process.stdout.write(`kasgate ${version()}\n`);
    return EXIT.ok;
  }
  if (first === 'help' || first === '--help' || first === '-h') return help(rest);

  const found = findSpec(argv);
  if (!found.spec) {
    if (wantsHelp(found.rest) || found.rest[0] === 'help') {
      process.stdout.write(groupHelp(found.group!));
      return EXIT.ok;
    }
    const names = GROUPS[found.group!]!.commands.map((c) => c.name.split(' ')[1]!);
    throw new UsageError(`missing command: ${names.slice(0, -1).join(', ')} or ${names.at(-1)}`, found.group!);
  }
  if (wantsHelp(found.rest)) {
    process.stdout.write(renderHelp(found.spec));
    return EXIT.ok;
  }
  return found.spec.run(parseCommand(found.spec, found.rest), env);
}

function report(err: unknown, env: NodeJS.ProcessEnv): number {
  const debug = env.LOG_LEVEL === 'debug' || env.LOG_LEVEL === 'trace';
  if (err instanceof UsageError) {
    const where = err.command ? `kasgate ${err.command}` : 'kasgate';
    const helpCommand = err.command ? `${where} --help` : 'kasgate help';
    process.stderr.write(`${where}: ${err.message} (${helpCommand} shows the usage)\n`);
    return err.exitCode;
  }
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`kasgate: ${message}\n`);
  if (debug) {
    for (let e: unknown = err instanceof CliError ? err.cause : err; e instanceof Error; e = e.cause) {
      process.stderr.write(`${e.stack ?? e.message}\n`);
    }
  }
  return err instanceof CliError ? err.exitCode : EXIT.failed;
}

export async function runCli(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  try {
    return await dispatch(argv, env);
  } catch (err) {
    return report(err, env);
  }
}
