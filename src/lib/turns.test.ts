import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { BACKGROUND_AFTER_SLICES, createTurnTaker, takeTurn, turnsWaiting } from './turns.ts';

/** Busy loops of the test: each spins its budget, then takes a turn, until `endAt`. Slices taken per loop. */
async function busyLoops(loops: number, budgetMs: number, endAt: number): Promise<number[]> {
  const slices = new Array<number>(loops).fill(0);
  await Promise.all(
    slices.map(async (_, i) => {
      const turns = createTurnTaker(budgetMs);
      while (performance.now() < endAt) {
        while (!turns.due()) {
          // Spinning: the CPU work of an ingest loop.
        }
        slices[i]++;
        await turns.take();
      }
    }),
  );
  return slices;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

test('a timer and a socket wait about one budget, not one per busy loop, and every loop gets its slices', async () => {
  const loops = 6;
  const budgetMs = 10;
  const server = createServer((s) => s.pipe(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  await once(client, 'connect');
  try {
    const endAt = performance.now() + 1500;
    const timerDelays: number[] = [];
    const roundTrips: number[] = [];
    const timers = (async () => {
      while (performance.now() < endAt - 50) {
        const t = performance.now();
        await new Promise((resolve) => setTimeout(resolve, 1));
        timerDelays.push(performance.now() - t - 1);
      }
    })();
    const echoes = (async () => {
      while (performance.now() < endAt - 50) {
        const t = performance.now();
        client.write('x');
        await once(client, 'data');
        roundTrips.push(performance.now() - t);
      }
    })();
    const slices = await busyLoops(loops, budgetMs, endAt);
    await Promise.all([timers, echoes]);
    // With one pass of the event loop running every waiting loop's slice (k x budget = 60 ms), a timer
    // waited about 60 ms and a round trip (two polls) about 120 ms. One slice per pass: about 10 and 20.
    assert.ok(timerDelays.length >= 10, `only ${timerDelays.length} timer probes`);
    assert.ok(median(timerDelays) < 3 * budgetMs, `timer delay median ${median(timerDelays)} ms`);
    assert.ok(median(roundTrips) < 4 * budgetMs, `socket round trip median ${median(roundTrips)} ms`);
    assert.ok(Math.min(...slices) >= Math.max(...slices) / 2, `slices per loop ${slices.join(', ')}`);
    assert.equal(turnsWaiting(), 0);
  } finally {
    client.destroy();
    server.close();
  }
});

test('loops resume in the order they asked, and one asking again goes behind those waiting', async () => {
  const order: string[] = [];
  const ask = async (name: string) => {
    await takeTurn();
    order.push(name);
    // Asks again while the others still wait: goes behind them.
    await takeTurn();
    order.push(`${name} again`);
  };
  await Promise.all([ask('a'), ask('b'), ask('c')]);
  assert.deepEqual(order, ['a', 'b', 'c', 'a again', 'b again', 'c again']);
  assert.equal(turnsWaiting(), 0);
});

test('a turn taker is due once its budget has passed, and a turn starts a new budget', async () => {
  const turns = createTurnTaker(20);
  assert.equal(turns.due(), false);
  const t = performance.now();
  while (performance.now() - t < 25) {
    // Spinning past the budget.
  }
  assert.equal(turns.due(), true);
  await turns.take();
  assert.equal(turns.due(), false);
  assert.equal(createTurnTaker(0).due(), true);
});

test('a loop that starts while others wait for their turn goes behind them at its first look at the clock', async () => {
  const order: string[] = [];
  const waiting = takeTurn().then(() => order.push('waiting'));
  const fresh = createTurnTaker(1000);
  assert.equal(fresh.due(), true, 'due before its budget: another loop waits');
  await fresh.take();
  order.push('fresh');
  await waiting;
  assert.deepEqual(order, ['waiting', 'fresh']);
  // Once it has had a turn, only its budget counts.
  const behind = takeTurn();
  assert.equal(fresh.due(), false);
  await behind;
});

test('a background loop gets a slice only in a pass where no foreground loop waits, and gives way to one', async () => {
  const order: string[] = [];
  const background = createTurnTaker(1000, { background: true });
  // Asked first, served last: the foreground loops asking after it go ahead, one pass each.
  const bg = background.take().then(() => order.push('background'));
  const fg = Promise.all([
    takeTurn().then(() => order.push('a')),
    takeTurn().then(async () => {
      order.push('b');
      await takeTurn();
      order.push('b again');
    }),
  ]);
  await Promise.all([bg, fg]);
  assert.deepEqual(order, ['a', 'b', 'b again', 'background']);
  // Within its budget, a background loop is due as soon as a foreground loop waits (after its turns too).
  assert.equal(background.due(), false);
  const waiting = takeTurn();
  assert.equal(background.due(), true);
  await waiting;
  assert.equal(background.due(), false);
  assert.equal(turnsWaiting(), 0);
});

test('a background loop beside foreground loops that never stop waiting still gets every fifth slice', async () => {
  // Two foreground loops that always ask again (requests refused and retried) beside detection's loop.
  const slices: string[] = [];
  let stop = false;
  const loop = async (name: string, background: boolean) => {
    while (!stop) {
      await takeTurn(background);
      slices.push(name);
    }
  };
  const loops = [loop('a', false), loop('b', false), loop('detection', true)];
  await new Promise((r) => setTimeout(r, 200));
  stop = true;
  await Promise.all(loops);
  const fg = slices.filter((s) => s !== 'detection').length;
  const bg = slices.length - fg;
  assert.ok(slices.length > 50, `${slices.length} slices in 200 ms`);
  assert.ok(
    bg >= Math.floor(fg / BACKGROUND_AFTER_SLICES) - 1,
    `detection got ${bg} slices beside ${fg} foreground ones`,
  );
  assert.equal(turnsWaiting(), 0);
});
