import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { type Db, migrate, openPostgres } from '../../src/db/index.ts';
import {
  createIncidentService,
  INCIDENT_STATUSES,
  type IncidentComponent,
  type IncidentFilter,
  type IncidentStatus,
  incidentsConfigSchema,
  TRANSITIONS,
} from '../../src/incidents/index.ts';
import { silentLogger } from '../../src/lib/logger.ts';
import { type AuditLog, createAuditLog } from '../../src/users/index.ts';
import { ALL_MIGRATIONS, backends, makeAlert } from '../harness/postgres.ts';

const HOUR = 3_600_000;

async function service(db: Db, over: Record<string, unknown> = {}) {
  const metrics = new Registry();
  const audit = createAuditLog(db);
  const incidents = createIncidentService(incidentsConfigSchema.parse(over), {
    db,
    metrics,
    logger: silentLogger,
    audit,
  });
  await incidents.start();
  return { incidents, metrics, audit };
}

async function metricValue(metrics: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await metrics.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v ? Number(v.value) : 0;
}

/** A status path from `new` to each status, through allowed transitions. */
const PATH_TO: Record<IncidentStatus, IncidentStatus[]> = {
  new: [],
  acknowledged: ['acknowledged'],
  in_progress: ['in_progress'],
  resolved: ['resolved'],
  false_positive: ['false_positive'],
};

