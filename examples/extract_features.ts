// Extract CLS and patch features of a folder of images with a trained (or released) backbone, streaming in batches.
//   npm run build:ts && node dist/examples/extract_features.js <weights> <image-folder>
import { extractFeatures, loadBackbone } from '../src/index.js';

const [weights, folder] = process.argv.slice(2);
if (!weights || !folder) throw new Error('usage: extract_features <weights> <image-folder>');
const { model } = await loadBackbone(weights);
for await (const r of extractFeatures(model, folder, { resolution: 224, batchSize: 8 })) {
  console.log(r.path, 'cls', r.cls.shape, 'patches', r.patches.shape);
  for (const t of [r.cls, r.storage, r.patches]) t.dispose();
}
model.dispose();
