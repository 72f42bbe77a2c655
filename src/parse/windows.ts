import type { FieldValue } from '../lib/event.ts';

/** The System part of a Windows event, whichever layout it came in. */
export interface WindowsSystem {
  eventId: string | undefined;
  channel: string | undefined;
  provider: string | undefined;
  computer: string | undefined;
  recordId: string | undefined;
}

/** Adds an ECS field unless the event already has a field of that name. */
export type AddField = (key: string, value: FieldValue | undefined) => void;

/** Reads an EventData field by its Windows name (`Image`, `TargetUserName`). */
export type EventData = (name: string) => FieldValue | undefined;

interface Classification {
  category: string[];
  type: string[];
  action: string;
  outcome?: 'success' | 'failure';
}

const c = (category: string, type: string[], action: string, outcome?: 'success' | 'failure'): Classification => ({
  category: [category],
  type,
  action,
  outcome,
});

const SECURITY: Readonly<Record<string, Classification>> = {
  '4624': c('authentication', ['start'], 'logged-in', 'success'),
  '4625': c('authentication', ['start'], 'logon-failed', 'failure'),
  '4634': c('authentication', ['end'], 'logged-out', 'success'),
  '4648': c('authentication', ['start'], 'logged-in-explicit', 'success'),
  '4672': c('iam', ['admin'], 'logged-in-special', 'success'),
  '4688': c('process', ['start'], 'created-process', 'success'),
  '4720': c('iam', ['user', 'creation'], 'added-user-account', 'success'),
  '4732': c('iam', ['group', 'change'], 'added-member-to-group', 'success'),
};

const SYSMON: Readonly<Record<string, Classification>> = {
  '1': c('process', ['start'], 'process-created'),
  '3': c('network', ['connection', 'start'], 'network-connection'),
  '5': c('process', ['end'], 'process-terminated'),
  '7': c('process', ['change'], 'image-loaded'),
  '8': c('process', ['change'], 'remote-thread-created'),
  '10': c('process', ['access'], 'process-accessed'),
  '11': c('file', ['creation'], 'file-created'),
  '12': c('registry', ['change'], 'registry-key-created-or-deleted'),
  '13': c('registry', ['change'], 'registry-value-set'),
  '14': c('registry', ['change'], 'registry-key-renamed'),
  '22': c('network', ['protocol', 'info'], 'dns-query'),
  '23': c('file', ['deletion'], 'file-deleted'),
};

const POWERSHELL: Readonly<Record<string, Classification>> = {
  '4103': c('process', ['info'], 'pipeline-executed'),
  '4104': c('process', ['info'], 'script-block-logged'),
};

type Family = 'security' | 'sysmon' | 'powershell' | 'other';

function familyOf(sys: WindowsSystem): Family {
  const p = sys.provider?.toLowerCase();
  const ch = sys.channel?.toLowerCase();
  if (p === 'microsoft-windows-sysmon' || ch === 'microsoft-windows-sysmon/operational') return 'sysmon';
  if (p === 'microsoft-windows-security-auditing' || ch === 'security') return 'security';
  if (p === 'microsoft-windows-powershell' || ch === 'microsoft-windows-powershell/operational') return 'powershell';
  return 'other';
}

/**
 * Adds the ECS fields of a Windows event (evtx_dump or flat layout alike): `event.code`, `winlog.*`,
 * `host.name`, and for the well-known Security, Sysmon and PowerShell events the process, user, network,
 * file and registry fields and `event.category`/`type`/`action`/`outcome`, as Winlogbeat names them.
 */
