/**
 * Why a board on linear RAM cost ~10 ms more to build in a VM worker than on chunks (bench/snapshot's
 * `buildMachine.board`): a worker with a VM worker's resource limits runs the warm-up a pooled worker runs, then
 * builds restore boards of --memory-mib on each layout and times the steps (making the memory, the board).
 * Run with node's --trace-gc to see the collections (V8 flags reach the worker's isolate too).
 *
 *   node dist/bench/memory/linear-board-probe.js [--memory-mib M] [--rounds N]
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { parseArgs } from 'node:util';
import { VM_WORKER_LIMITS } from '../../src/vm/worker-engine.js';

interface Params {
  memoryMiB: number;
  rounds: number;
  layout: 'linear' | 'chunks';
}

async function inWorker(p: Params): Promise<Record<string, number[]>> {
  const t0 = performance.now();
  const { warmUp } = await import('../../src/vm/warm-up.js');
  const { Machine } = await import('../../src/machine/machine.js');
  const { createLinearRam } = await import('../../src/vm/linear-ram.js');
  const { defaultHartFactory } = await import('../../src/vm/machine-loop.js');
  const times: Record<string, number[]> = { import: [performance.now() - t0] };
  const lap = (k: string, v: number): void => void (times[k] ??= []).push(v);
  let t = performance.now();
  await warmUp();
  lap('warmUp', performance.now() - t);
  for (let i = 0; i < p.rounds; i++) {
    // A worker gets its VM some time after warm-up: let any collection it started finish.
    await new Promise((r) => setTimeout(r, 200));
    t = performance.now();
    const linear = p.layout === 'linear' ? createLinearRam(p.memoryMiB * 2 ** 20) : null;
    lap('createLinearRam', performance.now() - t);
    t = performance.now();
    const m = new Machine({
      forRestore: true,
      harts: 1,
      memoryBytes: p.memoryMiB * 2 ** 20,
      firmware: { kind: 'builtin' },
      createHart: defaultHartFactory(),
      linearRam: linear ? () => linear : undefined,
    });
    lap('board', performance.now() - t);
    m.stop();
  }
  return times;
}

if (isMainThread) {
  const { values } = parseArgs({
    options: { 'memory-mib': { type: 'string', default: '256' }, rounds: { type: 'string', default: '3' } },
  });
  for (const layout of ['chunks', 'linear'] as const) {
    const params: Params = { memoryMiB: Number(values['memory-mib']), rounds: Number(values.rounds), layout };
    // The layout the warm-up uses too (it loads koffi for a linear one, as a pooled worker does).
    const w = new Worker(new URL(import.meta.url), {
      workerData: params,
      resourceLimits: VM_WORKER_LIMITS,
      env: { ...process.env, TYPEVISOR_RAM: layout },
    });
    const times = await new Promise<Record<string, number[]>>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    const fmt = Object.entries(times)
      .map(([k, v]) => `${k} ${v.map((x) => x.toFixed(2)).join('/')}`)
      .join(', ');
    console.log(`${layout}: ${fmt} ms`);
  }
} else {
  parentPort!.postMessage(await inWorker(workerData as Params));
}
