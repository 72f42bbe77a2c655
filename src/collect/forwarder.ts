import type { Registry } from 'prom-client';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { counter, gauge } from '../lib/metrics.ts';
import { backoffDelay, shouldLog, sleep } from '../lib/retry.ts';
import { createEndpointSelector, type EndpointSelector } from './endpoints.ts';
import type { RetentionQueue } from './queue.ts';
import type { SiteClient } from './site-client.ts';

/** The forwarder: the queue's one consumer, sending its oldest batch to the preferred site that is up. */
export interface Forwarder extends Component {
  /** The endpoint sends go to now (its name), or undefined while every site is down. */
  activeEndpoint(): string | undefined;
}

export interface ForwarderOptions {
  probeIntervalMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
}

/** A purge check and the gauges run at least this often, even while the loop waits for a site. */
const TICK_MS = 1000;

/**
 * Creates the forwarder. A batch leaves the queue only when a site answered 2xx (its ingest answers after
 * commit), or when a site refused it as a whole (400/413: no site will take it; counted, logged), or when it
 * outlived the queue's retention. A site that is unreachable, times out or answers 5xx (or 401/403/404) is
 * failed over to the next in order; sites preferred over the current one are probed and taken back when
 * they answer. A batch whose answer was lost may be stored by two sites, or twice sent to one: its events
 * keep the ids the collector gave them, and a site stores one row per (id, @timestamp, text).
 */
