import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Alert } from '../detect/alerts/index.ts';
import {
  type AcceptedAlert,
  firstTokens,
  groupKeyOf,
  inTenant,
  type OpenIncident,
  planIncidents,
  screenAlerts,
} from './group-plan.ts';

const MIN = 60_000;
const WINDOW = 60 * MIN;
const T0 = 1_700_000_000_000;
const GROUP_BY = ['rule.id', 'host'];

let seq = 0;
function alert(over: Partial<Omit<Alert, 'rule'>> & { level?: string } = {}): Alert {
  const { level = 'medium', ...rest } = over;
  seq++;
  return {
    id: `a${seq}`,
    timestamp: T0,
    created: T0,
    tenant: 't',
    kind: 'rule',
    host: 'web-1',
    status: 'new',
    matched: {},
    eventIds: [`e${seq}`],
    partition: 'p0',
    fencingToken: 1,
    rule: { id: 'r1', title: 'Failed logon', level, tags: ['attack.t1110', 'not a tag'] },
    ...rest,
  };
}

const accept = (alerts: Alert[]): AcceptedAlert[] => alerts.map((a) => ({ alert: a, key: groupKeyOf(a, GROUP_BY) }));

function ids() {
  let n = 0;
  return () => `new-${++n}`;
}

describe('screenAlerts', () => {
  test('alerts linked before, and repeats of an alert accepted earlier in the batch, are duplicates', () => {
    const [a, b, c] = [alert(), alert(), alert()];
    const s = screenAlerts([a, b, a, c, b], new Set([inTenant('t', c.id)]), new Map([['p0', 1]]), GROUP_BY);
    assert.deepEqual(
      s.accepted.map((x) => x.alert.id),
      [a.id, b.id],
    );
    assert.equal(s.duplicates, 3);
  });

  test('an alert id is unique within its tenant only', () => {
    const a = alert();
    const other = { ...a, tenant: 'u' };
    const s = screenAlerts([a, other], new Set([inTenant('u', a.id)]), new Map([['p0', 1]]), GROUP_BY);
    assert.deepEqual(
      s.accepted.map((x) => x.alert.tenant),
      ['t'],
    );
  });

  test('a stale token in the middle of a batch is refused; a rise refuses the later alerts below it', () => {
    const batch = [6, 6, 5, 7, 6, 7].map((fencingToken) => alert({ fencingToken }));
    const s = screenAlerts(batch, new Set(), new Map([['p0', 6]]), GROUP_BY);
    assert.deepEqual(
      s.accepted.map((x) => x.alert.fencingToken),
      [6, 6, 7, 7],
    );
    assert.deepEqual(
      s.rejected.map((r) => [r.alertId, r.fencingToken, r.highestToken, r.reason]),
      [
        [batch[2].id, 5, 6, 'stale_fencing_token'],
        [batch[4].id, 6, 7, 'stale_fencing_token'],
      ],
    );
    assert.deepEqual(s.rejectedTenants, ['t', 't']);
    assert.deepEqual([...s.raised], [['p0', 7]]);
  });

  test('the stored token judges the batch: below it every alert of the partition is refused, and a refused alert repeated is refused again', () => {
    const stale = alert({ fencingToken: 3 });
    const s = screenAlerts(
      [stale, alert({ partition: 'p1', fencingToken: 1 }), stale],
      new Set(),
      new Map([
        ['p0', 9],
        ['p1', 1],
      ]),
      GROUP_BY,
    );
    assert.equal(s.accepted.length, 1);
    assert.deepEqual(
      s.rejected.map((r) => [r.alertId, r.highestToken]),
      [
        [stale.id, 9],
        [stale.id, 9],
      ],
    );
    assert.equal(s.raised.size, 0);
  });
});

test('firstTokens takes the first token of each partition among alerts not linked before', () => {
  const linked = alert({ fencingToken: 9 });
  const first = firstTokens(
    [linked, alert({ fencingToken: 4 }), alert({ fencingToken: 5 }), alert({ partition: 'p1', fencingToken: 2 })],
    new Set([inTenant('t', linked.id)]),
  );
  assert.deepEqual(
    [...first],
    [
      ['p0', 4],
      ['p1', 2],
    ],
  );
});

