/**
 * `flux_access` from an agent's config file, as accepted: only entries under the config project's
 * top-level group (rule 4 of the access rule); refused entries are named in the agent's configError.
 * The config-file reader writes it; grants (the access rule) and deploy tokens (src/credentials/) read it.
 */
export type FluxAccessRole = 'read_repository' | 'read_registry';

export interface FluxAccessEntry {
  kind: 'project' | 'group';
  /** Full path as written in the file (`group/app`); compared case-insensitively. */
  path: string;
  role: FluxAccessRole;
  /** The Secret the agent writes for Flux, in each namespace. */
  secretName: string;
  namespaces: string[];
}

export interface AcceptedFluxAccess {
  /** Deploy token lifetime (`rotate`, default 90 days); a new token is made at two thirds of it. */
  rotateSeconds: number;
  entries: FluxAccessEntry[];
}

export const DEFAULT_ROTATE_SECONDS = 90 * 24 * 3600;

/** Told whenever an agent's accepted flux_access may have changed (read from its config file, or the agent deleted). */
export type FluxAccessListener = (agentId: string) => void;

export interface FluxAccessSource {
  /** The accepted flux_access of the agent's last good config file; undefined when it has none. */
  fluxAccessOf(agentId: string): Promise<AcceptedFluxAccess | undefined>;
  /** Every agent that has accepted flux_access entries (for the rotation sweep). */
  agentsWithFluxAccess(): Promise<string[]>;
  onFluxAccessChanged(listener: FluxAccessListener): void;
}
