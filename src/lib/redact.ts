/** What replaces a secret part of a URL (user info, a query value, a fragment). */
const REDACTED = 'redacted';

// A URL with a scheme, as it appears in free text (error messages, log lines): up to the first blank or quote.
const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]+/gi;

/**
 * A URL fit to show or log: user info becomes `redacted@`, every query value `redacted` (the names stay,
 * they help to tell targets apart) and a fragment `#redacted`. Scheme, host, port and path are kept.
 * A string that does not parse as a URL is redacted by pattern, so a malformed URL leaks no more.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return redactByPattern(url);
  }
  if (u.username || u.password) {
    u.username = REDACTED;
    u.password = '';
  }
  if (u.search) {
    const names = [...new Set([...u.searchParams.keys()])];
    u.search = names.map((n) => `${encodeURIComponent(n)}=${REDACTED}`).join('&');
  }
  if (u.hash) u.hash = REDACTED;
  return u.href;
}

/** `redactUrl` for a string that did not parse: user info, query and fragment cut by pattern. */
function redactByPattern(url: string): string {
  return url
    .replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, `$1${REDACTED}@`)
    .replace(/\?[^#]*/, `?${REDACTED}`)
    .replace(/#.*/, `#${REDACTED}`);
}

/** Free text (an error message, a log line) with every URL in it redacted as by `redactUrl`. */
export function redactUrls(text: string): string {
  return text.replace(URL_IN_TEXT, (m) => redactUrl(m));
}

/**
 * The message of an error and of its causes (`fetch failed: connect ECONNREFUSED 127.0.0.1:9`), with every
 * URL redacted: what may be stored where users read it, or logged. Undici puts the URL it was given in its
 * messages, and a URL may carry credentials.
 */
export function redactedErrorMessage(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const message = e instanceof Error ? e.message : String(e);
    // A wrapper often repeats its cause's message: each is said once.
    if (message && !parts.some((p) => p.includes(message))) parts.push(message);
    e = e instanceof Error ? e.cause : undefined;
  }
  return redactUrls(parts.join(': '));
}
