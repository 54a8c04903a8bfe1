/**
 * The agent's configuration file, `.gitlab/agents/<agent name>/config.yaml`, parsed and
 * validated. GitLab's own kas reads the same file, so its keys (kas's AgentConfiguration:
 * gitops, ci_access, user_access, observability, container_scanning, remote_development, and
 * the older starboard; see gitlabhq doc/user/clusters/agent/work_with_agent.md and
 * gitlab-agent pkg/agentcfg) are accepted and ignored; kasgate reads `flux` and `flux_access`;
 * any other top-level key is an error, as the issue asks.
 */
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { DEFAULT_ROTATE_SECONDS, type AcceptedFluxAccess, type FluxAccessEntry } from './flux-access.js';
import { isWellFormedPath, topLevelOf, underTopLevelGroup } from '../access-rule.js';

/** Keys of GitLab's agent configuration that kasgate leaves to kas. */
export const GITLAB_ONLY_KEYS = ['gitops', 'ci_access', 'user_access', 'observability', 'container_scanning', 'remote_development', 'starboard'] as const;

/** The biggest file read (GitLab's own agent config files are small). */
export const MAX_FILE_BYTES = 256 * 1024;

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `rotate`: a positive whole number of s, m, h or d (no minimum, as the contract says). */
export function parseRotate(value: string): number | undefined {
  const match = /^(\d{1,9})([smhd])$/.exec(value.trim());
  if (!match) return undefined;
  const seconds = Number(match[1]) * UNITS[match[2]!]!;
  return seconds > 0 ? seconds : undefined;
}

const K8S_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const Entry = z.strictObject({
  id: z.string().min(1).max(1024).refine(isWellFormedPath, 'not a project or group path'),
  role: z.enum(['read_repository', 'read_registry']).default('read_repository'),
  secret_name: z.string().max(253).regex(K8S_NAME, 'a Kubernetes Secret name (lower-case letters, digits, -)'),
  namespaces: z.array(z.string().max(63).regex(K8S_NAME, 'a Kubernetes namespace name')).min(1).max(100),
});

const FileSchema = z.looseObject({
  flux: z
    .looseObject({ webhook_receiver_url: z.url({ protocol: /^https?$/ }).optional() })
    .optional(),
  flux_access: z
    .strictObject({
      rotate: z.string().refine((v) => parseRotate(v) !== undefined, 'a duration such as 90d, 12h, 30m or 45s').optional(),
      projects: z.array(Entry).max(500).default([]),
      groups: z.array(Entry).max(500).default([]),
    })
    .optional(),
});

export interface ParsedConfigFile {
  /** The keys kasgate takes into the agent's config (as the hello frame carries them). */
  config: Record<string, unknown>;
  fluxAccess: AcceptedFluxAccess;
  /** flux_access entries outside the config project's top-level group, as written. */
  refused: string[];
}

export type ParseOutcome = { ok: true; file: ParsedConfigFile } | { ok: false; error: string };

function describeIssue(issue: z.core.$ZodIssue): string {
  const where = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
  return `${where}: ${issue.message}`;
}

export function parseConfigFile(text: string, configProject: string): ParseOutcome {
  let raw: unknown;
  try {
    raw = parseYaml(text, { maxAliasCount: 100, prettyErrors: false });
  } catch (err) {
    const message = err instanceof YAMLParseError ? err.message.split('\n')[0]! : 'unreadable';
    return { ok: false, error: `bad YAML: ${message}` };
  }
  // An empty file is a valid (empty) configuration, as for kas.
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) return { ok: false, error: 'the file must be a YAML mapping' };
  const known = new Set<string>(['flux', 'flux_access', ...GITLAB_ONLY_KEYS]);
  const unknown = Object.keys(raw as Record<string, unknown>).filter((key) => !known.has(key));
  if (unknown.length > 0) return { ok: false, error: `unknown key${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}` };
  const parsed = FileSchema.safeParse(raw);
  if (!parsed.success) return { ok: false, error: parsed.error.issues.slice(0, 5).map(describeIssue).join('; ') };

  const config: Record<string, unknown> = {};
  const url = parsed.data.flux?.webhook_receiver_url;
  if (url !== undefined) config.flux = { webhookReceiverUrl: url };

  const access = parsed.data.flux_access;
  const entries: FluxAccessEntry[] = [];
  const refused: string[] = [];
  for (const [kind, list] of [['project', access?.projects ?? []], ['group', access?.groups ?? []]] as const) {
    for (const entry of list) {
      if (!underTopLevelGroup(entry.id, configProject)) {
        refused.push(entry.id);
        continue;
      }
      entries.push({ kind, path: entry.id, role: entry.role, secretName: entry.secret_name, namespaces: [...new Set(entry.namespaces)] });
    }
  }
  const rotateSeconds = access?.rotate ? parseRotate(access.rotate)! : DEFAULT_ROTATE_SECONDS;
  return { ok: true, file: { config, fluxAccess: { rotateSeconds, entries }, refused } };
}

/** The refused entries as configError names them. */
export function refusedMessage(refused: string[], configProject: string): string {
  return `flux_access entries outside the config project's top-level group ${JSON.stringify(topLevelOf(configProject))} were refused: ${refused.join(', ')}`;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The stored config with the file's keys over it, key by key (nested mappings merged the same way). */
export function mergeConfig(stored: Record<string, unknown>, file: Record<string, unknown> | null | undefined): Record<string, unknown> {
  if (!file) return stored;
  const out: Record<string, unknown> = { ...stored };
  for (const [key, value] of Object.entries(file)) {
    const below = out[key];
    out[key] = isPlainObject(below) && isPlainObject(value) ? mergeConfig(below, value) : value;
  }
  return out;
}

/** JSON with mapping keys sorted: equal configs compare equal whatever order their keys came in. */
export const stableJson = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    isPlainObject(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