for (const backend of backends()) {
  describe(`incident state on ${backend.name}`, () => {
    let tenantSeq = 0;
    const tenant = () => `t${++tenantSeq}`;

    test('migrations apply once, in order, and a second run (or a concurrent one) applies nothing', async () => {
      const db = await backend.open();
      assert.deepEqual(await migrate(db, ALL_MIGRATIONS), []);
      const rows = await db.query<{ id: string }>('SELECT id FROM schema_migrations ORDER BY applied_at, id');
      assert.deepEqual(rows.map((r) => r.id).sort(), ALL_MIGRATIONS.map((m) => m.id).sort());
      const server = backend.server();
      if (server) {
        // Two nodes starting together on an empty database: the advisory lock lets one apply everything.
        const url = await server.createDatabase();
        const opts = { url, poolMax: 2, connectTimeoutMs: 2000, statementTimeoutMs: 10000 };
        const [a, b] = [openPostgres(opts, silentLogger), openPostgres(opts, silentLogger)];
        const applied = await Promise.all([migrate(a, ALL_MIGRATIONS), migrate(b, ALL_MIGRATIONS)]);
        assert.equal(applied[0].length + applied[1].length, ALL_MIGRATIONS.length);
        await Promise.all([a.close(), b.close()]);
      }
    });

    test('a migration edited after it was applied is refused', async () => {
      const db = await backend.open();
      const edited = ALL_MIGRATIONS.map((m, i) => (i === 0 ? { ...m, statements: [...m.statements, 'SELECT 1'] } : m));
      await assert.rejects(migrate(db, edited), /migration incidents\/0001_init was applied with other statements/);
    });

    test('alerts of one rule and host within the window share an incident; another host or a later window opens a new one', async () => {
      const db = await backend.open();
      const { incidents } = await service(db);
      const t0 = Date.now() - 10 * HOUR;
      const tn = tenant();
      const a = [
        makeAlert({ tenant: tn, timestamp: t0, rule: { level: 'low' } }),
        makeAlert({ tenant: tn, timestamp: t0 + 10 * 60_000, rule: { level: 'high' }, eventIds: ['e1', 'e2'] }),
        makeAlert({ tenant: tn, timestamp: t0 + 20 * 60_000, host: 'web-2' }),
        makeAlert({ tenant: tn, timestamp: t0 + HOUR + 1 }),
      ];
      const r = await incidents.ingestAlerts(a);
      assert.equal(r.linked, 4);
      assert.equal(r.opened, 3);
      const page = await incidents.list({ tenants: [tn], sort: 'created_at', descending: false, limit: 10 });
      assert.equal(page.total, 3);
      const first = await incidents.get(r.incidentIds[0], [tn]);
      assert.ok(first);
      assert.equal(first.alertCount, 2);
      assert.equal(first.severity, 'high', 'severity is the highest of the alerts');
      assert.deepEqual(first.alertIds.sort(), [a[0].id, a[1].id].sort());
      assert.deepEqual(first.eventIds, [a[0].eventIds[0], 'e1', 'e2'].sort());
      assert.equal(first.title, 'Failed logon on web-1');
      const timeline = await incidents.timeline(first.id, [tn]);
      assert.deepEqual(
        timeline.map((e) => e.action),
        ['created', 'alert_linked', 'alert_linked', 'severity'],
      );
    });

    test('an alert with a NUL or a lone surrogate from an event is grouped (as U+FFFD) and blocks no later alert', async () => {
      const db = await backend.open();
      const { incidents } = await service(db, { group_by: ['rule.id', 'host', 'matched.User'] });
      const tn = tenant();
      const host = 'web\ud800-\u0000-\udc00';
      const dirty = () =>
        makeAlert({ tenant: tn, host, matched: { User: ['a\u0000b', 'c\udfff'] }, rule: { title: 'Logon \ud83d' } });
      const first = await incidents.ingestAlerts([dirty()]);
      assert.equal(first.opened, 1);
      const again = await incidents.ingestAlerts([dirty(), makeAlert({ tenant: tn })]);
      assert.equal(again.linked, 2);
      assert.equal(
        again.opened,
        1,
        'the second dirty alert joins the incident of the first; the clean one opens its own',
      );
      const detail = await incidents.get(first.incidentIds[0], [tn]);
      assert.ok(detail);
      assert.equal(detail.alertCount, 2);
      assert.equal(detail.host, 'web\ufffd-\ufffd-\ufffd');
      assert.equal(detail.title, 'Logon \ufffd on web\ufffd-\ufffd-\ufffd');
    });

    test('an alert of a closed incident key opens a new incident', async () => {
      const db = await backend.open();
      const { incidents } = await service(db);
      const tn = tenant();
      const r1 = await incidents.ingestAlerts([makeAlert({ tenant: tn })]);
      await incidents.update(r1.incidentIds[0], [tn], { status: 'resolved' }, 'alice');
      const r2 = await incidents.ingestAlerts([makeAlert({ tenant: tn })]);
      assert.equal(r2.opened, 1);
      assert.notEqual(r2.incidentIds[0], r1.incidentIds[0]);
    });

    test('the grouping key is configurable (by a matched field, one window per user)', async () => {
      const db = await backend.open();
      const { incidents } = await service(db, { group_by: ['rule.id', 'matched.user.name'], group_window_ms: 60_000 });
      const tn = tenant();
      const r = await incidents.ingestAlerts([
        makeAlert({ tenant: tn, host: 'a', matched: { 'user.name': 'bob' } }),
        makeAlert({ tenant: tn, host: 'b', matched: { 'user.name': 'bob' } }),
        makeAlert({ tenant: tn, host: 'a', matched: { 'user.name': 'eve' } }),
      ]);
      assert.equal(r.opened, 2);
    });

    test('the same alert twice changes nothing', async () => {
      const db = await backend.open();
      const { incidents, metrics } = await service(db);
      const tn = tenant();
      const alert = makeAlert({ tenant: tn });
      const r1 = await incidents.ingestAlerts([alert, alert]);
      assert.deepEqual([r1.linked, r1.duplicates], [1, 1]);
      const r2 = await incidents.ingestAlerts([alert]);
      assert.deepEqual([r2.linked, r2.duplicates, r2.incidentIds.length], [0, 1, 0]);
      const inc = await incidents.get(r1.incidentIds[0], [tn]);
      assert.equal(inc?.alertCount, 1);
      assert.equal((await incidents.timeline(r1.incidentIds[0], [tn])).length, 2);
      assert.equal(await metricValue(metrics, 'vigil_incidents_alerts_total', { result: 'duplicate' }), 2);
    });

    test('alerts with a fencing token lower than the highest seen for their partition are refused and reported', async () => {
      const db = await backend.open();
      const { incidents, metrics } = await service(db);
      const tn = tenant();
      const partition = `p-${tn}`;
      const r1 = await incidents.ingestAlerts([makeAlert({ tenant: tn, partition, fencingToken: 5 })]);
      assert.equal(r1.linked, 1);
      const stale = makeAlert({ tenant: tn, partition, fencingToken: 4 });
      const r2 = await incidents.ingestAlerts([
        stale,
        makeAlert({ tenant: tn, partition, fencingToken: 5 }),
        makeAlert({ tenant: tn, partition: `${partition}-other`, fencingToken: 1 }),
      ]);
      assert.equal(r2.linked, 2, 'the same token and other partitions are accepted');
      assert.deepEqual(r2.rejected, [
        { alertId: stale.id, partition, fencingToken: 4, highestToken: 5, reason: 'stale_fencing_token' },
      ]);
      assert.equal(
        await metricValue(metrics, 'vigil_incidents_alerts_rejected_total', { reason: 'stale_fencing_token' }),
        1,
      );
      const listed = await incidents.rejectedAlerts([tn], 10);
      assert.deepEqual(
        listed.map((x) => [x.alertId, x.highestToken]),
        [[stale.id, 5]],
      );
      const linked = await db.query('SELECT 1 FROM incident_alerts WHERE alert_id = $1', [stale.id]);
      assert.equal(linked.length, 0);
    });

    test('the same alert id refused in two tenants is listed in each, and only there', async () => {
      const db = await backend.open();
      const { incidents } = await service(db);
      const [a, b] = [tenant(), tenant()];
      const partition = `p-${a}`;
      await incidents.ingestAlerts([makeAlert({ tenant: a, partition, fencingToken: 5 })]);
      const id = `shared-${a}`;
      const r = await incidents.ingestAlerts([
        makeAlert({ id, tenant: a, partition, fencingToken: 4 }),
        makeAlert({ id, tenant: b, partition, fencingToken: 4 }),
      ]);
      assert.equal(r.rejected.length, 2);
      for (const tn of [a, b]) {
        assert.deepEqual(
          (await incidents.rejectedAlerts([tn], 10)).map((x) => [x.alertId, x.tenant]),
          [[id, tn]],
          `${tn}'s refusals`,
        );
      }
    });

    test('within one batch, a token raised by an earlier alert refuses the later alerts below it', async () => {
      // The batch judges repeated tokens of a partition without a statement each: a rise mid-batch must still
      // be seen by the alerts after it, and the partition keeps the highest token.
      const db = await backend.open();
      const { incidents } = await service(db);
      const tn = tenant();
      const partition = `p-${tn}`;
      const batch = [6, 6, 5, 7, 6, 7].map((fencingToken) => makeAlert({ tenant: tn, partition, fencingToken }));
      const r = await incidents.ingestAlerts(batch);
      assert.equal(r.linked, 4, 'tokens 6, 6, 7, 7');
      assert.deepEqual(
        r.rejected.map((x) => [x.alertId, x.fencingToken, x.highestToken]),
        [
          [batch[2].id, 5, 6],
          [batch[4].id, 6, 7],
        ],
      );
      const [row] = await db.query<{ token: number }>('SELECT token FROM partition_tokens WHERE partition = $1', [
        partition,
      ]);
      assert.equal(Number(row.token), 7);
    });

    test('one batch of one key spanning two windows opens two incidents, as alert-by-alert grouping did', async () => {
      const db = await backend.open();
      const { incidents } = await service(db);
      const tn = tenant();
      const t0 = Date.now() - 10 * HOUR;
      const batch = [0, 20, 59, 60, 90, 10].map((m) => makeAlert({ tenant: tn, timestamp: t0 + m * 60_000 }));
      const r = await incidents.ingestAlerts(batch);
      assert.deepEqual([r.opened, r.linked, r.incidentIds.length], [2, 6, 2]);
      const [first, second] = await Promise.all(r.incidentIds.map((id) => incidents.get(id, [tn])));
      assert.ok(first && second);
      assert.deepEqual(
        [first.windowStart, first.windowEnd, first.alertCount, first.firstAlertAt, first.lastAlertAt],
        [t0, t0 + HOUR, 4, t0, t0 + 59 * 60_000],
      );
      assert.deepEqual(first.alertIds.sort(), [batch[0].id, batch[1].id, batch[2].id, batch[5].id].sort());
      assert.deepEqual([second.windowStart, second.windowEnd, second.alertCount], [t0 + HOUR, t0 + 2 * HOUR, 2]);
      const timeline = await incidents.timeline(second.id, [tn]);
      assert.deepEqual(
        timeline.map((e) => [e.action, e.to]),
        [
          ['created', 'new'],
          ['alert_linked', batch[3].id],
          ['alert_linked', batch[4].id],
        ],
      );
      // A later batch joins the windows the first one opened.
      const r2 = await incidents.ingestAlerts([
        makeAlert({ tenant: tn, timestamp: t0 + 30 * 60_000 }),
        makeAlert({ tenant: tn, timestamp: t0 + 100 * 60_000 }),
      ]);
      assert.deepEqual([r2.opened, r2.incidentIds], [0, r.incidentIds]);
      assert.equal((await incidents.get(first.id, [tn]))?.alertCount, 5);
    });

    test('severity rises within a batch and across batches, each rise on the timeline from the severity before it', async () => {
      const db = await backend.open();
      const { incidents } = await service(db);
      const tn = tenant();
      const levels = ['low', 'high', 'medium', 'critical'];
      const batch = levels.map((level) => makeAlert({ tenant: tn, rule: { level } }));
      const r = await incidents.ingestAlerts(batch);
      const id = r.incidentIds[0];
      await incidents.update(id, [tn], { severity: 'low' }, 'alice');
      await incidents.ingestAlerts([
        makeAlert({ tenant: tn, rule: { level: 'informational' } }),
        makeAlert({ tenant: tn, rule: { level: 'medium' } }),
        makeAlert({ tenant: tn, rule: { level: 'high' } }),
      ]);
      const timeline = await incidents.timeline(id, [tn]);
      assert.deepEqual(
        timeline.filter((e) => e.action !== 'alert_linked').map((e) => [e.action, e.actor, e.from, e.to]),
        [
          ['created', 'system', null, 'new'],
          ['severity', 'system', 'low', 'high'],
          ['severity', 'system', 'high', 'critical'],
          ['severity', 'alice', 'critical', 'low'],
          ['severity', 'system', 'low', 'medium'],
          ['severity', 'system', 'medium', 'high'],
        ],
      );
      const ids = timeline.map((e) => e.id);
      assert.deepEqual(
        ids,
        [...ids].sort((a, b) => a - b),
      );
      assert.equal(timeline[1].to, batch[0].id, 'the first alert is linked right after the creation');
      const inc = await incidents.get(id, [tn]);
      assert.deepEqual([inc?.severity, inc?.alertCount], ['high', 7]);
    });

    test('duplicates within a batch and of earlier batches change nothing and are counted', async () => {
      const db = await backend.open();
      const { incidents, metrics } = await service(db);
      const tn = tenant();
      const [a, b, c] = [makeAlert({ tenant: tn }), makeAlert({ tenant: tn }), makeAlert({ tenant: tn })];
      const r1 = await incidents.ingestAlerts([a, b, a]);
      assert.deepEqual([r1.opened, r1.linked, r1.duplicates], [1, 2, 1]);
      const r2 = await incidents.ingestAlerts([b, c, c, a]);
      assert.deepEqual([r2.opened, r2.linked, r2.duplicates, r2.incidentIds], [0, 1, 3, r1.incidentIds]);
      const inc = await incidents.get(r1.incidentIds[0], [tn]);
      assert.equal(inc?.alertCount, 3);
      assert.deepEqual(
        (await incidents.timeline(r1.incidentIds[0], [tn])).map((e) => [e.action, e.to]),
        [
          ['created', 'new'],
          ['alert_linked', a.id],
          ['alert_linked', b.id],
          ['alert_linked', c.id],
        ],
      );
      assert.equal(await metricValue(metrics, 'vigil_incidents_alerts_total', { result: 'duplicate' }), 4);
    });

    test('a stale fencing token in the middle of a batch refuses that alert only; the others group as usual', async () => {
      const db = await backend.open();
      const { incidents } = await service(db);
      const tn = tenant();
      const partition = `p-${tn}`;
      const batch = [
        makeAlert({ tenant: tn, partition, fencingToken: 3 }),
        makeAlert({ tenant: tn, partition, fencingToken: 3, host: 'web-2' }),
        makeAlert({ tenant: tn, partition, fencingToken: 2, rule: { level: 'critical' } }),
        makeAlert({ tenant: tn, partition, fencingToken: 3 }),
      ];
      const r = await incidents.ingestAlerts(batch);
      assert.deepEqual([r.opened, r.linked], [2, 3]);
      assert.deepEqual(
        r.rejected.map((x) => [x.alertId, x.fencingToken, x.highestToken]),
        [[batch[2].id, 2, 3]],
      );
      const inc = await incidents.get(r.incidentIds[0], [tn]);
      assert.deepEqual([inc?.alertCount, inc?.severity], [2, 'medium'], 'the refused critical alert left no trace');
      assert.deepEqual(
        (await incidents.rejectedAlerts([tn], 10)).map((x) => [x.alertId, x.tenant]),
        [[batch[2].id, tn]],
      );
    });

    describe('status transitions', () => {
      const cases: { from: IncidentStatus; to: IncidentStatus; allowed: boolean }[] = [];
      for (const from of INCIDENT_STATUSES) {
        for (const to of INCIDENT_STATUSES) {
          cases.push({ from, to, allowed: from === to || TRANSITIONS[from].includes(to) });
        }
      }
      let shared: { incidents: IncidentComponent; tn: string } | undefined;
      const setup = async () => {
        if (!shared) {
          const db = await backend.open();
          shared = { incidents: (await service(db)).incidents, tn: tenant() };
        }
        return shared;
      };
      for (const c of cases) {
        test(`${c.from} -> ${c.to} is ${c.allowed ? 'allowed' : 'refused with 409 and the reason'}`, async () => {
          const { incidents, tn } = await setup();
          const inc = await incidents.create({ tenant: tn, title: 'manual', severity: 'low' }, 'alice');
          for (const s of PATH_TO[c.from]) await incidents.update(inc.id, [tn], { status: s }, 'alice');
          const attempt = incidents.update(inc.id, [tn], { status: c.to }, 'bob');
          if (c.allowed) {
            assert.equal((await attempt).status, c.to);
          } else {
            await assert.rejects(attempt, (err: any) => {
              assert.equal(err.status, 409);
              assert.equal(err.code, 'invalid_transition');
              assert.match(err.message, c.to === 'new' ? /never goes back to new/ : /is not allowed/);
              return true;
            });
          }
        });
      }
    });

    test('every change and comment is on the timeline and in the audit log, which refuses UPDATE and DELETE', async () => {
      const db = await backend.open();
      const { incidents, audit } = await service(db);
      const tn = tenant();
      const inc = await incidents.create(
        { tenant: tn, title: 'Phishing wave', severity: 'medium', tags: ['phish'] },
        'alice',
      );
      await incidents.update(inc.id, [tn], { status: 'acknowledged', assignee: 'bob' }, 'alice');
      await incidents.update(inc.id, [tn], { status: 'in_progress', severity: 'high', tags: ['phish', 'vip'] }, 'bob');
      await incidents.addComment(inc.id, [tn], 'Blocked the sender domain.', 'bob');
      await incidents.update(inc.id, [tn], { status: 'resolved' }, 'bob');
      await incidents.update(inc.id, [tn], { status: 'in_progress' }, 'carol');
      const timeline = await incidents.timeline(inc.id, [tn]);
      assert.deepEqual(
        timeline.map((e) => [e.actor, e.action, e.from, e.to]),
        [
          ['alice', 'created', null, 'new'],
          ['alice', 'status', 'new', 'acknowledged'],
          ['alice', 'assignee', null, 'bob'],
          ['bob', 'status', 'acknowledged', 'in_progress'],
          ['bob', 'severity', 'medium', 'high'],
          ['bob', 'tags', 'phish', 'phish,vip'],
          ['bob', 'comment', null, null],
          ['bob', 'status', 'in_progress', 'resolved'],
          ['carol', 'status', 'resolved', 'in_progress'],
        ],
      );
      const detail = await incidents.get(inc.id, [tn]);
      assert.deepEqual(
        detail?.comments.map((c) => [c.author, c.body]),
        [['bob', 'Blocked the sender domain.']],
      );
      const entries = await (audit as AuditLog).list({ tenants: [tn], target: `incident:${inc.id}`, limit: 100 });
      assert.deepEqual(entries.map((e) => e.action).reverse(), [
        'incident.create',
        'incident.update',
        'incident.update',
        'incident.comment',
        'incident.update',
        'incident.update',
      ]);
      for (const sql of ['UPDATE audit_log SET actor = $1', 'DELETE FROM audit_log WHERE actor = $1 OR true']) {
        await assert.rejects(db.query(sql, ['mallory']), /audit_log is append-only/);
      }
      await assert.rejects(db.query('TRUNCATE audit_log'), /audit_log is append-only/);
      assert.equal((await audit.list({ tenants: [tn], limit: 100 })).length, entries.length);
    });

    test('listing filters, sorts and pages by offset and by cursor, within the tenants given', async () => {
      const db = await backend.open();
      const { incidents } = await service(db);
      const tn = tenant();
      const other = tenant();
      const made = [];
      for (let i = 0; i < 7; i++) {
        // Distinct creation times, so the expected order does not rest on the tie-break by id.
        await new Promise((r) => setTimeout(r, 3));
        made.push(
          await incidents.create(
            {
              tenant: tn,
              title: `i${i}`,
              severity: (['low', 'high', 'critical'] as const)[i % 3],
              tags: i % 2 ? ['odd'] : [],
              assignee: i < 2 ? 'bob' : null,
            },
            'alice',
          ),
        );
      }
      await incidents.create({ tenant: other, title: 'theirs', severity: 'critical' }, 'eve');
      await incidents.update(made[0].id, [tn], { status: 'resolved' }, 'alice');
      const base: IncidentFilter = { tenants: [tn], sort: 'created_at', descending: true, limit: 100 };
      const titles = async (f: Partial<IncidentFilter>) =>
        (await incidents.list({ ...base, ...f })).incidents.map((i) => i.title);
      assert.deepEqual(await titles({}), ['i6', 'i5', 'i4', 'i3', 'i2', 'i1', 'i0']);
      assert.deepEqual(await titles({ status: ['resolved'] }), ['i0']);
      assert.deepEqual(await titles({ severity: ['critical'] }), ['i5', 'i2']);
      assert.deepEqual(await titles({ tag: 'odd' }), ['i5', 'i3', 'i1']);
      assert.deepEqual(await titles({ assignee: 'bob' }), ['i1', 'i0']);
      assert.deepEqual(await titles({ tenants: [other] }), ['theirs']);
      assert.deepEqual((await titles({ sort: 'severity' })).slice(0, 2).sort(), ['i2', 'i5']);
      assert.deepEqual((await titles({ sort: 'severity', descending: false })).slice(0, 3).sort(), ['i0', 'i3', 'i6']);
      assert.deepEqual(await titles({ limit: 2, offset: 2 }), ['i4', 'i3']);
      const seen: string[] = [];
      let cursor: string | undefined;
      for (let pages = 0; pages < 10; pages++) {
        const page = await incidents.list({ ...base, sort: 'severity', limit: 3, cursor });
        assert.equal(page.total, 7);
        seen.push(...page.incidents.map((i) => i.title));
        if (!page.nextCursor) break;
        cursor = page.nextCursor;
      }
      assert.deepEqual([...seen].sort(), ['i0', 'i1', 'i2', 'i3', 'i4', 'i5', 'i6'], 'a cursor walk sees each once');
      assert.equal(await incidents.get(made[0].id, [other]), undefined, 'another tenant does not see it');
    });

    test('a bulk change applies to each incident it may and reports the others', async () => {
      const db = await backend.open();
      const { incidents } = await service(db);
      const tn = tenant();
      const a = await incidents.create({ tenant: tn, title: 'a', severity: 'low' }, 'alice');
      const b = await incidents.create({ tenant: tn, title: 'b', severity: 'low' }, 'alice');
      await incidents.update(b.id, [tn], { status: 'resolved' }, 'alice');
      const out = await incidents.bulk([a.id, b.id, 'nope'], [tn], { status: 'new', assignee: 'bob' }, 'alice');
      assert.deepEqual(
        out.map((o) => [o.ok, o.error?.code]),
        [
          [true, undefined],
          [false, 'invalid_transition'],
          [false, 'not_found'],
        ],
      );
      const out2 = await incidents.bulk([a.id, b.id], [tn], { assignee: 'carol' }, 'alice');
      assert.ok(out2.every((o) => o.ok && o.incident?.assignee === 'carol'));
    });

    test('two services grouping the same key at once open one incident', async () => {
      const db = await backend.open();
      const s1 = await service(db);
      const s2 = await service(db);
      const tn = tenant();
      const alerts = Array.from({ length: 20 }, () => makeAlert({ tenant: tn }));
      await Promise.all([s1.incidents.ingestAlerts(alerts.slice(0, 10)), s2.incidents.ingestAlerts(alerts.slice(10))]);
      const page = await s1.incidents.list({ tenants: [tn], sort: 'created_at', descending: true, limit: 10 });
      assert.equal(page.total, 1);
      assert.equal(page.incidents[0].alertCount, 20);
    });

    test('services grouping many keys at once, in opposite orders, open one incident per key without a deadlock', async () => {
      const db = await backend.open();
      const services = await Promise.all([service(db), service(db), service(db)]);
      const tn = tenant();
      const hosts = Array.from({ length: 12 }, (_, i) => `h${i}`);
      // Each service its own partition, so that nothing but the keys' advisory locks orders them.
      const calls = services.flatMap((s, i) =>
        [0, 1, 2].map((round) => {
          const order = i % 2 === 0 ? hosts : [...hosts].reverse();
          const batch = order.flatMap((host) =>
            [0, 1].map(() => makeAlert({ tenant: tn, host, partition: `p-${tn}-${i}`, fencingToken: round })),
          );
          return { s, batch };
        }),
      );
      const results = await Promise.all(calls.map(({ s, batch }) => s.incidents.ingestAlerts(batch)));
      assert.equal(
        results.reduce((n, r) => n + r.linked, 0),
        calls.length * hosts.length * 2,
      );
      assert.equal(
        results.reduce((n, r) => n + r.opened, 0),
        hosts.length,
      );
      const page = await services[0].incidents.list({ tenants: [tn], sort: 'created_at', descending: true, limit: 50 });
      assert.equal(page.total, hosts.length, 'one incident per key');
      assert.ok(page.incidents.every((i) => i.alertCount === calls.length * 2));
      for (const s of services) {
        assert.equal(await metricValue(s.metrics, 'vigil_incidents_ingest_retries_total'), 0, 'no deadlock to retry');
      }
    });

    if (backend.name !== 'PGlite') {
      // PGlite has one connection: its transactions never interleave.
      test('alerts linked by another transaction after the batch read them count as duplicates, and leave no incident', async () => {
        const db = await backend.open();
        // Two nodes grouping by different keys: no advisory lock orders them, only the alerts' primary key.
        const s1 = await service(db);
        let proceed: () => void = () => {};
        const gate = new Promise<void>((r) => {
          proceed = r;
        });
        let knownReads = 0;
        const paused: Db = {
          ...db,
          kind: db.kind,
          query: db.query,
          close: db.close,
          transaction: (fn) =>
            db.transaction((tx) =>
              fn({
                async query(sql, params) {
                  const rows = await tx.query(sql, params);
                  if (/^SELECT tenant, alert_id FROM incident_alerts/.test(sql) && ++knownReads === 1) await gate;
                  return rows as never;
                },
              }),
            ),
        };
        const s2 = await service(paused, { group_by: ['rule.id'] });
        const tn = tenant();
        const alerts = Array.from({ length: 5 }, () => makeAlert({ tenant: tn }));
        const late = s2.incidents.ingestAlerts(alerts);
        while (knownReads === 0) await new Promise((r) => setTimeout(r, 10));
        const r1 = await s1.incidents.ingestAlerts(alerts);
        proceed();
        const r2 = await late;
        assert.deepEqual([r1.opened, r1.linked], [1, 5]);
        assert.deepEqual([r2.opened, r2.linked, r2.duplicates, r2.incidentIds], [0, 0, 5, []]);
        assert.equal(knownReads, 2, 'the batch ran again after its links were refused');
        const page = await s1.incidents.list({ tenants: [tn], sort: 'created_at', descending: true, limit: 10 });
        assert.deepEqual(
          page.incidents.map((i) => [i.groupKey, i.alertCount]),
          [['rule.id=rule-1\u001fhost=web-1', 5]],
        );
      });
    }

    test('intake retries through a lost database connection and commits every alert once', async () => {
      const server = backend.server();
      const db = await backend.open();
      let failures = 3;
      // PGlite has no connection to lose: the same failure is injected under the Db instead.
      const flaky: Db = {
        ...db,
        kind: db.kind,
        query: db.query,
        close: db.close,
        transaction: (fn) => {
          if (!server && failures-- > 0) {
            return Promise.reject(
              Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' }),
            );
          }
          return db.transaction(fn);
        },
      };
      const { incidents, metrics } = await service(flaky, { retry_initial_ms: 50, retry_max_ms: 500 });
      const tn = tenant();
      const alerts = Array.from({ length: 30 }, () => makeAlert({ tenant: tn }));
      if (server) {
        await incidents.ingestAlerts(alerts.slice(0, 10));
        await server.kill();
        const pending = incidents.ingestAlerts(alerts.slice(10));
        await new Promise((r) => setTimeout(r, 300));
        await server.start();
        const r = await pending;
        assert.equal(r.linked, 20);
      } else {
        const r = await incidents.ingestAlerts(alerts);
        assert.equal(r.linked, 30);
      }
      assert.ok((await metricValue(metrics, 'vigil_incidents_ingest_retries_total')) >= 1);
      const [{ n }] = await db.query<{ n: number }>(
        'SELECT count(*)::bigint AS n FROM incident_alerts WHERE tenant = $1',
        [tn],
      );
      assert.equal(Number(n), 30);
      assert.deepEqual(incidents.health(), { ok: true }, 'no longer degraded');
    });
  });
}