describe('planIncidents', () => {
  test('alerts of one key spanning two windows open two incidents, each from its first alert', () => {
    const batch = [0, 10, 59, 60, 61, 130].map((m) => alert({ timestamp: T0 + m * MIN }));
    const plan = planIncidents(accept(batch), [], { windowMs: WINDOW, newId: ids() });
    assert.deepEqual(
      plan.opened.map((o) => [o.id, o.windowStart, o.windowEnd, o.alertCount, o.firstAlertAt, o.lastAlertAt]),
      [
        ['new-1', T0, T0 + WINDOW, 3, T0, T0 + 59 * MIN],
        ['new-2', T0 + 60 * MIN, T0 + 120 * MIN, 2, T0 + 60 * MIN, T0 + 61 * MIN],
        ['new-3', T0 + 130 * MIN, T0 + 190 * MIN, 1, T0 + 130 * MIN, T0 + 130 * MIN],
      ],
    );
    assert.deepEqual(
      plan.links.map((l) => l.incidentId),
      ['new-1', 'new-1', 'new-1', 'new-2', 'new-2', 'new-3'],
    );
    assert.deepEqual(plan.incidentIds, ['new-1', 'new-2', 'new-3']);
    assert.equal(plan.opened[0].title, 'Failed logon on web-1');
    assert.deepEqual(plan.opened[0].tags, ['attack.t1110'], 'tags that are no tag are left out');
  });

  test('an alert earlier than an incident opened in the batch opens its own (windows start at the first alert)', () => {
    const batch = [30, 0, 40].map((m) => alert({ timestamp: T0 + m * MIN }));
    const plan = planIncidents(accept(batch), [], { windowMs: WINDOW, newId: ids() });
    assert.deepEqual(
      plan.links.map((l) => l.incidentId),
      ['new-1', 'new-2', 'new-1'],
      'the alert at 40 min joins the latest-starting window that holds it',
    );
  });

  test('severity escalates within a batch, each rise on the timeline from the severity before that alert', () => {
    const batch = [
      alert({ level: 'low' }),
      alert({ level: 'high' }),
      alert({ level: 'medium' }),
      alert({ level: 'critical' }),
    ];
    const plan = planIncidents(accept(batch), [], { windowMs: WINDOW, newId: ids() });
    assert.deepEqual([plan.opened[0].severity, plan.opened[0].severityRank], ['critical', 4]);
    assert.deepEqual(
      plan.timeline.map((e) => [e.action, e.from, e.to]),
      [
        ['created', null, 'new'],
        ['alert_linked', null, batch[0].id],
        ['alert_linked', null, batch[1].id],
        ['severity', 'low', 'high'],
        ['alert_linked', null, batch[2].id],
        ['alert_linked', null, batch[3].id],
        ['severity', 'high', 'critical'],
      ],
    );
    assert.deepEqual(plan.timeline[0].details, { alertId: batch[0].id, groupKey: 'rule.id=r1\u001fhost=web-1' });
    assert.deepEqual(plan.timeline[6].details, { alertId: batch[3].id });
  });

  test('alerts join the open incident whose window holds them, the latest-starting one first, and grow it', () => {
    const key = groupKeyOf(alert(), GROUP_BY);
    const open: OpenIncident[] = [
      {
        id: 'old',
        tenant: 't',
        groupKey: key,
        windowStart: T0 - 50 * MIN,
        windowEnd: T0 + 10 * MIN,
        severity: 'high',
        severityRank: 3,
      },
      {
        id: 'newer',
        tenant: 't',
        groupKey: key,
        windowStart: T0 - 5 * MIN,
        windowEnd: T0 + 55 * MIN,
        severity: 'low',
        severityRank: 1,
      },
      {
        id: 'other-tenant',
        tenant: 'u',
        groupKey: key,
        windowStart: T0,
        windowEnd: T0 + WINDOW,
        severity: 'low',
        severityRank: 1,
      },
    ];
    const batch = [
      alert({ timestamp: T0, level: 'medium' }),
      alert({ timestamp: T0 + 20 * MIN, level: 'low' }),
      alert({ timestamp: T0 - 40 * MIN, level: 'medium' }),
    ];
    const plan = planIncidents(accept(batch), open, { windowMs: WINDOW, newId: ids() });
    assert.deepEqual(plan.opened, []);
    assert.deepEqual(
      plan.links.map((l) => l.incidentId),
      ['newer', 'newer', 'old'],
    );
    assert.deepEqual(plan.grown, [
      { id: 'newer', severity: 'medium', severityRank: 2, firstAlertAt: T0, lastAlertAt: T0 + 20 * MIN, alertCount: 2 },
      {
        id: 'old',
        severity: 'high',
        severityRank: 3,
        firstAlertAt: T0 - 40 * MIN,
        lastAlertAt: T0 - 40 * MIN,
        alertCount: 1,
      },
    ]);
    assert.deepEqual(
      plan.timeline.filter((e) => e.action === 'severity').map((e) => [e.incidentId, e.from, e.to]),
      [['newer', 'low', 'medium']],
    );
    assert.deepEqual(plan.incidentIds, ['newer', 'old']);
  });

  test('keys, tenants and hosts apart; events once per incident; an alert without a host titles by its rule', () => {
    const shared = alert({ eventIds: ['x', 'x', 'y'] });
    const batch = [
      shared,
      alert({ eventIds: ['y', 'z'] }),
      alert({ host: '' }),
      alert({ tenant: 'u' }),
      alert({ host: 'web-2' }),
    ];
    const plan = planIncidents(accept(batch), [], { windowMs: WINDOW, newId: ids() });
    assert.deepEqual(
      plan.opened.map((o) => [o.tenant, o.host, o.title, o.alertCount]),
      [
        ['t', 'web-1', 'Failed logon on web-1', 2],
        ['t', null, 'Failed logon', 1],
        ['u', 'web-1', 'Failed logon on web-1', 1],
        ['t', 'web-2', 'Failed logon on web-2', 1],
      ],
    );
    assert.deepEqual(
      plan.events.filter((e) => e.incidentId === 'new-1').map((e) => e.eventId),
      ['x', 'y', 'z'],
    );
  });
});
