import type { Registry } from 'prom-client';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage } from '../lib/errors.ts';
import type { NormalizedEvent } from '../lib/event.ts';
import type { Logger } from '../lib/logger.ts';
import { counter, gauge, histogram } from '../lib/metrics.ts';
import { createTurnTaker } from '../lib/turns.ts';
import type { Alert, AlertStore } from './alerts/index.ts';
import type { DetectConfig } from './config.ts';
import type { PartitionedCorrelation } from './cluster/correlator.ts';
import type { CorrelationEngine, SigmaMatch as CorrelationMatch } from './correlation/index.ts';
import { evaluateEvents } from './evaluate.ts';
import { type CompiledRuleSet, RuleRepository } from './rule-set.ts';
import { STARTER_RULES_DIR } from './starter/index.ts';

/**
 * Events evaluated between two looks at the clock: with the SigmaHQ Windows rules a Mordor event took 8 to
 * 35 µs (warm, then cold), so a slice stays well under TURN_BUDGET_MS (src/lib/turns.ts).
 */
const EVALUATE_SLICE = 32;

export { type Alert, type AlertStore, createAlertStore } from './alerts/index.ts';
export { SEVERITIES, type Severity, severityRank } from './alerts/severity.ts';
export { type DetectConfig, detectConfigSchema } from './config.ts';
export { evaluateEvents, ruleAlert } from './evaluate.ts';
export { STARTER_RULES_DIR } from './starter/index.ts';
export {
  type CompiledRuleSet,
  compileRuleFolders,
  compileRuleText,
  type RuleInfo,
  RuleRepository,
} from './rule-set.ts';

/** The live detection of a node: runs the rule set on every committed batch and stores the alerts. */
export interface Detector extends Component {
  /** Evaluates a batch (a bus consumer). */
  handle(events: NormalizedEvent[]): Promise<void>;
  /** Evaluates events without storing alerts (retro-hunt, tests): the alerts they would raise. */
  evaluate(events: Iterable<NormalizedEvent>, ruleSet?: CompiledRuleSet): Alert[];
  /** The current rule set. */
  ruleSet(): CompiledRuleSet;
  /** Recompiles after a change to the rules; the new set applies to the next batch. */
  reload(): CompiledRuleSet;
  readonly repository: RuleRepository;
}

