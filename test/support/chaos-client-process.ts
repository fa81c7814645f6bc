/**
 * A TaskGrid client as its own process, driven over stdin/stdout, for tests whose client must
 * live somewhere the test process is not (e.g. in a network namespace of its own).
 *
 * Usage: tsx test/support/chaos-client-process.ts <nameservice host:port>
 * Prints {"ready": true}; then reads one JSON request per line, {"seq": n, "op": "...", "args": [...]},
 * calls that client method and prints {"seq": n, "ok": true, "value": ...} or
 * {"seq": n, "ok": false, "error": {"code", "message"}}. Exits when stdin closes.
 */
import { createInterface } from 'node:readline';
import { TaskGridClient } from '../../src/client/index.ts';

const OPS = ['submitMany', 'wait', 'stats', 'workers', 'tasks', 'result'] as const;
type Op = (typeof OPS)[number];

const target = process.argv[2];
if (!target) {
  console.error('usage: chaos-client-process <nameservice host:port>');
  process.exit(2);
}
const sep = target.lastIndexOf(':');
const client = await TaskGridClient.connect({
  nameservers: [{ host: target.slice(0, sep), port: Number(target.slice(sep + 1)) }],
});
const out = (v: unknown) => process.stdout.write(`${JSON.stringify(v)}\n`);
out({ ready: true, address: client.address });

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const req = JSON.parse(line) as { seq: number; op: Op; args: unknown[] };
  if (!OPS.includes(req.op)) {
    out({ seq: req.seq, ok: false, error: { code: 'TG_ERR_BAD_REQUEST', message: `unknown op ${req.op}` } });
    return;
  }
  const call = (client[req.op] as (...a: unknown[]) => Promise<unknown>).bind(client);
  call(...req.args).then(
    (value) => out({ seq: req.seq, ok: true, value }),
    (err: unknown) => {
      const e = err as { code?: string; message?: string };
      out({
        seq: req.seq,
        ok: false,
        error: { code: e.code ?? 'TG_ERR_INTERNAL', message: e.message ?? String(err) },
      });
    },
  );
});
lines.on('close', () => {
  void client.close().then(() => process.exit(0));
});
