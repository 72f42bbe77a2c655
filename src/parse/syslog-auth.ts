import type { FieldValue } from '../lib/event.ts';

type Put = (key: string, value: FieldValue) => void;

const SSH_LOGIN = /^(Accepted|Failed) (\S+) for (invalid user )?(.*?) from (\S+) port (\d+)/;
const SSH_INVALID_USER = /^Invalid user (.*?) from (\S+?)(?: port (\d+))?\s*$/;
const SSH_MAX_ATTEMPTS =
  /^error: maximum authentication attempts exceeded for (invalid user )?(\S+) from (\S+) port (\d+)/;
const PAM_FAILURE = /^pam_unix\(([^:)]+):auth\): authentication failure;(.*)$/;
const SUDO = /^\s*(\S+) : (.*)$/;
const SU_FAILED = /^'su (\S+)' failed for (\S+) on (\S+)/;
const SU_FAILED_UTIL = /^FAILED SU \(to (\S+)\) (\S+) on (\S+)/;
const SU_OK_UTIL = /^\(to (\S+)\) (\S+) on (\S+)/;
const IP = /^(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*)$/;

/**
 * Recognizes the common sshd, sudo and su authentication messages and adds the ECS fields that say who
 * tried what from where and whether it worked: `event.category` (`authentication`), `event.type`,
 * `event.action`, `event.outcome`, `user.name`, `source.ip`, `source.port`. Anything else adds nothing.
 */
export function addAuthFields(app: string | undefined, msg: string, put: Put): void {
  let m = SSH_LOGIN.exec(msg);
  if (m) {
    auth(put, 'ssh_login', m[1] === 'Accepted' ? 'success' : 'failure', ['start']);
    put('system.auth.ssh.method', m[2]);
    user(put, m[4]);
    source(put, m[5], m[6]);
    return;
  }
  m = SSH_INVALID_USER.exec(msg);
  if (m) {
    auth(put, 'ssh_invalid_user', 'failure', ['info']);
    user(put, m[1]);
    source(put, m[2], m[3]);
    return;
  }
  m = SSH_MAX_ATTEMPTS.exec(msg);
  if (m) {
    auth(put, 'ssh_max_attempts_exceeded', 'failure', ['info']);
    user(put, m[2]);
    source(put, m[3], m[4]);
    return;
  }
  m = PAM_FAILURE.exec(msg);
  if (m) {
    auth(put, 'pam_authentication_failure', 'failure', ['info']);
    put('system.auth.pam.service', m[1]);
    const kv = pamPairs(m[2]);
    user(put, kv.user ?? kv.ruser ?? kv.logname);
    if (kv.rhost !== undefined && IP.test(kv.rhost)) put('source.ip', kv.rhost);
    return;
  }
  if (app === 'sudo') {
    sudo(msg, put);
    return;
  }
  if (app === 'su') su(msg, put);
}

function sudo(msg: string, put: Put): void {
  const m = SUDO.exec(msg);
  if (!m) return;
  const parts = m[2].split(' ; ');
  const kv: Record<string, string> = {};
  let problem: string | undefined;
  for (const part of parts) {
    const eq = /^([A-Z]+)=(.*)$/.exec(part);
    if (eq) kv[eq[1]] = eq[2];
    else problem ??= part.trim();
  }
  if (kv.COMMAND === undefined && kv.USER === undefined) return;
  auth(put, 'sudo', problem === undefined ? 'success' : 'failure', ['start']);
  user(put, m[1]);
  if (kv.USER !== undefined) put('user.effective.name', kv.USER);
  if (kv.COMMAND !== undefined) put('system.auth.sudo.command', kv.COMMAND);
  if (kv.TTY !== undefined) put('system.auth.sudo.tty', kv.TTY);
  if (kv.PWD !== undefined) put('system.auth.sudo.pwd', kv.PWD);
  if (problem !== undefined) put('system.auth.sudo.error', problem);
}

function su(msg: string, put: Put): void {
  const m = SU_FAILED.exec(msg) ?? SU_FAILED_UTIL.exec(msg);
  const ok = m ? undefined : SU_OK_UTIL.exec(msg);
  const hit = m ?? ok;
  if (!hit) return;
  auth(put, 'su', m ? 'failure' : 'success', ['start']);
  // `'su root' failed for lonvick` names the target first; util-linux `(to root) alice` does too.
  put('user.effective.name', hit[1]);
  user(put, hit[2]);
}

function auth(put: Put, action: string, outcome: 'success' | 'failure', type: string[]): void {
  put('event.category', ['authentication']);
  put('event.type', type);
  put('event.action', action);
  put('event.outcome', outcome);
}

function user(put: Put, name: string | undefined): void {
  if (name !== undefined && name !== '') put('user.name', name);
}

function source(put: Put, ip: string, port: string | undefined): void {
  if (IP.test(ip)) put('source.ip', ip);
  else put('source.domain', ip);
  if (port !== undefined) put('source.port', Number(port));
}

function pamPairs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/(\w+)=(\S*)/g)) if (m[2] !== '') out[m[1]] = m[2];
  return out;
}
