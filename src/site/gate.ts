import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { Site, SiteRole } from './index.ts';

/** A consumer that runs only while its site is active. */
export interface ActiveOnly {
  /** Starts consuming (a durable consumer made now begins where its own options say). */
  start(): Promise<{ stop(): Promise<void> }>;
}

/**
 * Runs `consumer` while `site` is active and stops it when the site turns standby (detection, alerting:
 * only the active site detects). Role changes are applied one at a time, in order; a failed start is
 * reported and retried at the next change of role.
 */
export function runWhileActive(site: Site, what: string, consumer: ActiveOnly, log: Logger): () => Promise<void> {
  let running: { stop(): Promise<void> } | undefined;
  let chain = Promise.resolve();
  const apply = (role: SiteRole) => {
    chain = chain.then(async () => {
      try {
        if (role === 'active' && !running) {
          running = await consumer.start();
          log.info({ consumer: what }, 'This site is active: the consumer runs.');
        } else if (role === 'standby' && running) {
          const r = running;
          running = undefined;
          await r.stop();
          log.info({ consumer: what }, 'This site is standby: the consumer is idle.');
        }
      } catch (err) {
        log.error({ consumer: what, role, err: errorMessage(err) }, 'A consumer could not follow the site role.');
      }
    });
  };
  const off = site.onRole(apply);
  return async () => {
    off();
    await chain;
  };
}

/**
 * A component that runs only while `site` is active (the alert consumers of incidents and notify: a standby
 * links and notifies nothing; it resumes at its durable position when activated).
 */
export function activeOnlyComponent(site: Site, inner: Component, log: Logger): Component {
  let off: (() => Promise<void>) | undefined;
  let running = false;
  return {
    name: inner.name,
    async start() {
      off = runWhileActive(
        site,
        inner.name,
        {
          async start() {
            await inner.start();
            running = true;
            return {
              async stop() {
                running = false;
                await inner.stop(Date.now() + 10_000);
              },
            };
          },
        },
        log,
      );
    },
    async stop(deadline) {
      await off?.();
      off = undefined;
      if (running) {
        running = false;
        await inner.stop(deadline);
      }
    },
    health(): ComponentHealth {
      return running ? inner.health() : { ok: true, detail: 'idle: this site is standby' };
    },
  };
}
