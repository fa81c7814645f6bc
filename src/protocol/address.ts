/**
 * Addresses: which ones only this machine can reach, and the datagram budget that follows.
 */
import { LIMITS } from './limits.ts';

/** True for addresses that only this machine can reach (`[::1]` in brackets too). */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * The datagram budget of a socket bound to `bindHost` when none is configured: a socket bound
 * to loopback only ever talks over loopback (MTU 64 KiB, no IP fragmentation), so it sends
 * {@link LIMITS.loopbackDatagramBudget}; any other socket may reach a real network and keeps
 * below common MTUs ({@link LIMITS.datagramBudget}).
 */
export function defaultDatagramBudget(bindHost: string): number {
  return isLoopbackHost(bindHost) ? LIMITS.loopbackDatagramBudget : LIMITS.datagramBudget;
}
