/**
 * An HTTP answer as tests read it: its status, and its body parsed as JSON, or the text where it is not JSON
 * (YAML, metrics, plain text).
 */
export interface Reply {
  status: number;
  // any: tests read any field of any answer.
  body: any;
}

/** Reads `res` whole into a `Reply`. */
export async function readReply(res: Response): Promise<Reply> {
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: the text as it is
  }
  return { status: res.status, body };
}