export function addWindowsFields(sys: WindowsSystem, data: EventData, add: AddField): void {
  add('event.code', sys.eventId);
  add('winlog.event_id', sys.eventId);
  add('winlog.channel', sys.channel);
  add('winlog.provider_name', sys.provider);
  add('event.provider', sys.provider);
  add('winlog.record_id', sys.recordId);
  add('winlog.computer_name', sys.computer);
  add('host.name', sys.computer);
  const family = familyOf(sys);
  const id = sys.eventId ?? '';
  const table =
    family === 'security' ? SECURITY : family === 'sysmon' ? SYSMON : family === 'powershell' ? POWERSHELL : {};
  const known = Object.hasOwn(table, id) ? table[id] : undefined;
  if (known) {
    add('event.category', known.category);
    add('event.type', known.type);
    add('event.action', known.action);
    add('event.outcome', known.outcome);
  }
  if (family === 'sysmon') sysmon(id, data, add);
  else if (family === 'security') security(id, data, add);
  else if (family === 'powershell') powershell(id, data, add);
}

function sysmon(id: string, data: EventData, add: AddField): void {
  const sourceSide = id === '8' || id === '10';
  executable(add, 'process', str(data(sourceSide ? 'SourceImage' : 'Image')));
  add('process.pid', pid(data(sourceSide ? 'SourceProcessId' : 'ProcessId')));
  add('process.entity_id', str(data(sourceSide ? 'SourceProcessGUID' : 'ProcessGuid') ?? data('SourceProcessGuid')));
  add('process.command_line', str(data('CommandLine')));
  add('process.working_directory', str(data('CurrentDirectory')));
  add('process.pe.original_file_name', str(data('OriginalFileName')));
  executable(add, 'process.parent', str(data('ParentImage')));
  add('process.parent.pid', pid(data('ParentProcessId')));
  add('process.parent.entity_id', str(data('ParentProcessGuid')));
  add('process.parent.command_line', str(data('ParentCommandLine')));
  domainUser(add, 'user', str(data(id === '10' ? 'SourceUser' : 'User')));
  if (id === '1') hashes(add, 'process.hash', str(data('Hashes')));
  if (id === '3') {
    add('source.ip', str(data('SourceIp')));
    add('source.port', port(data('SourcePort')));
    add('source.domain', str(data('SourceHostname')));
    add('destination.ip', str(data('DestinationIp')));
    add('destination.port', port(data('DestinationPort')));
    add('destination.domain', str(data('DestinationHostname')));
    add('network.transport', str(data('Protocol'))?.toLowerCase());
    const initiated = data('Initiated');
    if (initiated !== undefined) add('network.direction', String(initiated) === 'true' ? 'egress' : 'ingress');
  }
  if (id === '7') {
    filePath(add, str(data('ImageLoaded')));
    add('dll.path', str(data('ImageLoaded')));
  }
  filePath(add, str(data('TargetFilename')));
  const target = str(data('TargetObject'));
  if (target !== undefined) {
    add('registry.path', target);
    if (id === '13') {
      add('registry.value', target.slice(target.lastIndexOf('\\') + 1));
      const details = str(data('Details'));
      if (details !== undefined) add('registry.data.strings', [details]);
    }
  }
  if (id === '22') add('dns.question.name', str(data('QueryName')));
}

/** Events whose user is the account logged on or off (Target*); the others name the actor (Subject*). */
const TARGET_USER_EVENTS = new Set(['4624', '4625', '4634']);

function security(id: string, data: EventData, add: AddField): void {
  if (id === '4688') {
    executable(add, 'process', str(data('NewProcessName')));
    add('process.pid', pid(data('NewProcessId')));
    add('process.command_line', str(data('CommandLine')));
    executable(add, 'process.parent', str(data('ParentProcessName')));
    add('process.parent.pid', pid(data('ProcessId')));
  } else {
    const exe = str(data('ProcessName')) ?? str(data('Application'));
    executable(add, 'process', exe);
    if (exe !== undefined) add('process.pid', pid(data('ProcessId')));
  }
  const side = TARGET_USER_EVENTS.has(id) ? 'Target' : 'Subject';
  add('user.name', str(data(`${side}UserName`)));
  add('user.domain', str(data(`${side}DomainName`)));
  add('user.id', str(data(`${side}UserSid`)));
  if (id === '4648' || id === '4720') {
    add('user.target.name', str(data('TargetUserName')));
    add('user.target.domain', str(data('TargetDomainName')));
  }
  if (id === '4732') {
    add('user.target.name', str(data('MemberName')));
    add('user.target.id', str(data('MemberSid')));
    add('group.name', str(data('TargetUserName')));
    add('group.domain', str(data('TargetDomainName')));
    add('group.id', str(data('TargetSid')));
  }
  add('source.ip', str(data('IpAddress')) ?? str(data('SourceAddress')));
  add('source.port', port(data('IpPort') ?? data('SourcePort')));
  add('source.domain', str(data('WorkstationName')));
  add('destination.ip', str(data('DestAddress')));
  add('destination.port', port(data('DestPort')));
}

