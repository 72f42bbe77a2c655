import { createApp } from '../app/index.ts';
import { loadConfig } from '../config/load.ts';
import { errorMessage } from '../lib/errors.ts';
import { secureDataDir } from '../lib/data-dir.ts';
import { createLogger } from '../lib/logger.ts';

export const START_USAGE = `Usage: vigil start [--config FILE] [--roles all|ingest,store,detect,api]

Starts a Vigil node. With no configuration it runs every role in this process on the embedded
default: HTTP API on 127.0.0.1:8080, syslog on UDP and TCP port 5514, data in ./data.

Options:
  --config FILE   YAML configuration file (also VIGIL_CONFIG)
  --roles LIST    roles to run, comma separated (also VIGIL_ROLES); default all

Environment: VIGIL_HTTP_ADDR, VIGIL_SYSLOG_PORT, VIGIL_DATA_DIR, VIGIL_ADMIN_TOKEN, VIGIL_LOG_LEVEL,
and VIGIL_<SECTION>__<KEY> for any other setting (see the README's configuration table).
`;

/** Stop budget after SIGTERM: intake stops, in-flight batches commit, the store closes. */
const STOP_BUDGET_MS = 20000;

/** `vigil start`: runs the node until SIGTERM/SIGINT, then stops gracefully. */
export async function startCommand(opts: { config?: string; roles?: string }): Promise<number> {
  const env = { ...process.env };
  if (opts.roles) env.VIGIL_ROLES = opts.roles;
  const config = loadConfig({ file: opts.config, env });
  const logger = createLogger(config.log.level);
  try {
    secureDataDir(config.data_dir, logger);
  } catch (err) {
    logger.fatal({ err: errorMessage(err), dir: config.data_dir }, 'The data directory cannot be made private.');
    return 1;
  }
  const app = createApp(config, logger);
  try {
    await app.start();
  } catch (err) {
    logger.fatal({ err: errorMessage(err) }, 'Vigil could not start.');
    await app.stop(Date.now() + 5000);
    return 1;
  }
  const addr = app.api?.address();
  if (addr) logger.info({ url: `http://${addr.host}:${addr.port}` }, 'The HTTP API is listening.');
  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'Stopping: intake closes, pending events are committed.');
      app
        .stop(Date.now() + STOP_BUDGET_MS)
        .then(() => resolve(0))
        .catch(() => resolve(1));
    };
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));
  });
}
