// Installs every op family as Tensor methods. Imported by creation.ts, so any program that can make a tensor has
// all methods (x.argmax(), x.matmul(), …) whatever it imports.
import './pointwise.js';
import './reduce.js';
import './shape.js';
import './index.js';
import './linalg.js';
import './nn.js';
