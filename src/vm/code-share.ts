/**
 * The hart threads' code-sharing channel (src/riscv/jit/wasm/share.ts) over a BroadcastChannel: a hart thread
 * never returns to its event loop while it runs, so it takes batches with receiveMessageOnPort, which does not
 * wait. Posting a WebAssembly.Module to another thread of the process shares its compiled code.
 */
import { BroadcastChannel, receiveMessageOnPort } from 'node:worker_threads';
import { parseSharedBatch, type CodeShare, type SharedBatch } from '../riscv/jit/wasm/share.js';

export function channelCodeShare(name: string): CodeShare {
  const channel = new BroadcastChannel(name);
  // The thread's life is its run loop, not this channel.
  channel.unref();
  return {
    publish: (batch: SharedBatch) => channel.postMessage(batch),
    receive: () => {
      for (;;) {
        const got = receiveMessageOnPort(channel as unknown as Parameters<typeof receiveMessageOnPort>[0]);
        if (got === undefined) return null;
        // Another thread of this VM sent it; a malformed one (a bug, not the guest) is dropped, not trusted.
        const batch = parseSharedBatch(got.message);
        if (batch !== null) return batch;
      }
    },
  };
}
