import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redactedErrorMessage, redactUrl, redactUrls } from './redact.ts';

test('redactUrl hides user info, query values and fragments, and keeps where the URL points', () => {
  const cases: [string, string][] = [
    [
      'http://user:pass@hooks.example:8443/hook?token=s3cret&x=1',
      'http://redacted@hooks.example:8443/hook?token=redacted&x=redacted',
    ],
    ['https://hooks.example/a/b', 'https://hooks.example/a/b'],
    ['https://:onlypass@hooks.example/', 'https://redacted@hooks.example/'],
    ['nats://alice:pw@10.0.0.1:4222', 'nats://redacted@10.0.0.1:4222'],
    ['postgres://vigil:pw@db:5432/vigil?sslmode=require', 'postgres://redacted@db:5432/vigil?sslmode=redacted'],
    ['https://h.example/p#access_token=abc', 'https://h.example/p#redacted'],
    ['http://u:p@[bad/x?token=abc', 'http://redacted@[bad/x?redacted'],
  ];
  for (const [url, want] of cases) assert.equal(redactUrl(url), want, url);
});

test('redactUrls redacts every URL inside free text and leaves the rest', () => {
  const text =
    'Request cannot be constructed from a URL that includes credentials: http://u:pw@h:1/x?token=abc (twice: postgres://a:b@db/v)';
  const out = redactUrls(text);
  assert.equal(
    out,
    'Request cannot be constructed from a URL that includes credentials: http://redacted@h:1/x?token=redacted (twice: postgres://redacted@db/v)',
  );
  for (const secret of ['pw', 'abc', 'a:b'])
    assert.ok(!out.includes(`${secret}@`) && !out.includes(`=${secret}`), secret);
});

test('redactedErrorMessage joins the causes and redacts URLs in any of them', () => {
  const err = new Error('POST failed', { cause: new TypeError('bad http://x:secret@h/?token=t0k') });
  const msg = redactedErrorMessage(err);
  assert.equal(msg, 'POST failed: bad http://redacted@h/?token=redacted');
});
