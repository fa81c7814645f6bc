/**
 * A lossy relay as its own process, for tests over real UDP between processes.
 * Usage: tsx test/support/relay-process.ts <target-host:port> <json faults>
 * Prints {"port": N} once listening; prints its stats as JSON and exits on SIGTERM.
 */
import { startRelay } from '../../src/transport/relay.ts';

const [target, faultsJson] = process.argv.slice(2);
if (!target) {
  console.error('usage: relay-process <target-host:port> [faults-json]');
  process.exit(2);
}
const sep = target.lastIndexOf(':');
const relay = await startRelay({
  target: { host: target.slice(0, sep), port: Number(target.slice(sep + 1)) },
  faults: faultsJson ? (JSON.parse(faultsJson) as Record<string, number>) : {},
});
process.stdout.write(`${JSON.stringify({ port: relay.address.port })}\n`);
process.on('SIGTERM', () => {
  process.stdout.write(`${JSON.stringify({ stats: relay.stats })}\n`);
  void relay.close().then(() => process.exit(0));
});
