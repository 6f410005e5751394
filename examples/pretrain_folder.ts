// Self-supervised pretraining of a small ViT on a folder of images (class subfolders are ignored for SSL), with a
// checkpoint every `checkpointing.period` iterations and a clean stop on Ctrl-C. Run from the repository root:
//   npm run build:ts && node dist/examples/pretrain_folder.js <image-folder> <run-dir>
import { loadSSLConfig, openTrainingData, Trainer } from '../src/index.js';

const [folder, runDir] = process.argv.slice(2);
if (!folder || !runDir) throw new Error('usage: pretrain_folder <image-folder> <run-dir>');
// A ViT-S/16 at 112 px with 4 local crops of 48 px and 4096 prototypes: a setting one CPU machine can run.
const cfg = await loadSSLConfig('cpu_vits_tiny', ['optim.epochs=2', 'checkpointing.period=50']);
const data = await openTrainingData(folder, cfg, { workers: 1, onWarning: (m) => console.warn(m) });
const ac = new AbortController();
process.once('SIGINT', () => ac.abort());
const trainer = await Trainer.create(cfg, { data, outDir: runDir, resume: true, signal: ac.signal, onProgress: (l) => console.log(l) });
try {
  const r = await trainer.fit();
  console.log(`stopped by ${r.stoppedBy} after ${r.iterations} iterations; teacher: ${runDir}/teacher_checkpoint.safetensors`);
} finally {
  trainer.dispose();
  await data.close?.();
}
