/**
 * Fault suite: a dev cluster of 3 Vigil nodes (3 nats-server, 3 etcd) under a steady HTTP load, through
 * five faults in turn. After each, every store replica must return every acknowledged event exactly once.
 * Measured figures (rate, longest intake gap, catch-up and takeover times) are printed and written to
 * test/faults/results/summary.json; only loss and duplication fail the suite, the targets are reported.
 *
 * One cluster for the whole sequence: starting it costs more than a fault, and each fault starts from the
 * healed state the previous one left (its checks say so when it did not heal).
 */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { partitionOf } from '../../src/cluster/index.ts';
import { startDevCluster, type TestDevCluster } from '../harness/dev-cluster.ts';
import { type AlertJson, failedLogons, plantedRules } from '../harness/planted-rules.ts';
import * as wait from '../harness/wait.ts';
import { createLoadGen, type LoadGen, type LoadWindow } from './load.ts';
import { createPressureSampler } from './pressure.ts';
import { readSlowCounts, slowBetween } from './slow-answers.ts';
import { checkReplicas, type ReplicaCheck } from './verify.ts';

const RUN = `faults${Date.now().toString(36)}`;
/** Issue 12's load target (it replaced the first cluster issue's 10,000), reported beside what was offered and accepted. */
const TARGET_RATE = 6000;
/**
 * The load offered: issue 12's 6,000 events/s. Three replicas, detection and nine servers share 2 cores here;
 * at 3,000 (sessions up to 2026-12-06) the replicas kept up with room to spare, and at 6,000 (2026-12-07,
 * load 1.6 at the start) every fault still had 0 lost and 0 duplicated, intake gaps of 232 to 799 ms and
 * replicas caught up 1.4 to 4.9 s after the heal. VIGIL_FAULT_RATE changes it (lower on a slower machine).
 */
const OFFERED_RATE = Number(process.env.VIGIL_FAULT_RATE ?? 6000);
const BATCH = 500;
/** How long a killed or cut component stays down: longer than the 5 s lease TTL, so failover happens. */
const HOLD_MS = 6000;
/** Load before a fault and after it heals, so that both sides of it are measured. */
const STEADY_MS = 3000;
/** Targets reported (not asserted): the longest intake gap and the replica catch-up speed. */
const TARGET_GAP_MS = 1000;
const TARGET_CATCHUP_FACTOR = 5;
const PARTITION_NODE = 'vigil-3';
/** Longest a returning replica is watched catching up (the suite has an 8-minute budget). */
const CATCHUP_WAIT_MS = 40000;
const RESULTS = join(import.meta.dirname, 'results');
/** Target: correlation resumes within this long after its partition's owner is lost. */
const TARGET_CORRELATION_MS = 10000;

// The planted correlation: three failed logons of one user within 10 minutes. Each fault sends two before
// it and the third right after it, so the window spans the fault, then checks the alert fired once.
const { correlationId: CORRELATION_ID, files: PLANTED_RULES } = plantedRules('f');
const PARTITIONS = 16;
const PLANTED_PARTITION = partitionOf('default', CORRELATION_ID, PARTITIONS);
const plantedUsers: string[] = [];

/** One fault's measured figures, as written to summary.json. */
interface FaultResult {
  fault: string;
  events_acknowledged: number;
  events_acknowledged_total: number;
  rate_events_per_s: number;
  lost: number;
  duplicated: number;
  unacknowledged_requests: number;
  longest_intake_gap_ms: number;
  intake_gap_target_met: boolean;
  failed_attempts: Record<string, number>;
  replicas: Pick<ReplicaCheck, 'node' | 'stored' | 'lost' | 'duplicated' | 'caughtUpMs'>[];
  correlation: string;
  [figure: string]: unknown;
}

let dc: TestDevCluster;
let gen: LoadGen;
const results: FaultResult[] = [];
const startedAt = new Date();
const loadAtStart = loadavg();
let clusterStartMs = 0;
const pressure = createPressureSampler();

