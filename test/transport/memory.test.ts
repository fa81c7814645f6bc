import { Endpoint, MemoryNetwork } from '../../src/transport/index.ts';
import { transportConformance } from './transport.case.ts';

transportConformance(
  'the in-memory lossy network',
  ({ faults, client, server }) => {
    const net = new MemoryNetwork(faults ?? {});
    const s = new Endpoint(net.link('server'), server);
    const c = new Endpoint(net.link('client'), client);
    return Promise.resolve({
      client: c,
      server: s,
      serverAddr: s.address,
      close: async () => {
        await c.close();
        await s.close();
      },
    });
  },
  { stress: 10_000 },
);
