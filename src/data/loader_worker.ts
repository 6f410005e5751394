// The data-loader worker thread: rebuilds the dataset from its spec, imports the transform by module path, then
// answers SampleTasks, handing the crops back as transferred ArrayBuffers (tensors are made on the main thread).
import { parentPort, workerData } from 'node:worker_threads';

import { datasetFromSpec } from './datasets/index.js';
import type { DatasetSpec } from './datasets/types.js';
import { loadTransform, resultBuffers, runTask, type SampleTask, type TransformModule } from './loader_task.js';

interface Init {
  dataset: DatasetSpec | null;
  transform: TransformModule;
}

const init = workerData as Init;
const port = parentPort!;
const ds = init.dataset ? datasetFromSpec(init.dataset) : undefined;
const ready = loadTransform(init.transform);

port.on('message', (task: SampleTask) => {
  void ready.then(async (transform) => {
    const r = await runTask(ds, transform, task);
    port.postMessage(r, resultBuffers(r));
  });
});
// A transform module that fails to load is a worker failure: the rejection is uncaught and the main thread sees
// the worker's 'error' event.
ready.catch((e: unknown) => {
  throw e;
});
