import { Registry } from 'prom-client';
import { createCollector } from '../collect/index.ts';
import { loadCollectConfig } from '../collect/load.ts';
import { secureDataDir } from '../lib/data-dir.ts';
import { errorMessage } from '../lib/errors.ts';
import { createLogger } from '../lib/logger.ts';

export const COLLECT_USAGE = `Usage: vigil collect --config FILE

Runs a collector: receives syslog (UDP, TCP, TLS, RELP) and HTTP NDJSON, keeps every event in a durable
local queue, and forwards it to the sites listed in the file, in order of preference, deleting it only once
a site has committed it. See docs/deployment.md, "Collectors".

Options:
  --config FILE   YAML configuration of the collector (its own schema: data_dir, syslog, http, parse,
                  queue, forward.endpoints, metrics)
`;

/** Stop budget after SIGTERM: listeners close, queued appends finish, the batch in flight is answered. */
const STOP_BUDGET_MS = 15000;

/** `vigil collect`: runs the collector until SIGTERM/SIGINT. */
export async function collectCommand(opts: { config?: string }): Promise<number> {
  if (!opts.config) {
    process.stderr.write(`vigil collect: --config is required\n\n${COLLECT_USAGE}`);
    return 2;
  }
  const config = loadCollectConfig(opts.config);
  const logger = createLogger(config.log.level);
  try {
    secureDataDir(config.data_dir, logger);
  } catch (err) {
    logger.fatal(
      { err: errorMessage(err), dir: config.data_dir },
      'The collector data directory cannot be made private.',
    );
    return 1;
  }
  const collector = createCollector(config, { metrics: new Registry(), logger });
  try {
    await collector.start();
  } catch (err) {
    logger.fatal({ err: errorMessage(err) }, 'The collector could not start.');
    await collector.stop(Date.now() + 5000);
    return 1;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'Stopping: listeners close, queued events stay on disk.');
      collector
        .stop(Date.now() + STOP_BUDGET_MS)
        .then(() => resolve(0))
        .catch((err) => {
          logger.error({ err: errorMessage(err) }, 'The collector did not stop cleanly.');
          resolve(1);
        });
    };
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));
  });
}
