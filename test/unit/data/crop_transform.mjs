// A small stand-in for the multi-crop augmentation, loaded by module path in loader workers (plain JavaScript, no
// imports): `nGlobal` random crops of side `global` and `nLocal` of side `local` (nearest resampling of a random
// square window), scaled to [0, 1], CHW float32. Every draw comes from the Rng it is given. `options.crash`
// throws an uncaught error from a microtask (a worker crash); `options.failOn` makes the transform throw for an image
// whose first byte equals it.
export default function makeTransform(o) {
  const crop = (img, side, rng) => {
    const win = Math.max(1, Math.floor(Math.min(img.width, img.height) * (0.5 + 0.5 * rng.random())));
    const top = Math.floor(rng.random() * (img.height - win + 1));
    const left = Math.floor(rng.random() * (img.width - win + 1));
    const flip = rng.random() < 0.5;
    const out = new Float32Array(3 * side * side);
    for (let y = 0; y < side; y++)
      for (let x = 0; x < side; x++) {
        const sy = top + Math.floor(((y + 0.5) * win) / side);
        let sx = left + Math.floor(((x + 0.5) * win) / side);
        if (flip) sx = left + win - 1 - (sx - left);
        for (let c = 0; c < 3; c++) out[c * side * side + y * side + x] = img.data[(sy * img.width + sx) * 3 + c] / 255;
      }
    return out;
  };
  return (img, rng) => {
    if (o.crash)
      queueMicrotask(() => {
        throw new Error('boom in the transform');
      });
    if (o.failOn !== undefined && img.data[0] === o.failOn) throw new Error(`cannot augment a ${img.width}×${img.height} image`);
    return {
      global: Array.from({ length: o.nGlobal ?? 2 }, () => crop(img, o.global, rng)),
      local: Array.from({ length: o.nLocal ?? 2 }, () => crop(img, o.local, rng)),
    };
  };
}
