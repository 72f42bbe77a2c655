import type { Detector } from '../../detect/index.ts';
import { compileRuleText } from '../../detect/rule-set.ts';
import type { Placeholders } from '../../detect/sigma/index.ts';
import { InputError, NotFoundError } from '../../lib/errors.ts';
import type { NormalizedEvent } from '../../lib/event.ts';
import type { SearchCoordinator } from '../../search/coordinator.ts';
import { type EventStore, scanEvents } from '../../store/index.ts';
import { routeDocs } from '../schemas.ts';
import { principalOf, type RouteGroup } from '../server.ts';
import { parseTimeParam } from '../time.ts';
import { parseJsonBody } from '../body.ts';
import { visibleRules } from './rules.ts';

/**
 * POST /api/v1/hunt {rule_id | rule (Sigma YAML), from, to, limit}: runs rules over stored events of a
 * time range and answers the matches. Nothing is stored; live correlation state is not touched.
 */
export function huntRoutes(deps: {
  detector: Detector;
  store: EventStore;
  maxEvents: number;
  placeholders: Placeholders;
  /** A sharded store (S > 1): the events are read from every shard through the search fan-out. */
  coordinator?: SearchCoordinator;
}): RouteGroup {
  return (app) => {
    app.post<{ Body: unknown }>('/api/v1/hunt', routeDocs.hunt, async (req) => {
      const principal = principalOf(req);
      const body = parseJsonBody(req.body);
      const started = performance.now();
      if (typeof body.from !== 'string' || typeof body.to !== 'string') {
        throw new InputError('bad_time_range', 'from and to are required (now-24h, ISO 8601 or epoch ms)');
      }
      const from = parseTimeParam(body.from, 'from');
      const to = parseTimeParam(body.to, 'to');
      const limit = body.limit === undefined ? 1000 : Number(body.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 100000) {
        throw new InputError('bad_limit', 'limit must be an integer from 1 to 100000');
      }
      let set = deps.detector.ruleSet();
      let ruleIds: Set<string> | undefined;
      if (typeof body.rule === 'string') {
        // A rule under test: compiled on its own, never saved.
        const v = deps.detector.repository.validate(body.rule);
        set = compileRuleText(body.rule, deps.placeholders);
        ruleIds = new Set([v.id]);
      } else if (typeof body.rule_id === 'string') {
        if (!visibleRules(set, principal).rules.some((r) => r.id === body.rule_id)) {
          throw new NotFoundError('rule', body.rule_id);
        }
        ruleIds = new Set([body.rule_id]);
      }
      const matches: Record<string, unknown>[] = [];
      let scanned = 0;
      const hunt = async (events: AsyncIterable<NormalizedEvent>) => {
        for await (const event of events) {
          scanned++;
          for (const alert of deps.detector.evaluate([event], set)) {
            if (ruleIds && !ruleIds.has(alert.rule.id)) continue;
            if (matches.length < limit)
              matches.push({
                ...alert,
                event: {
                  '@timestamp': new Date(event.timestamp).toISOString(),
                  'event.id': event.id,
                  ...event.fields,
                },
              });
          }
        }
      };
      const range = { tenants: principal.tenants, from, to, max: deps.maxEvents };
      let fanout: Record<string, unknown> = {};
      if (deps.coordinator?.active()) {
        // Every shard's events, merged in time order; each page a shard call the shard admits as a search.
        const scan = deps.coordinator.scan(principal.name, range);
        await hunt(scan.events);
        const missing = scan.missing();
        fanout = { shards: scan.shards(), ...(missing.length > 0 ? { partial: true, missing_shards: missing } : {}) };
      } else {
        // A hunt is a search: it takes a place among the user's searches, and each page read waits behind
        // writes and has store.query_timeout_ms of its own.
        await deps.store.search(principal.name, (scope) => hunt(scanEvents(scope, range)), { perQuery: true });
      }
      return {
        scanned,
        truncated: scanned >= deps.maxEvents,
        total: matches.length,
        matches,
        took_ms: Math.round(performance.now() - started),
        ...fanout,
      };
    });
  };
}
