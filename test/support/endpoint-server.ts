/**
 * A live endpoint in its own process, for hostile-input tests.
 * Usage: tsx test/support/endpoint-server.ts [json endpoint options]
 * Prints {"port": N}; answers `ping` and `get-result` (an echo); on a stdin line "counters"
 * prints {"counters": {...}, "rssMb": N}.
 */
import { createInterface } from 'node:readline';
import { createUdpTransport } from '../../src/transport/index.ts';

const options = process.argv[2] ? (JSON.parse(process.argv[2]) as Record<string, unknown>) : {};
const t = await createUdpTransport({ host: '127.0.0.1', port: 0, ...options });
const started = Date.now();
t.handle('ping', () => ({ component: 'endpoint-server', version: '1', uptimeMs: Date.now() - started, pid: process.pid }));
t.handle('get-result', ({ ids }) => ({ tasks: [], missing: ids }));
process.stdout.write(`${JSON.stringify({ port: t.address.port })}\n`);
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'counters') {
    const rssMb = process.memoryUsage().rss / 1024 / 1024;
    process.stdout.write(`${JSON.stringify({ counters: t.counters(), rssMb })}\n`);
  }
});
process.on('SIGTERM', () => {
  void t.close().then(() => process.exit(0));
});