const { sleep } = wait;
/** Polls every 250 ms; resolves to the value and the time it took (the figures this test reports). */
const waitFor = <T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>, everyMs = 250) =>
  wait.waitForTimed(what, timeoutMs, fn, everyMs);

async function clusterStatus(node: string): Promise<any> {
  const res = await dc.api(node, 'GET', '/admin/cluster/status');
  return res.status === 200 ? res.body : undefined;
}

/**
 * The partition owners as `observer` reads them from etcd, waiting out a moment when it cannot (an etcd
 * election right after a member restarts answers the status with an error in place of the owners).
 */
async function owners(observer: string): Promise<{ partition: number; node: string; acquired_at: string }[]> {
  return (
    await waitFor(
      `partition owners from ${observer}`,
      30000,
      async () => (await clusterStatus(observer))?.partitions?.owners,
    )
  ).value;
}

/** Every partition owned, none by `excluded` (as `observer` reads etcd). */
async function partitionsOwnedWithout(observer: string, excluded: string): Promise<true | undefined> {
  const s = await clusterStatus(observer);
  const owners: { node: string }[] | undefined = s?.partitions?.owners;
  if (!owners || s.partitions.unowned?.length !== 0 || owners.length !== s.partitions.count) return undefined;
  return owners.every((o) => o.node !== excluded) ? true : undefined;
}

/** `node` owns at least one partition again (the balance gave it its share back). */
async function ownsPartitions(observer: string, node: string): Promise<true | undefined> {
  const s = await clusterStatus(observer);
  return s?.partitions?.owners?.some((o: { node: string }) => o.node === node) ? true : undefined;
}

/** Sends `n` failed logons of `user` to `node` (answered after commit). */
async function sendFailedLogons(node: string, user: string, n: number): Promise<void> {
  const lines = failedLogons(user, n).map((e) => JSON.stringify(e));
  const res = await dc.api(node, 'POST', '/api/v1/ingest', `[${lines.join(',')}]`);
  assert.equal(res.status, 200, `planted events refused by ${node}: ${JSON.stringify(res.body)}`);
}

async function correlationAlerts(node: string): Promise<AlertJson[]> {
  const res = await dc.api(node, 'GET', `/api/v1/alerts?rule=${CORRELATION_ID}&limit=1000`);
  if (res.status !== 200) throw new Error(`${node} answered ${res.status} for its alerts`);
  return res.body.alerts;
}

/** The planted partition's owner and token, as etcd says. */
async function plantedOwner(observer: string): Promise<{ node: string; fencing_token: number } | undefined> {
  const owners = (await clusterStatus(observer))?.partitions?.owners as
    | { partition: number; node: string; fencing_token: number }[]
    | undefined;
  return owners?.find((o) => o.partition === PLANTED_PARTITION);
}

/**
 * Starts the planted pattern for a fault: two matches now through `via`. `complete()` (called by the fault
 * script right after the fault) sends the third and resolves with the time from `faultAt` until a
 * correlation alert for the user is visible on `via`.
 */
async function plant(fault: string, via: string) {
  const user = `${fault}-user`;
  plantedUsers.push(user);
  await sendFailedLogons(via, user, 2);
  return {
    user,
    async complete(faultAt: number, sendVia = via): Promise<number> {
      await waitFor('the third planted event to be accepted', 60000, () =>
        sendFailedLogons(sendVia, user, 1).then(
          () => true,
          () => undefined,
        ),
      );
      const acceptedAt = Date.now();
      const alert = await waitFor(`the correlation alert for ${user}`, 60000, async () =>
        (await correlationAlerts(sendVia)).find((a) => a.matched.TargetUserName === user),
      );
      const visibleAt = Date.now();
      // Where the time went: intake of the third event, then detection and the owner's takeover, then the
      // alert log's hop to the observing node.
      resumeBreakdown.set(user, {
        third_event_accepted_ms: acceptedAt - faultAt,
        alert_created_ms: alert.value.created - faultAt,
        alert_visible_ms: visibleAt - faultAt,
      });
      return visibleAt - faultAt;
    },
  };
}

