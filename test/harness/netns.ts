/**
 * A network namespace for one test node, made with iproute2 (root), and cut from the rest by taking a link
 * down: the kernel drops the packets, nobody is told, as in a real partition.
 *
 * Two veth pairs join it to the host: `data` carries the node's NATS and etcd traffic (to forwarders the
 * harness binds on the host end), `mgmt` carries its HTTP API (tests and the other nodes reach it there).
 * A partition cuts `data` only, so that the test can still watch the cut node through its API.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface NodeNamespace {
  /** `ip netns` name. */
  name: string;
  /** Host end of the data link: where the node's NATS and etcd forwarders listen. */
  hostDataIp: string;
  /** The node's address on the management link: its HTTP API binds there. */
  nodeMgmtIp: string;
  /** Drops every packet on the data link (host end down). */
  cut(): void;
  /** Brings the data link back; held TCP connections resume by retransmission. */
  heal(): void;
  /** Deletes the namespace and its links (stop the processes inside first). */
  destroy(): void;
}

function ip(...args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(
      `ip ${args.join(' ')} failed: ${stderr || String(err)} (network namespaces need root and iproute2: apt-get install iproute2)`,
    );
  }
}

const live = new Set<NodeNamespace>();
// A test process that dies half-way must not leave namespaces behind.
process.once('exit', () => {
  for (const ns of live) {
    try {
      ns.destroy();
    } catch {
      // best effort
    }
  }
});

/** Creates a namespace with its two links; subnets 10.77.<k>.0/30 (data) and 10.78.<k>.0/30 (mgmt). */
export function createNodeNamespace(): NodeNamespace {
  const tag = randomBytes(3).toString('hex');
  const k = 1 + (randomBytes(1)[0] % 250);
  const name = `vigil-${tag}`;
  const hostData = `vd-${tag}`;
  const hostMgmt = `vm-${tag}`;
  const made: (() => void)[] = [];
  try {
    ip('netns', 'add', name);
    made.push(() => ip('netns', 'del', name));
    ip('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
    for (const [host, inner, net] of [
      [hostData, 'data0', '10.77'],
      [hostMgmt, 'mgmt0', '10.78'],
    ] as const) {
      ip('link', 'add', host, 'type', 'veth', 'peer', 'name', `${inner}-${tag}`);
      made.push(() => ip('link', 'del', host));
      ip('link', 'set', `${inner}-${tag}`, 'netns', name);
      ip('addr', 'add', `${net}.${k}.1/30`, 'dev', host);
      ip('link', 'set', host, 'up');
      ip('netns', 'exec', name, 'ip', 'addr', 'add', `${net}.${k}.2/30`, 'dev', `${inner}-${tag}`);
      ip('netns', 'exec', name, 'ip', 'link', 'set', `${inner}-${tag}`, 'up');
    }
  } catch (err) {
    for (const undo of made.reverse()) {
      try {
        undo();
      } catch {
        // best effort
      }
    }
    throw err;
  }
  const ns: NodeNamespace = {
    name,
    hostDataIp: `10.77.${k}.1`,
    nodeMgmtIp: `10.78.${k}.2`,
    cut: () => ip('link', 'set', hostData, 'down'),
    heal: () => ip('link', 'set', hostData, 'up'),
    destroy() {
      live.delete(ns);
      // Deleting the namespace removes the inner ends, and a veth pair goes with either end.
      try {
        ip('netns', 'del', name);
      } finally {
        for (const host of [hostData, hostMgmt]) {
          try {
            ip('link', 'del', host);
          } catch {
            // already gone with the namespace
          }
        }
      }
    },
  };
  live.add(ns);
  return ns;
}
