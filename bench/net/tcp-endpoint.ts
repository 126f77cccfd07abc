/**
 * TCP endpoint throughput: two endpoints back to back through the test harness's fake link (no loss, 1 ms simulated
 * latency), one transferring N MiB to the other. Prints wall-clock MB/s of the endpoint code itself (segmenting,
 * copying, ACK processing, reassembly bookkeeping), not of any network.
 *
 *   npx tsx bench/net/tcp-endpoint.ts [--mib N] [--mss N] [--runs N]
 */
import { parseArgs } from 'node:util';
import { connectedPair, pump, randomBytes } from '../../test/net/tcp-harness.js';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '64' },
    mss: { type: 'string', default: '1460' },
    runs: { type: 'string', default: '3' },
  },
});
const size = Number(values.mib) * 1024 * 1024;
const mss = Number(values.mss);
const data = randomBytes(size, 1);

for (let run = 1; run <= Number(values.runs); run++) {
  const { a, rb, link } = connectedPair({ mss }, { mss });
  let received = 0;
  rb.attach = () => undefined;
  link.endpoints.b!.onData = (bytes) => {
    received += bytes.length;
    link.endpoints.b!.consumed(bytes.length);
  };
  const start = performance.now();
  pump(a, data, 64 * 1024);
  link.clock.runUntilIdle();
  const ms = performance.now() - start;
  if (received !== size) throw new Error(`received ${received} of ${size} bytes`);
  const st = a.stats();
  console.log(
    `run ${run}: ${(size / 1e6 / (ms / 1000)).toFixed(1)} MB/s wall (${ms.toFixed(0)} ms for ${values.mib} MiB, ` +
      `${st.segmentsOut} segments out, ${link.endpoints.b!.stats().segmentsOut} ACKs back, simulated ${link.clock.now} ms)`,
  );
}
