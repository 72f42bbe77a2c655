/**
 * Runs `fn` and counts the turns of the event loop it left to other work meanwhile, with a ticker that re-arms
 * itself on every turn: 0 when `fn` held the loop from start to end.
 */
export async function eventLoopTurnsDuring<T>(fn: () => Promise<T>): Promise<{ result: T; turns: number }> {
  let turns = 0;
  let ticking = true;
  const tick = () => {
    if (!ticking) return;
    turns++;
    setImmediate(tick);
  };
  setImmediate(tick);
  try {
    return { result: await fn(), turns };
  } finally {
    ticking = false;
  }
}
