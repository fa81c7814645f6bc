/**
 * The far side of the transport benchmark, in its own process: a raw node:dgram echo socket
 * and a TaskGrid endpoint answering `get-result` (an echo), side by side.
 * Prints {"raw": port, "endpoint": port}; answers the stdin line `counters` with
 * {"counters": {...}, "cpu": process.cpuUsage()}; runs until SIGTERM or until stdin closes (its parent is gone).
 */
import dgram from 'node:dgram';
import { createInterface } from 'node:readline';
import { createUdpTransport } from '../src/transport/index.ts';

const raw = dgram.createSocket('udp4');
raw.on('message', (msg, rinfo) => raw.send(msg, rinfo.port, rinfo.address));
await new Promise<void>((r) => raw.bind(0, '127.0.0.1', () => r()));
raw.setRecvBufferSize(4 * 1024 * 1024);
raw.setSendBufferSize(4 * 1024 * 1024);

const secret = process.argv[2] || undefined;
const endpoint = await createUdpTransport({ host: '127.0.0.1', port: 0, secret });
endpoint.handle('get-result', ({ ids }) => ({ tasks: [], missing: ids }));

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  raw.close();
  void endpoint.close().then(() => process.exit(0));
}

createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line.trim() === 'counters') {
      process.stdout.write(`${JSON.stringify({ counters: endpoint.counters(), cpu: process.cpuUsage() })}\n`);
    }
  })
  .on('close', stop);
process.on('SIGTERM', stop);

process.stdout.write(`${JSON.stringify({ raw: raw.address().port, endpoint: endpoint.address.port })}\n`);
