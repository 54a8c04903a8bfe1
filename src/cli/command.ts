/**
 * How a `kasgate` command is declared, parsed (node's util.parseArgs, strict) and explained
 * (`--help`). A command's run() is reached only after its arguments parsed cleanly and no
 * `--help` was asked for, so help never has a side effect.
 */
import { parseArgs } from 'node:util';
import { UsageError } from './exit-codes.js';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** Placeholder in the help, e.g. "path" gives `--config-project <path>`. */
  value?: string;
  required?: boolean;
  description: string;
}

export interface ArgumentSpec {
  name: string;
  description: string;
  optional?: boolean;
}

export interface ParsedInput {
  values: Record<string, string | boolean | string[] | undefined>;
  args: string[];
}

export interface CommandSpec {
  /** e.g. "agents create", "serve". */
  name: string;
  summary: string;
  /** Paragraphs after the summary in `--help`. */
  details?: string;
  args?: ArgumentSpec[];
  options?: Record<string, OptionSpec>;
  /** Whether the admin client's options (--json, --url) apply. */
  admin?: boolean;
  /** Resolves with the exit code. */
  run(input: ParsedInput, env: NodeJS.ProcessEnv): Promise<number>;
}

const HELP_OPTION: Record<string, OptionSpec> = { help: { type: 'boolean', short: 'h', description: 'show this help' } };

export const ADMIN_OPTIONS: Record<string, OptionSpec> = {
  json: { type: 'boolean', description: 'print JSON (the API\'s own shapes) instead of tables' },
  url: { type: 'string', value: 'url', description: 'the gateway (default: $KASGATE_URL, else http://127.0.0.1:8080)' },
};

export function optionsOf(spec: CommandSpec): Record<string, OptionSpec> {
  return { ...spec.options, ...(spec.admin ? ADMIN_OPTIONS : {}), ...HELP_OPTION };
}

/** `--help` or `-h` anywhere before a `--` terminator. */
export function wantsHelp(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

export function parseCommand(spec: CommandSpec, argv: string[]): ParsedInput {
  const options = optionsOf(spec);
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: Object.fromEntries(
        Object.entries(options).map(([name, o]) => [
          name,
          { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) },
        ]),
      ),
    });
  } catch (err) {
    throw new UsageError(describeParseError(err), spec.name);
  }
  const values = parsed.values as ParsedInput['values'];
  const declared = spec.args ?? [];
  const missing = declared.slice(parsed.positionals.length).find((a) => !a.optional);
  if (missing) throw new UsageError(`missing <${missing.name}>`, spec.name);
  if (parsed.positionals.length > declared.length) {
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[declared.length])}`, spec.name);
  }
  for (const [name, o] of Object.entries(options)) {
    if (o.required && values[name] === undefined) throw new UsageError(`missing --${name} <${o.value ?? 'value'}>`, spec.name);
    const value = values[name];
    if (o.type === 'string' && (value === '' || (Array.isArray(value) && value.includes('')))) {
      throw new UsageError(`--${name} needs a value`, spec.name);
    }
  }
  return { values, args: parsed.positionals };
}

function describeParseError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const quoted = /'([^']+)'/.exec(e.message ?? '')?.[1];
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${quoted ?? ''}`.trim();
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return quoted ? `option ${quoted.split(' ')[0]} ${/argument missing/.test(e.message ?? '') ? 'needs a value' : 'takes no value'}` : (e.message ?? 'invalid option');
    default:
      return e.message ?? String(err);
  }
}

function synopsis(spec: CommandSpec): string {
  const args = (spec.args ?? []).map((a) => (a.optional ? `[${a.name}]` : `<${a.name}>`));
  const required = Object.entries(spec.options ?? {})
    .filter(([, o]) => o.required)
    .map(([name, o]) => `--${name} <${o.value ?? 'value'}>`);
  return ['kasgate', spec.name, ...args, ...required, '[options]'].join(' ');
}

function optionLabel(name: string, o: OptionSpec): string {
  return `${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ` <${o.value ?? 'value'}>` : ''}`;
}

/** Two aligned columns, as in every help page. */
export function columns(rows: [string, string][], indent = '  '): string {
  const width = Math.max(...rows.map(([left]) => left.length)) + 3;
  return rows.map(([left, right]) => `${indent}${left.padEnd(width)}${right}`.trimEnd()).join('\n');
}

export function renderHelp(spec: CommandSpec): string {
  const parts = [`usage: ${synopsis(spec)}`, spec.summary];
  if (spec.details) parts.push(spec.details);
  if (spec.args?.length) parts.push(`Arguments:\n${columns(spec.args.map((a) => [`<${a.name}>`, a.description]))}`);
  const options = Object.entries(optionsOf(spec)).map(([name, o]): [string, string] => [
    optionLabel(name, o),
    `${o.description}${o.multiple ? ' (repeatable)' : ''}`,
  ]);
  parts.push(`Options:\n${columns(options)}`);
  if (spec.admin) {
    parts.push(
      'Environment:\n' +
        columns([
          ['KASGATE_URL', 'the gateway, e.g. https://kasgate.example.com (default http://127.0.0.1:8080)'],
          ['KASGATE_ADMIN_TOKEN', 'the admin token (default: the one an embedded gateway keeps in $KASGATE_DATA_DIR/secrets.json)'],
        ]),
    );
  }
  return `${parts.join('\n\n')}\n`;
}