/**
 * Every node has exactly one correlation alert per planted user so far, the same ones (ids and tokens), and
 * each alert's token is at least the partition owner's token before the fault that completed it.
 */
async function checkCorrelations(minTokens: Map<string, number>): Promise<Record<string, unknown>> {
  const views = await Promise.all(
    dc.nodes.map(async (n) => {
      const deadline = Date.now() + 60000;
      for (;;) {
        const alerts = await correlationAlerts(n.name).catch(() => [] as AlertJson[]);
        const users = alerts.map((a) => String(a.matched.TargetUserName));
        if (plantedUsers.every((u) => users.includes(u)) || Date.now() > deadline) return { node: n.name, alerts };
        await sleep(500);
      }
    }),
  );
  const reference = views[0].alerts.map((a) => `${a.id}:${a.fencingToken}`).sort();
  for (const v of views) {
    const per = new Map<string, number>();
    for (const a of v.alerts)
      per.set(String(a.matched.TargetUserName), (per.get(String(a.matched.TargetUserName)) ?? 0) + 1);
    for (const u of plantedUsers) assert.equal(per.get(u) ?? 0, 1, `${v.node}: correlation alerts for ${u}`);
    assert.equal(per.size, plantedUsers.length, `${v.node}: no correlation alert for anyone else`);
    assert.deepEqual(v.alerts.map((a) => `${a.id}:${a.fencingToken}`).sort(), reference, `${v.node}: same alerts`);
    for (const a of v.alerts) {
      const min = minTokens.get(String(a.matched.TargetUserName)) ?? 0;
      assert.ok(a.fencingToken >= min, `${v.node}: ${a.id} carries token ${a.fencingToken} < ${min} (stale owner)`);
    }
  }
  return { correlation_alerts_per_node: views[0].alerts.length, correlation_users: plantedUsers.length };
}

const minTokens = new Map<string, number>();
const resumeBreakdown = new Map<string, Record<string, number>>();

/** What a replica's catch-up measured: see replicaCatchUp. */
interface CatchUp {
  /** Messages behind the stream at the first reading after `since`. */
  replica_backlog_messages: number;
  /** From `since` until the replica held the stream up to two seconds' worth of messages; null if not within the wait. */
  replica_catchup_ms: number | null;
  /**
   * Stream time covered per second of catching up: (outage + catch-up) / catch-up when it caught up, else
   * the replica's progress over the stream's growth (both in messages) while it was behind.
   */
  replica_catchup_factor: number | null;
  replica_catchup_target_met: boolean;
}

/**
 * Measures how fast a replica that was away for `awayMs` catches up, from `since` (its return), for at most
 * CATCHUP_WAIT_MS. Under a steady load a replica is never exactly 0 behind: caught up means at most one
 * second's worth of messages behind.
 */
async function replicaCatchUp(node: string, since: number, awayMs: number): Promise<CatchUp> {
  const perSecond = Math.max(5, Math.ceil(gen.window(Date.now() - 5000).rate / BATCH));
  const sample = async () => {
    const lag = (await clusterStatus(node).catch(() => undefined))?.replicas?.[0];
    return lag && lag.updatedAt >= since && lag.streamLastSeq > 0 ? lag : undefined;
  };
  const first = (await waitFor(`a fresh replica lag reading from ${node}`, 60000, sample)).value;
  let last = first;
  let caughtAt: number | undefined;
  const deadline = Date.now() + CATCHUP_WAIT_MS;
  while (Date.now() < deadline) {
    const lag = await sample();
    if (lag) last = lag;
    // Caught up: what the replica holds reaches to within two seconds of the stream's head (the replica
    // writes messages together after up to `store.materialize.linger_ms`, 1 s). Not lagMessages, which counts
    // the messages of the batch being written (in flight) and is refreshed once a second.
    if (lag && lag.streamLastSeq - lag.appliedSeq <= 2 * perSecond) {
      caughtAt = Date.now();
      break;
    }
    await sleep(500);
  }
  let factor: number | null = null;
  if (caughtAt !== undefined) {
    const ms = Math.max(1, caughtAt - since);
    factor = (awayMs + ms) / ms;
  } else if (last.streamLastSeq > first.streamLastSeq) {
    factor = (last.appliedSeq - first.appliedSeq) / (last.streamLastSeq - first.streamLastSeq);
  }
  if (factor !== null) factor = Math.round(factor * 10) / 10;
  return {
    replica_backlog_messages: first.lagMessages,
    replica_catchup_ms: caughtAt === undefined ? null : caughtAt - since,
    replica_catchup_factor: factor,
    replica_catchup_target_met: factor !== null && factor >= TARGET_CATCHUP_FACTOR,
  };
}

