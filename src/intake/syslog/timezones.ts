import { BlockList, isIP } from 'node:net';
import { parseCidr } from './config.ts';

/** Answers the time zone of a sender from the host name its message names, then from its address. */
export type ZoneResolver = (peerAddress: string | undefined) => (hostname: string | undefined) => string;

/**
 * Builds the lookup of `syslog.timezones` over `syslog.timezone`: a host name (without case) first, then the
 * longest CIDR holding the sender's address, then the listener's zone. The host name comes first because a
 * relay's address says nothing about where the message was written; the name it carries does.
 */
export function createZoneResolver(fallback: string, timezones: Readonly<Record<string, string>>): ZoneResolver {
  const byHost = new Map<string, string>();
  const nets: { list: BlockList; family: 'ipv4' | 'ipv6'; prefix: number; zone: string }[] = [];
  for (const [key, zone] of Object.entries(timezones)) {
    const cidr = parseCidr(key);
    if (cidr) {
      const list = new BlockList();
      list.addSubnet(cidr.address, cidr.prefix, cidr.family);
      nets.push({ list, family: cidr.family, prefix: cidr.prefix, zone });
    } else {
      byHost.set(key.toLowerCase(), zone);
    }
  }
  nets.sort((a, b) => b.prefix - a.prefix);
  const byAddress = new Map<string, string>();
  const zoneOfAddress = (peer: string | undefined): string => {
    if (peer === undefined || nets.length === 0) return fallback;
    let zone = byAddress.get(peer);
    if (zone !== undefined) return zone;
    // A dual-stack listener reports IPv4 senders as ::ffff:a.b.c.d.
    const address = peer.startsWith('::ffff:') && isIP(peer.slice(7)) === 4 ? peer.slice(7) : peer;
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    zone = nets.find((n) => n.family === family && n.list.check(address, family))?.zone ?? fallback;
    if (byAddress.size > 10000) byAddress.clear();
    byAddress.set(peer, zone);
    return zone;
  };
  return (peer) => {
    const fromAddress = zoneOfAddress(peer);
    if (byHost.size === 0) return () => fromAddress;
    return (hostname) => (hostname === undefined ? undefined : byHost.get(hostname.toLowerCase())) ?? fromAddress;
  };
}
