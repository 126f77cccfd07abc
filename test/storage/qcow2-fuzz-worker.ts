/** Worker entry of the hostile-image properties (test/helpers/fuzz-worker.ts says why they run in a worker). */
import { parentPort, workerData } from 'node:worker_threads';
import { runHostileProperty, type HostileRun } from './qcow2-hostile.js';

parentPort!.postMessage(await runHostileProperty(workerData as HostileRun));
