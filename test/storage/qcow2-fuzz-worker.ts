/** Worker entry of the qcow2 fuzz properties (test/helpers/fuzz-worker.ts says why they run in a worker). */
import { parentPort, workerData } from 'node:worker_threads';
import { runHostileProperty, type HostileRun } from './qcow2-hostile.js';
import { runModelProperty, type ModelRun } from './qcow2-model.js';

export type FuzzWorkerData = ({ kind: 'hostile' } & HostileRun) | ({ kind: 'model' } & ModelRun);

const data = workerData as FuzzWorkerData;
parentPort!.postMessage(data.kind === 'hostile' ? await runHostileProperty(data) : await runModelProperty(data));
