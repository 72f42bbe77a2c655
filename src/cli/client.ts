import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Where the CLI finds the API and its token: flags, then VIGIL_URL/VIGIL_TOKEN, then the local defaults. */
export function apiTarget(opts: { url?: string; token?: string }): { url: string; token: string } {
  const url = opts.url ?? process.env.VIGIL_URL ?? `http://${process.env.VIGIL_HTTP_ADDR ?? '127.0.0.1:8080'}`;
  let token = opts.token ?? process.env.VIGIL_TOKEN ?? process.env.VIGIL_ADMIN_TOKEN;
  if (!token) {
    const file = join(process.env.VIGIL_DATA_DIR ?? './data', 'admin-token');
    if (existsSync(file)) token = readFileSync(file, 'utf8').trim();
  }
  if (!token) throw new Error('no API token: pass --token, set VIGIL_TOKEN, or run from the folder with ./data');
  return { url: url.replace(/\/$/, ''), token };
}

/** Calls the API and returns the parsed JSON, or throws with the server's error message. */
export async function apiGet(target: { url: string; token: string }, path: string): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${target.url}${path}`, { headers: { authorization: `Bearer ${target.token}` } });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(
      `cannot reach Vigil at ${target.url} (${cause?.code ?? cause?.message ?? 'network error'}): is it running? set --url or VIGIL_URL`,
    );
  }
  const body = (await res.json()) as { error?: { message: string; details?: { hint?: string } } };
  if (!res.ok) {
    const hint = body.error?.details?.hint ? ` (${body.error.details.hint})` : '';
    throw new Error(`${res.status}: ${body.error?.message ?? 'request failed'}${hint}`);
  }
  return body;
}