/** Creates the detector; rules are loaded on start. */
export function createDetector(
  config: DetectConfig,
  deps: {
    dataDir: string;
    alerts: AlertStore & { stop?(): Promise<void> };
    metrics: Registry;
    logger: Logger;
    /** Cluster mode: correlation runs on the owners of partitions, fed through the matches stream. */
    correlation?: PartitionedCorrelation;
    /**
     * Evaluates in the background of the event loop (src/lib/turns.ts): when batches are evaluated beside the
     * store's commits (`bus.detection_overlap`), which wait on their rows and no acknowledgement waits on
     * detection. With equal turns, detection slowed the rows of a 15,000-event commit from 505 to 1,098 ms
     * while the engine sat idle. Between two commits it runs in the foreground: the next commit waits for it.
     */
    backgroundTurns?: boolean;
  },
): Detector {
  const folders = config.starter_rules ? [STARTER_RULES_DIR, ...config.rules_dirs] : config.rules_dirs;
  const repository = new RuleRepository(deps.dataDir, folders, config.placeholders, config.max_rules_per_tenant);
  let current: CompiledRuleSet | undefined;
  /** Correlation state per tenant, so one tenant's events never complete another's window. */
  let correlators = new Map<string, CorrelationEngine>();
  let lastError: string | undefined;
  const events = counter(deps.metrics, 'vigil_detect_events_total', 'Events evaluated by detection.');
  const matches = counter(deps.metrics, 'vigil_detect_matches_total', 'Sigma rule matches.');
  const rulesLoaded = gauge(deps.metrics, 'vigil_detect_rules_loaded', 'Rules in the running rule set.', ['kind']);
  const rulesRejected = gauge(deps.metrics, 'vigil_detect_rules_rejected', 'Rule documents that could not be loaded.');
  const batchSeconds = histogram(deps.metrics, 'vigil_detect_batch_seconds', 'Time to evaluate one batch.');
  const rulesRefused = counter(
    deps.metrics,
    'vigil_detect_rules_refused_total',
    "Rule documents refused for a size bound (max_bytes, max_nodes, max_depth, max_aliases, max_condition_depth), sent or stored, or stored and failing to load unexpectedly (load_error), or sent past a tenant's rule count (max_rules_per_tenant).",
    ['limit', 'source'],
  );
  repository.onLimit = (limit, source) => rulesRefused.inc({ limit, source });

  const evaluate = (
    batch: Iterable<NormalizedEvent>,
    set: CompiledRuleSet,
    map: Map<string, CorrelationEngine>,
    route?: (m: CorrelationMatch) => void,
  ) => {
    const result = evaluateEvents(batch, set, map, {
      maxCorrelationState: config.max_correlation_state,
      metrics: deps.metrics,
      route,
    });
    events.inc(result.events);
    matches.inc(result.matches);
    return result.alerts;
  };

  const install = (set: CompiledRuleSet) => {
    if (!current || current.correlationDigest !== set.correlationDigest) correlators = new Map();
    current = set;
    const count = (k: string) => set.rules.filter((r) => r.kind === k && r.enabled).length;
    rulesLoaded.set({ kind: 'rule' }, count('rule'));
    rulesLoaded.set({ kind: 'correlation' }, count('correlation'));
    rulesLoaded.set({ kind: 'filter' }, count('filter'));
    rulesRejected.set(set.rejected.length);
    for (const r of set.rejected) {
      if (r.limit) {
        rulesRefused.inc({ limit: r.limit, source: 'stored' });
        deps.logger.warn(
          { file: r.file, limit: r.limit, reason: r.reason },
          'A stored rule file passes a bound and is skipped.',
        );
      } else if (r.unexpected) {
        rulesRefused.inc({ limit: 'load_error', source: 'stored' });
        deps.logger.error(
          { file: r.file, line: r.line, reason: r.reason },
          'A stored rule file failed to load unexpectedly and is skipped.',
        );
      }
    }
    deps.logger.info(
      {
        version: set.version,
        rules: count('rule'),
        correlations: count('correlation'),
        // The team's starter rules among them (detect.starter_rules), so a new user sees that detection is on.
        starter: set.rules.filter((r) => r.enabled && r.file.startsWith(STARTER_RULES_DIR)).length,
        rejected: set.rejected.length,
      },
      'The detection rule set is loaded.',
    );
  };

  const ruleSet = () => {
    if (!current) throw new Error('detection is not started');
    return current;
  };

  return {
    name: 'detect',
    repository,
    async start() {
      await deps.alerts.start();
      install(repository.compile());
      await deps.correlation?.start();
    },
    async stop() {
      await deps.correlation?.stop();
      await deps.alerts.stop?.();
    },
    health(): ComponentHealth {
      if (!current) return { ok: false, detail: 'rules not loaded' };
      return lastError ? { ok: false, detail: lastError } : { ok: true };
    },
    async handle(batch) {
      if (!config.enabled || !current) return;
      const end = batchSeconds.startTimer();
      try {
        const routed: CorrelationMatch[] = [];
        const set = current;
        const alerts: Alert[] = [];
        // A backlog comes in batches of up to 20,000 events; evaluated in one go, such a batch would hold HTTP
        // answers and lease renewals for its whole duration. Slices, with a turn of the event loop once a
        // budget of them has run (fixed 500-event slices took 4 to 8 ms each, warm).
        const turns = createTurnTaker(undefined, { background: deps.backgroundTurns === true });
        for (let i = 0; i < batch.length; i += EVALUATE_SLICE) {
          if (i > 0 && turns.due()) await turns.take();
          const slice = batch.length <= EVALUATE_SLICE ? batch : batch.slice(i, i + EVALUATE_SLICE);
          alerts.push(...evaluate(slice, set, correlators, deps.correlation && ((m) => routed.push(m))));
        }
        // Matches reach their partitions before the batch is acknowledged: a crash redelivers it, and the
        // matches stream and the alert log drop the copies by id.
        await deps.correlation?.publish(routed);
        if (alerts.length > 0) await deps.alerts.save(alerts);
        lastError = undefined;
      } catch (err) {
        lastError = `detection failed: ${errorMessage(err)}`;
        throw err;
      } finally {
        end();
      }
    },
    evaluate(batch, set) {
      // A private correlation state: hunting must not disturb the live windows.
      return evaluate(batch, set ?? ruleSet(), new Map());
    },
    ruleSet,
    reload() {
      const set = repository.compile();
      install(set);
      return set;
    },
  };
}
