/**
 * The transport's public surface: create a reliable endpoint over real UDP or the in-memory
 * network.
 */
import { Endpoint, type EndpointOptions } from './endpoint.ts';
import { bindUdpLink, type UdpLinkOptions } from './udp-link.ts';

export { Endpoint, type EndpointOptions } from './endpoint.ts';
export { MemoryLink, MemoryNetwork, type Faults, type NetworkStats } from './memory-link.ts';
export { bindUdpLink, type UdpLinkOptions } from './udp-link.ts';
export type {
  Clock,
  DatagramLink,
  NotificationHandler,
  PeerAddress,
  RawHandler,
  RequestContext,
  RequestHandler,
  RequestOptions,
  Transport,
  TransportCounters,
} from './types.ts';
export { systemClock } from './types.ts';

/** Binds a UDP socket (port 0 = any free port) and returns a reliable endpoint on it. */
export async function createUdpTransport(options: UdpLinkOptions & EndpointOptions = {}): Promise<Endpoint> {
  const link = await bindUdpLink(options);
  return new Endpoint(link, options);
}
