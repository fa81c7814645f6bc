import { createUdpTransport } from '../../src/transport/index.ts';
import { startTs } from '../support/process.ts';
import { transportConformance } from './transport.case.ts';

transportConformance(
  'real UDP on loopback through a lossy relay process',
  async ({ faults, client, server }) => {
    const s = await createUdpTransport({ host: '127.0.0.1', port: 0, ...server });
    const c = await createUdpTransport({ host: '127.0.0.1', port: 0, ...client });
    let serverAddr = s.address;
    let stopRelay = async () => {};
    if (faults) {
      const relay = startTs('test/support/relay-process.ts', [`127.0.0.1:${s.address.port}`, JSON.stringify(faults)]);
      const { port } = await relay.nextJson<{ port: number }>((v) => 'port' in v);
      serverAddr = { host: '127.0.0.1', port };
      stopRelay = () => relay.stop();
    }
    return {
      client: c,
      server: s,
      serverAddr,
      close: async () => {
        await c.close();
        await s.close();
        await stopRelay();
      },
    };
  },
  { stress: 10_000 },
);