function powershell(id: string, data: EventData, add: AddField): void {
  if (id === '4104') {
    add('powershell.file.script_block_text', str(data('ScriptBlockText')));
    add('powershell.file.script_block_id', str(data('ScriptBlockId')));
    filePath(add, str(data('Path')));
    return;
  }
  const context = str(data('ContextInfo'));
  if (id !== '4103' || context === undefined) return;
  // ContextInfo is `Key = Value` lines; Winlogbeat lifts the same ones. Split by hand: the values can be
  // long (encoded command lines) and a regular expression over them backtracks badly.
  for (const line of context.split('\n')) {
    const eq = line.indexOf(' = ');
    if (eq < 0) continue;
    const key = line.slice(0, eq).trim();
    const value = nonEmpty(line.slice(eq + 3).trim());
    if (key === 'Host Application') add('process.command_line', value);
    else if (key === 'User') domainUser(add, 'user', value);
    else if (key === 'Script Name') filePath(add, value);
    else if (key === 'Command Name') add('powershell.command.name', value);
  }
}

function executable(add: AddField, prefix: string, path: string | undefined): void {
  if (path === undefined) return;
  add(`${prefix}.executable`, path);
  add(`${prefix}.name`, basename(path));
}

function filePath(add: AddField, path: string | undefined): void {
  if (path === undefined) return;
  add('file.path', path);
  add('file.name', basename(path));
}

function domainUser(add: AddField, prefix: string, value: string | undefined): void {
  if (value === undefined) return;
  const slash = value.indexOf('\\');
  if (slash < 0) {
    add(`${prefix}.name`, value);
    return;
  }
  add(`${prefix}.domain`, nonEmpty(value.slice(0, slash)));
  add(`${prefix}.name`, nonEmpty(value.slice(slash + 1)));
}

function hashes(add: AddField, prefix: string, value: string | undefined): void {
  if (value === undefined) return;
  for (const part of value.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const algorithm = part.slice(0, eq).trim().toLowerCase();
    add(
      `${prefix}.${algorithm}`,
      part
        .slice(eq + 1)
        .trim()
        .toLowerCase(),
    );
  }
}

function basename(path: string): string {
  return path.slice(Math.max(path.lastIndexOf('\\'), path.lastIndexOf('/')) + 1);
}

/** A usable text value: Windows writes `-` (and sometimes nothing) for "not applicable". */
function str(v: FieldValue | undefined): string | undefined {
  if (v === undefined || v === null || Array.isArray(v)) return undefined;
  const s = typeof v === 'string' ? v : String(v);
  return s === '' || s === '-' ? undefined : s;
}

function nonEmpty(s: string): string | undefined {
  return s === '' || s === '-' ? undefined : s;
}

/** Process ids come as numbers, decimal text, or `0x`-prefixed hex text (Security events). */
function pid(v: FieldValue | undefined): number | undefined {
  const s = str(v);
  if (s === undefined) return undefined;
  const n = /^0x[0-9a-f]+$/i.test(s) ? Number.parseInt(s.slice(2), 16) : /^\d+$/.test(s) ? Number(s) : Number.NaN;
  return Number.isSafeInteger(n) ? n : undefined;
}

function port(v: FieldValue | undefined): number | undefined {
  const n = pid(v);
  return n !== undefined && n > 0 && n <= 65535 ? n : undefined;
}