export function createForwarder(
  opts: ForwarderOptions,
  deps: { queue: RetentionQueue; clients: readonly SiteClient[]; metrics: Registry; logger: Logger },
): Forwarder {
  const log = deps.logger.child({ component: 'collect-forwarder' });
  const { queue, clients } = deps;
  const backoff = { initialMs: opts.retryInitialMs, maxMs: opts.retryMaxMs, jitter: 'equal' as const };
  const selector: EndpointSelector = createEndpointSelector({
    count: clients.length,
    probeIntervalMs: opts.probeIntervalMs,
    retryDelay: (failures) => backoffDelay(failures, backoff),
  });
  const forwarded = counter(
    deps.metrics,
    'vigil_collect_forwarded_events_total',
    'Events a site committed, by endpoint.',
    ['endpoint'],
  );
  const retried = counter(
    deps.metrics,
    'vigil_collect_retries_total',
    'Batches sent again because a site did not commit them (unavailable: unreachable, timeout, 5xx; throttled: 429), by endpoint.',
    ['endpoint', 'reason'],
  );
  const failovers = counter(
    deps.metrics,
    'vigil_collect_failovers_total',
    'Times the collector moved to a less preferred endpoint because the one it used failed.',
  );
  const failbacks = counter(
    deps.metrics,
    'vigil_collect_failbacks_total',
    'Times the collector went back to a more preferred endpoint that answered its probe again.',
  );
  const rejected = counter(
    deps.metrics,
    'vigil_collect_rejected_events_total',
    'Events a site refused one by one (invalid) or in a batch refused whole (400, 413); they leave the queue.',
  );
  const up = gauge(
    deps.metrics,
    'vigil_collect_endpoint_up',
    'Whether the collector counts an endpoint as up (1) or down (0).',
    ['endpoint'],
  );
  const active = gauge(
    deps.metrics,
    'vigil_collect_endpoint_active',
    'The endpoint the collector sends to (1), the others 0.',
    ['endpoint'],
  );

  let controller: AbortController | undefined;
  let loops: Promise<void>[] = [];
  let stopping = false;
  let lastUsed: number | undefined;
  let failure: string | undefined;

  const showState = () => {
    const cur = selector.current();
    clients.forEach((c, i) => {
      up.set({ endpoint: c.name }, selector.isUp(i) ? 1 : 0);
      active.set({ endpoint: c.name }, i === (cur ?? lastUsed) ? 1 : 0);
    });
  };

  /** Notes which endpoint a send goes to, counting a move away from a failed one or back to a preferred one. */
  const use = (index: number) => {
    if (lastUsed !== undefined && index !== lastUsed) {
      if (index > lastUsed) {
        failovers.inc();
        log.warn({ from: clients[lastUsed].name, to: clients[index].name }, 'Failing over to the next site endpoint.');
      } else {
        failbacks.inc();
        log.info({ from: clients[lastUsed].name, to: clients[index].name }, 'Back to a preferred site endpoint.');
      }
    }
    lastUsed = index;
  };

  const forwardLoop = async (signal: AbortSignal) => {
    let failuresInRow = 0;
    while (!stopping && !signal.aborted) {
      await queue.purgeExpired();
      const batch = await queue.head();
      if (!batch) {
        // A wait of its own, ended either way: the queue's waiter must not outlive the tick (one a second,
        // kept until the next append, would pile up while the collector is idle).
        const wait = new AbortController();
        const onStop = () => wait.abort();
        signal.addEventListener('abort', onStop, { once: true });
        await Promise.race([queue.appended(wait.signal), sleep(TICK_MS, wait.signal)]);
        wait.abort();
        signal.removeEventListener('abort', onStop);
        continue;
      }
      let index = selector.current();
      if (index === undefined) {
        const next = selector.nextAttempt(Date.now());
        if ('at' in next) {
          await sleep(Math.min(TICK_MS, Math.max(10, next.at - Date.now())), signal);
          continue;
        }
        index = next.index;
      }
      use(index);
      const client = clients[index];
      const outcome = await client.send(batch.body, signal);
      if (outcome.kind === 'committed') {
        failuresInRow = 0;
        failure = undefined;
        if (!selector.isUp(index)) log.info({ endpoint: client.name }, 'A site endpoint takes events again.');
        selector.succeeded(index);
        // Counted before the batch leaves the queue: a scrape never sees it neither queued nor forwarded.
        forwarded.inc({ endpoint: client.name }, outcome.accepted);
        await queue.ack();
        if (outcome.rejected > 0) {
          rejected.inc(outcome.rejected);
          log.warn(
            { endpoint: client.name, rejected: outcome.rejected, first_error: outcome.firstError },
            'A site refused events of a batch one by one; they leave the queue.',
          );
        }
      } else if (outcome.kind === 'refused') {
        selector.succeeded(index);
        rejected.inc(batch.events);
        log.error(
          { endpoint: client.name, events: batch.events, reason: outcome.reason },
          'A site refused a whole batch; no site would take it, so it leaves the queue.',
        );
        await queue.ack();
      } else if (signal.aborted) {
        break;
      } else if (outcome.kind === 'throttled') {
        retried.inc({ endpoint: client.name, reason: 'throttled' });
        await sleep(outcome.retryAfterMs, signal);
      } else {
        retried.inc({ endpoint: client.name, reason: 'unavailable' });
        selector.failed(index, Date.now());
        failure = `${client.name}: ${outcome.reason}`;
        if (shouldLog(failuresInRow)) {
          log.warn(
            { endpoint: client.name, reason: outcome.reason, failures_in_row: failuresInRow + 1 },
            'A site endpoint did not take a batch; it stays queued.',
          );
        }
        failuresInRow++;
        // Every endpoint failed: wait before the next round, so an outage costs a bounded rate of requests.
        if (selector.current() === undefined) await sleep(backoffDelay(failuresInRow - 1, backoff), signal);
      }
      showState();
    }
  };

  const probeLoop = async (signal: AbortSignal) => {
    const tick = Math.max(50, Math.min(TICK_MS, Math.floor(opts.probeIntervalMs / 4)));
    while (!signal.aborted && !stopping) {
      const now = Date.now();
      for (const i of selector.dueProbes(now)) {
        selector.probing(i, now);
        if (await clients[i].probe(signal)) {
          if (!selector.isUp(i)) log.info({ endpoint: clients[i].name }, 'A site endpoint answers its probe again.');
          selector.succeeded(i);
          showState();
        }
      }
      await sleep(tick, signal);
    }
  };

  /** A loop that fails is reported (health, log) and started again after a wait: it never ends silently. */
  const supervise = async (name: string, body: (signal: AbortSignal) => Promise<void>, signal: AbortSignal) => {
    for (let attempt = 0; !signal.aborted && !stopping; attempt++) {
      try {
        await body(signal);
        return;
      } catch (err) {
        failure = `${name}: ${errorMessage(err)}`;
        log.error({ err: errorMessage(err), loop: name }, 'A collector loop failed; it starts again.');
        await sleep(backoffDelay(attempt, backoff), signal);
      }
    }
  };

  return {
    name: 'collect-forwarder',
    async start() {
      controller = new AbortController();
      stopping = false;
      showState();
      loops = [supervise('forward', forwardLoop, controller.signal), supervise('probe', probeLoop, controller.signal)];
    },
    async stop(deadline) {
      stopping = true;
      // The batch in flight gets until the deadline to be answered; then it is cut (it stays queued).
      const timer = setTimeout(() => controller?.abort(), Math.max(0, deadline - Date.now()));
      await Promise.all(loops);
      clearTimeout(timer);
      for (const c of clients) c.close();
    },
    health(): ComponentHealth {
      if (selector.current() === undefined)
        return { ok: false, detail: `no site endpoint is up (${failure ?? 'starting'})` };
      return failure ? { ok: true, detail: failure } : { ok: true };
    },
    activeEndpoint() {
      const i = selector.current();
      return i === undefined ? undefined : clients[i].name;
    },
  };
}
