/**
 * The hart threads' code-sharing channel (src/vm/code-share.ts): a module compiled on one thread and published
 * arrives on another thread, which takes it without waiting on its event loop (as a running hart thread must)
 * and instantiates it there; a message that is not a batch is dropped, and the one after it still arrives.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { channelCodeShare } from '../../src/vm/code-share.js';
import { repoRoot } from '../helpers/paths.js';
import type { SharedBatch } from '../../src/riscv/jit/wasm/share.js';

/** (module (func (export "b0") (result i32) i32.const 42)) */
const MODULE_BYTES = [
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 7, 6, 1, 2, 98, 48, 0, 0, 10, 6, 1, 4, 0, 65, 42, 11,
];

/** Takes the next batch, polling as a hart thread does between runs (never through the event loop). */
function receiveWithin(share: ReturnType<typeof channelCodeShare>, ms: number): SharedBatch | null {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const got = share.receive();
    if (got !== null) return got;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
  }
  return null;
}

test('a module published on one thread is instantiated on another; a malformed message is dropped', async () => {
  const name = `test-code-${process.pid}-${Date.now()}`;
  const share = channelCodeShare(name);
  const moduleUrl = pathToFileURL(join(repoRoot, 'dist/src/vm/code-share.js')).href;
  const worker = new Worker(
    `
    const { workerData } = require('node:worker_threads');
    const { BroadcastChannel } = require('node:worker_threads');
    import(workerData.moduleUrl).then(({ channelCodeShare }) => {
      const raw = new BroadcastChannel(workerData.name);
      raw.postMessage({ module: 'not a module', blocks: [] });
      raw.close();
      const share = channelCodeShare(workerData.name);
      const module = new WebAssembly.Module(new Uint8Array(workerData.bytes));
      share.publish({ module, blocks: [{ key: 'k', sites: [7, 12], segmentSlots: [3] }] });
    });`,
    { eval: true, workerData: { name, moduleUrl, bytes: MODULE_BYTES } },
  );
  const exited = new Promise((resolve, reject) => worker.on('exit', resolve).on('error', reject));
  // Taken before this thread's event loop runs again: as on a hart thread, which never returns to it while it
  // runs (the loop would hand the messages to listeners instead, and this channel has none).
  const batch = receiveWithin(share, 10_000);
  await exited;
  assert.ok(batch !== null, 'the batch arrived');
  assert.deepEqual(batch.blocks, [{ key: 'k', sites: [7, 12], segmentSlots: [3] }]);
  const Instance = (globalThis as unknown as { WebAssembly: { Instance: new (m: object) => { exports: { b0: () => number } } } })
    .WebAssembly.Instance;
  assert.equal(new Instance(batch.module).exports.b0(), 42);
  assert.equal(share.receive(), null, 'the malformed message was dropped, not delivered');
});
