// Continue self-supervised training from released DINOv3 weights (student and teacher backbones start from the file,
// heads start fresh), here on your own images with a small learning rate. Run from the repository root:
//   npm run build:ts && node dist/examples/continue_from_released.js dinov3_vits16_pretrain_lvd1689m.pth <image-folder> <run-dir>
import { loadSSLConfig, openTrainingData, Trainer } from '../src/index.js';

const [weights, folder, runDir] = process.argv.slice(2);
if (!weights || !folder || !runDir) throw new Error('usage: continue_from_released <weights> <image-folder> <run-dir>');
const cfg = await loadSSLConfig('ssl_default', [
  'student.arch=vit_small',
  'student.n_storage_tokens=4',
  'student.layerscale=1e-5',
  'student.mask_k_bias=true',
  'student.norm_layer=layernormbf16',
  'student.drop_path_rate=0.0',
  'crops.global_crops_size=112',
  'crops.local_crops_size=48',
  'crops.local_crops_number=4',
  'dino.head_n_prototypes=4096',
  'ibot.head_n_prototypes=4096',
  'train.batch_size_per_gpu=8',
  'compute_precision.param_dtype=fp32',
  'optim.lr=1e-5',
  'optim.epochs=1',
  'optim.warmup_epochs=0',
  'train.OFFICIAL_EPOCH_LENGTH=200',
  'teacher.momentum_teacher=0.999',
  'teacher.warmup_teacher_temp_epochs=0',
]);
const data = await openTrainingData(folder, cfg, { workers: 1 });
const trainer = await Trainer.create(cfg, { data, outDir: runDir, initBackbone: weights, onProgress: (l) => console.log(l) });
try {
  await trainer.fit();
} finally {
  trainer.dispose();
  await data.close?.();
}
