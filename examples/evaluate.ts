// k-NN accuracy (official protocol: cosine, k = 20, T = 0.07) of a backbone on a labeled train/val pair: image
// folders with one subfolder per class, list files (path,label) or IDX files.
//   npm run build:ts && node dist/examples/evaluate.js <weights> <train> <val>
import { evaluateBackbone, loadBackbone, openDataset } from '../src/index.js';

const [weights, trainSpec, valSpec] = process.argv.slice(2);
if (!weights || !trainSpec || !valSpec) throw new Error('usage: evaluate <weights> <train> <val>');
const { model } = await loadBackbone(weights);
const r = await evaluateBackbone(model, 'knn', await openDataset(trainSpec), await openDataset(valSpec), { resolution: 224 });
console.log(JSON.stringify(r, null, 1));
model.dispose();