/**
 * Runs one fault under load: STEADY_MS of load, the fault script (load going on), STEADY_MS more, then the
 * load stops (every request in flight acknowledged) and every replica is checked. Asserts 0 lost and 0
 * duplicated on every replica; everything else is recorded.
 */
async function underLoad(
  fault: string,
  script: (pattern: Awaited<ReturnType<typeof plant>>) => Promise<Record<string, unknown>>,
  plantVia = 'vigil-1',
): Promise<FaultResult> {
  // Each fault starts from a whole cluster, even when the one before failed half-way.
  dc.heal(PARTITION_NODE);
  await dc.cluster.start(undefined, { readyTimeoutMs: 120000 });
  for (const n of dc.nodes) gen.setInRotation(n.name, true);
  const slowBefore = await readSlowCounts(dc);
  const from = gen.mark();
  gen.start();
  const pattern = await plant(fault, plantVia);
  minTokens.set(pattern.user, (await plantedOwner(plantVia))?.fencing_token ?? 0);
  await sleep(STEADY_MS);
  let figures: Record<string, unknown> = {};
  let scriptError: unknown;
  try {
    figures = await script(pattern);
    await sleep(STEADY_MS);
  } catch (err) {
    scriptError = err;
  }
  const to = gen.mark();
  const unacked = await gen.pause(120000);
  const win: LoadWindow = gen.window(from, to);
  const slow = slowBetween(slowBefore, await readSlowCounts(dc));
  const checks = await checkReplicas(dc, gen, RUN, { since: to, timeoutMs: 120000 });
  let correlation: Record<string, unknown> = {};
  let correlationError: unknown;
  try {
    correlation = await checkCorrelations(minTokens);
  } catch (err) {
    correlationError = err;
  }
  const result: FaultResult = {
    fault,
    events_acknowledged: win.acked,
    events_acknowledged_total: gen.acked(),
    rate_events_per_s: win.rate,
    lost: Math.max(0, ...checks.map((c) => c.lost)),
    duplicated: Math.max(0, ...checks.map((c) => c.duplicated)),
    unacknowledged_requests: unacked,
    longest_intake_gap_ms: win.longestGapMs,
    longest_intake_gap_at_s: Math.round((win.longestGapAt - from) / 100) / 10,
    intake_gap_target_met: win.longestGapMs <= TARGET_GAP_MS,
    failed_attempts: win.failures,
    // Was the whole machine stalled (CPU or disk) during the fault, and during the longest gap?
    machine_pressure: pressure.window(from, to),
    pressure_during_longest_gap: pressure.window(win.longestGapAt, win.longestGapAt + win.longestGapMs),
    answers_over_1s_by_node: slow,
    replicas: checks.map((c) => ({
      node: c.node,
      stored: c.stored,
      lost: c.lost,
      duplicated: c.duplicated,
      caughtUpMs: c.caughtUpMs,
    })),
    correlation: correlationError ? `failed: ${String(correlationError)}` : 'each planted pattern fired once',
    ...correlation,
    ...figures,
  };
  const breakdown = resumeBreakdown.get(pattern.user);
  if (breakdown) result.correlation_resumed_breakdown = breakdown;
  if (typeof result.correlation_resumed_ms === 'number') {
    result.correlation_target_met = result.correlation_resumed_ms <= TARGET_CORRELATION_MS;
    // The target counts from losing the partition's owner; other faults delay correlation otherwise
    // (a stream election holds the events it needs), and are reported against the same 10 s.
    result.correlation_owner_lost =
      figures.victim_owned_planted_partition === true || figures.cut_node_owned_planted_partition === true;
  }
  if (scriptError) result.script_error = String(scriptError);
  results.push(result);
  process.stdout.write(`# fault ${fault}: ${JSON.stringify(result)}\n`);
  writeSummary();
  for (const c of checks) {
    assert.equal(c.lost, 0, `${fault}: ${c.node} lost ${c.lost} acknowledged events, e.g. ${c.lostSample.join(', ')}`);
    assert.equal(
      c.duplicated,
      0,
      `${fault}: ${c.node} returns ${c.duplicated} duplicates, e.g. ${c.duplicatedSample.join(', ')}`,
    );
  }
  assert.equal(unacked, 0, `${fault}: ${unacked} requests were never acknowledged by any node`);
  if (scriptError) throw scriptError;
  if (correlationError) throw correlationError;
  return result;
}

