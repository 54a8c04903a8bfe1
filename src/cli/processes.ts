/** The long-running commands: serve, migrate, agent. Their code loads only when they run. */
import type { CommandSpec } from './command.js';
import { EXIT } from './exit-codes.js';

const serve: CommandSpec = {
  name: 'serve',
  summary: 'Run the gateway: apply pending migrations, then serve webhooks, agents and the admin API on $HOST:$PORT.',
  details:
    'Configuration comes from the environment (README "Configuration"): DATABASE_URL (absent: embedded\n' +
    'PGlite under KASGATE_DATA_DIR), REDIS_URL (absent: in-process, one replica only), KASGATE_ADMIN_TOKEN,\n' +
    'KASGATE_WEBHOOK_SECRETS, PORT, HOST, LOG_LEVEL, ... On SIGTERM it drains agent sockets (1012) and\n' +
    'exits within 10 s.\n\n' +
    'Exit: 1 when it cannot start (one line naming the variable: DATABASE_URL, PORT, KASGATE_DATA_DIR),\n' +
    '2 on bad configuration. LOG_LEVEL=debug adds the stack trace.',
  async run(_input, env) {
    const { serve: run } = await import('./serve.js');
    return run(env);
  },
};

const migrate: CommandSpec = {
  name: 'migrate',
  summary: 'Apply pending database migrations and exit (serve does this too, under an advisory lock).',
  details: 'Uses DATABASE_URL and KASGATE_DB_SCHEMA, or the embedded database under KASGATE_DATA_DIR.',
  async run(_input, env) {
    const { migrateOnly } = await import('./serve.js');
    return migrateOnly(env);
  },
};

const agent: CommandSpec = {
  name: 'agent',
  summary: 'Run the in-cluster agent: connect out to the gateway and make Flux reconcile on every push.',
  details:
    'Configuration comes from the environment (docs/agent.md): KASGATE_URL, KASGATE_AGENT_TOKEN or\n' +
    'KASGATE_AGENT_TOKEN_FILE, GITLAB_EXTERNAL_URL, ... Manifests: deploy/README.md.\n\n' +
    'Exit: 2 on bad configuration, 1 when the gateway revoked its token (do not restart blindly).',
  async run(_input, env) {
    const { runAgent, AgentConfigError } = await import('../agent/main.js');
    try {
      await runAgent(env);
      return EXIT.ok;
    } catch (err) {
      if (!(err instanceof Error)) throw err;
      process.stderr.write(`kasgate agent: ${err.message}\n`);
      return err instanceof AgentConfigError ? EXIT.usage : EXIT.failed;
    }
  },
};

export const processCommands: CommandSpec[] = [serve, migrate, agent];
