/**
 * The process of a dev cluster's `link` member (src/devcluster/link.ts):
 *   node --import tsx link-main.ts --control HOST:PORT --route NAME=HOST:PORT->HOST:PORT [--route ...]
 * Runs until SIGTERM or SIGINT (then closes every relayed connection) or SIGKILL (the kernel does).
 */
import { parseArgs } from 'node:util';
import { errorMessage } from '../lib/errors.ts';
import { createLinkRelay, parseHostPort, parseRoute } from './link.ts';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { control: { type: 'string' }, route: { type: 'string', multiple: true } },
    strict: true,
  });
  if (!values.control || !values.route?.length) {
    throw new Error('usage: link-main.ts --control HOST:PORT --route NAME=HOST:PORT->HOST:PORT [--route ...]');
  }
  const routes = values.route.map(parseRoute);
  const relay = createLinkRelay({ routes, control: parseHostPort('--control', values.control) });
  await relay.start();
  process.stdout.write(
    `${new Date().toISOString()} link relay up: ${routes.map((r) => `${r.name} ${r.listen.port} -> ${r.to.host}:${r.to.port}`).join(', ')}\n`,
  );
  const stop = (signal: string) => {
    process.stdout.write(
      `${new Date().toISOString()} link relay stopping (${signal}): ${JSON.stringify(relay.stats())}\n`,
    );
    void relay.stop().finally(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`link relay: ${errorMessage(err)}\n`);
  process.exit(1);
});