function writeSummary(): void {
  mkdirSync(RESULTS, { recursive: true });
  const total = results.at(-1)?.events_acknowledged_total ?? 0;
  const summary = {
    run: RUN,
    started_at: startedAt.toISOString(),
    machine: { cpus: cpus().length, loadavg_at_start: loadAtStart.map((l) => Math.round(l * 10) / 10) },
    cluster: { vigil_nodes: 3, nats_servers: 3, etcd_members: 3, start_ms: clusterStartMs },
    load: { target_rate_events_per_s: TARGET_RATE, offered_rate_events_per_s: OFFERED_RATE, batch_events: BATCH },
    targets: { longest_intake_gap_ms: TARGET_GAP_MS, replica_catchup_factor: TARGET_CATCHUP_FACTOR },
    events_acknowledged: total,
    lost: Math.max(0, ...results.map((r) => r.lost)),
    duplicated: Math.max(0, ...results.map((r) => r.duplicated)),
    targets_correlation_resumed_ms: TARGET_CORRELATION_MS,
    planted_correlation: { id: CORRELATION_ID, partition: PLANTED_PARTITION, users: plantedUsers },
    faults: results,
  };
  writeFileSync(join(RESULTS, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
}

describe('cluster faults under load: every acknowledged event on every replica, once', { timeout: 540000 }, () => {
  before(
    async () => {
      const t0 = Date.now();
      const rulesDir = mkdtempSync(join(tmpdir(), 'vigil-fault-rules-'));
      for (const [name, text] of Object.entries(PLANTED_RULES)) writeFileSync(join(rulesDir, name), text);
      dc = await startDevCluster({
        nodes: 3,
        partitionable: [PARTITION_NODE],
        vigilConfig: { detect: { rules_dirs: [rulesDir] } },
      });
      clusterStartMs = Date.now() - t0;
      pressure.start();
      gen = createLoadGen({ targets: dc.nodes, token: dc.token, run: RUN, rate: OFFERED_RATE, batch: BATCH });
      // Every partition owned before the first fault, so that takeovers are measured from a settled state.
      await waitFor('every partition to be owned', 60000, () => partitionsOwnedWithout('vigil-1', '-'));
    },
    { timeout: 180000 },
  );

  after(async () => {
    pressure.stop();
    await gen?.close();
    if (results.length > 0) writeSummary();
    if (dc) {
      // The members' logs are the evidence when a figure looks wrong: kept beside the summary.
      const logs = join(RESULTS, 'logs');
      rmSync(logs, { recursive: true, force: true });
      cpSync(join(dc.dir, 'logs'), logs, { recursive: true });
    }
    // By PID, SIGKILL: the data is thrown away, nothing to shut down gracefully.
    await dc?.down({ hard: true });
  });

  test('kill -9 a nats-server follower, then the stream leader; restart each', { timeout: 150000 }, async () => {
    await underLoad('nats', async (pattern) => {
      const figures: Record<string, unknown> = {};
      let resumed: Promise<number> | undefined;
      const leader = await dc.streamLeader();
      const follower = ['nats-1', 'nats-2', 'nats-3'].find((n) => n !== leader)!;
      for (const [role, victim] of [
        ['follower', follower],
        ['leader', ''],
      ] as const) {
        const name = victim || (await dc.streamLeader());
        const killedAt = Date.now();
        await dc.cluster.kill(name);
        if (role === 'leader') resumed = pattern.complete(killedAt);
        if (role === 'leader') {
          const elected = await waitFor('a new stream leader', 30000, async () => {
            const l = await dc.streamLeader();
            return l !== name ? l : undefined;
          });
          figures.stream_leader_elected_ms = Date.now() - killedAt;
          figures.new_stream_leader = elected.value;
        }
        await sleep(Math.max(0, killedAt + HOLD_MS - Date.now()));
        const restartAt = Date.now();
        await dc.cluster.restart(name, { readyTimeoutMs: 60000 });
        const current = await waitFor(`${name} to be a current stream replica`, 60000, async () => {
          const r = (await dc.streamReplicas()).find((x) => x.name === name);
          return r?.current ? true : undefined;
        });
        figures[`nats_${role}`] = name;
        figures[`nats_${role}_down_ms`] = restartAt - killedAt;
        figures[`nats_${role}_restart_to_current_ms`] = Date.now() - restartAt;
        figures[`nats_${role}_caught_up_after_healthy_ms`] = current.ms;
        await sleep(STEADY_MS);
      }
      figures.correlation_resumed_ms = await resumed;
      return figures;
    });
  });

  test('kill -9 a Vigil node that owns correlation partitions; restart it', { timeout: 180000 }, async () => {
    const current = await owners('vigil-1');
    const count = new Map<string, number>();
    for (const o of current) count.set(o.node, (count.get(o.node) ?? 0) + 1);
    // The owner of the planted correlation's partition when it is one of these two (vigil-3 is the one the
    // network partition test cuts), else the one owning most partitions.
    const plantedOwnerNode = (await plantedOwner('vigil-1'))?.node ?? '';
    const victim = ['vigil-1', 'vigil-2'].includes(plantedOwnerNode)
      ? plantedOwnerNode
      : ['vigil-1', 'vigil-2'].sort((a, b) => (count.get(b) ?? 0) - (count.get(a) ?? 0))[0];
    const observer = victim === 'vigil-1' ? 'vigil-2' : 'vigil-1';
    assert.ok((count.get(victim) ?? 0) > 0, `${victim} owns no partition: ${JSON.stringify(current)}`);
    await underLoad(
      'vigil-node',
      async (pattern) => {
        const killedAt = Date.now();
        await dc.cluster.kill(victim);
        const resumed = pattern.complete(killedAt, observer);
        const takeover = await waitFor('the partitions of the killed node to be taken over', 60000, () =>
          partitionsOwnedWithout(observer, victim),
        );
        await sleep(Math.max(0, killedAt + HOLD_MS - Date.now()));
        await dc.cluster.start([victim], { readyTimeoutMs: 120000 });
        const readyAt = Date.now();
        const [catchUp, rejoin] = await Promise.all([
          replicaCatchUp(victim, readyAt, readyAt - killedAt),
          waitFor('the restarted node to own partitions again', 60000, () => ownsPartitions(observer, victim)),
        ]);
        return {
          node: victim,
          victim_owned_planted_partition: victim === plantedOwnerNode,
          correlation_resumed_ms: await resumed,
          partitions_owned_before: count.get(victim),
          partitions_taken_over_ms: takeover.ms,
          down_until_ready_ms: readyAt - killedAt,
          ...catchUp,
          partitions_rejoined_after_ready_ms: rejoin.ms,
        };
      },
      observer,
    );
  });

  test('kill -9 the etcd leader; restart it', { timeout: 120000 }, async () => {
    await underLoad('etcd', async (pattern) => {
      const before = await owners('vigil-1');
      const leader = await dc.etcdLeader();
      const killedAt = Date.now();
      await dc.cluster.kill(leader);
      const resumed = pattern.complete(killedAt);
      const elected = await waitFor('a new etcd leader', 30000, async () => {
        const l = await dc.etcdLeader();
        return l !== leader ? l : undefined;
      });
      await sleep(Math.max(0, killedAt + HOLD_MS - Date.now()));
      await dc.cluster.restart(leader, { readyTimeoutMs: 60000 });
      const after = await owners('vigil-1');
      const moved = after.filter((o) => before.find((b) => b.partition === o.partition)?.node !== o.node).length;
      const alive = (await clusterStatus('vigil-1'))?.nodes?.alive ?? null;
      return {
        etcd_member: leader,
        etcd_leader_elected_ms: elected.ms,
        partitions_moved: moved,
        vigil_nodes_alive_after: alive,
        correlation_resumed_ms: await resumed,
      };
    });
  });

  test(`network partition of ${PARTITION_NODE} from NATS and etcd; heal`, { timeout: 180000 }, async () => {
    const observer = 'vigil-1';
    await underLoad('partition', async (pattern) => {
      const ownedBefore = (await owners(observer)).filter((o) => o.node === PARTITION_NODE).map((o) => o.partition);
      const cutAt = Date.now();
      dc.partition(PARTITION_NODE);
      const resumed = pattern.complete(cutAt, observer);
      // The cut node must stop acting as owner (its local deadline) before anyone else acquires its
      // partitions. Its own view is read from /admin/maintenance/status, which answers without etcd; the
      // time an answer of 0 arrives is an upper bound of when it let go.
      let droppedAt: number | undefined;
      const watchOwn = (async () => {
        while (droppedAt === undefined && Date.now() - cutAt < 60000) {
          const s = await dc.api(PARTITION_NODE, 'GET', '/admin/maintenance/status').catch(() => undefined);
          if (s?.status === 200 && s.body.partitions_remaining === 0) droppedAt = Date.now();
          else await sleep(50);
        }
      })();
      const takeover = await waitFor('the partitions of the cut node to be taken over', 60000, () =>
        partitionsOwnedWithout(observer, PARTITION_NODE),
      );
      await watchOwn;
      // When the first of them was acquired, as the acquiring node recorded it (same machine, same clock).
      const ownersAfter = await owners(observer);
      const firstAcquiredAt = Math.min(
        ...ownersAfter.filter((o) => ownedBefore.includes(o.partition)).map((o) => Date.parse(o.acquired_at)),
      );
      await sleep(Math.max(0, cutAt + HOLD_MS + 2000 - Date.now()));
      const spoolAtHeal = (await clusterStatus(PARTITION_NODE))?.streams?.bus?.spool;
      const healedAt = Date.now();
      dc.heal(PARTITION_NODE);
      const spoolEmpty = await waitFor('the cut node to forward its spool', 120000, async () => {
        const s = await clusterStatus(PARTITION_NODE);
        return s?.streams?.bus?.spool?.batches === 0 && s.streams.bus.connected ? true : undefined;
      });
      const [catchUp, rejoin] = await Promise.all([
        replicaCatchUp(PARTITION_NODE, healedAt, healedAt - cutAt),
        waitFor('the healed node to own partitions again', 60000, () => ownsPartitions(observer, PARTITION_NODE)),
      ]);
      return {
        node: PARTITION_NODE,
        model:
          'the node runs in a network namespace; its data link (to NATS and etcd) goes down: packets dropped, nobody told; its HTTP API stays reachable over a management link',
        partitioned_ms: healedAt - cutAt,
        partitions_owned_before: ownedBefore.length,
        cut_node_dropped_partitions_ms: droppedAt === undefined ? null : droppedAt - cutAt,
        first_partition_acquired_elsewhere_ms: firstAcquiredAt - cutAt,
        // Positive: the cut node had let go before another node acquired one of its partitions (fencing
        // held even without the token check); droppedAt is an upper bound, so the margin is a lower bound.
        drop_to_takeover_margin_ms: droppedAt === undefined ? null : firstAcquiredAt - droppedAt,
        all_partitions_taken_over_ms: takeover.ms,
        spool_at_heal: spoolAtHeal ?? null,
        spool_forwarded_after_heal_ms: spoolEmpty.ms,
        ...catchUp,
        partitions_rejoined_after_heal_ms: rejoin.ms,
        cut_node_owned_planted_partition: ownedBefore.includes(PLANTED_PARTITION),
        correlation_resumed_ms: await resumed,
      };
    });
  });

  test('drain a node (maintenance), restart it as an upgrade would, rejoin', { timeout: 180000 }, async () => {
    const node = 'vigil-2';
    const observer = 'vigil-1';
    await underLoad('maintenance', async (pattern) => {
      const enabledAt = Date.now();
      const enable = await dc.api(node, 'POST', '/admin/maintenance/enable');
      const resumed = pattern.complete(enabledAt, observer);
      assert.ok([200, 202].includes(enable.status), `enable answered ${enable.status}: ${JSON.stringify(enable.body)}`);
      const readyWhileDraining = (await fetch(`${dc.nodes.find((n) => n.name === node)!.url}/health/ready`)).status;
      // A load balancer takes the node out once /health/ready fails.
      gen.setInRotation(node, false);
      const drained = await waitFor('the node to be drained', 90000, async () => {
        const s = await dc.api(node, 'GET', '/admin/maintenance/status');
        return s.body?.status === 'drained' ? s.body : undefined;
      });
      // Does the drained node still take intake? (A load balancer no longer sends it any; this probes it.)
      const probe = await fetch(`${dc.nodes.find((n) => n.name === node)!.url}/api/v1/ingest`, {
        method: 'POST',
        headers: { authorization: `Bearer ${dc.token}`, 'content-type': 'application/x-ndjson' },
        body: '{"message":"probe of a drained node"}\n',
      });
      assert.equal(probe.status, 503, 'a drained node refuses intake');
      const stoppedAt = Date.now();
      const stopOutcome = (await dc.cluster.stop([node]))[node];
      const startedAt = Date.now();
      await dc.cluster.start([node], { readyTimeoutMs: 120000 });
      const readyAt = Date.now();
      const afterRestart = (await dc.api(node, 'GET', '/admin/maintenance/status')).body;
      assert.notEqual(afterRestart?.status, 'active', 'the node comes back still in maintenance');
      const disable = await dc.api(node, 'POST', '/admin/maintenance/disable');
      gen.setInRotation(node, true);
      const [catchUp, rejoin] = await Promise.all([
        replicaCatchUp(node, readyAt, readyAt - stoppedAt),
        waitFor('the node to own partitions again', 60000, () => ownsPartitions(observer, node)),
      ]);
      return {
        node,
        health_ready_while_draining: readyWhileDraining,
        drained_ms: drained.ms,
        drained_status: drained.value,
        drained_node_ingest_probe_status: probe.status,
        graceful_stop_ms: startedAt - stoppedAt,
        // 'killed': SIGTERM did not stop it within the dev cluster's 25 s grace (Vigil's budget is 20 s).
        graceful_stop_outcome: stopOutcome,
        start_until_ready_ms: readyAt - startedAt,
        maintenance_status_after_restart: afterRestart,
        disable_status: disable.status,
        disable_answer: disable.body,
        ...catchUp,
        partitions_rejoined_after_disable_ms: rejoin.ms,
        out_of_rotation_ms: Date.now() - enabledAt,
        correlation_resumed_ms: await resumed,
        checks: { probe: probe.status, after_restart: afterRestart?.status },
      };
    });
  });
});
