// Long key reports: a StateDictError's message shows the first 10 keys of each kind and a count; the error's
// `missing`, `unexpected` and `mismatched` properties hold the full lists.
import { expect, test } from 'vitest';

import { Linear, ones, scope, StateDictError } from '../../../src/index.js';
import { previewList, suggest } from '../../../src/util/suggest.js';

test('a state dict with 25 unexpected keys and 2 missing ones: 10 shown, then "… and 15 more"; full lists as properties', () => {
  const lin = new Linear(2, 2);
  const keys = Array.from({ length: 25 }, (_, i) => `extra.${String(i).padStart(2, '0')}`);
  let err: unknown;
  scope(() => {
    try {
      lin.loadStateDict(new Map(keys.map((k) => [k, ones([1])])));
    } catch (e) {
      err = e;
    }
  });
  lin.dispose();
  expect(err).toBeInstanceOf(StateDictError);
  const e = err as StateDictError;
  expect(e.message).toBe(
    'loadStateDict: the state dict does not match the module (strict loading)\n' +
      'missing keys (2): weight, bias\n' +
      `unexpected keys (25): ${keys.slice(0, 10).join(', ')}, … and 15 more`,
  );
  expect([e.code, e.missing, e.unexpected, e.mismatched]).toEqual(['ERR_STATE_DICT', ['weight', 'bias'], keys, []]);
});

test('previewList and suggest (one implementation of the "did you mean" hint)', () => {
  expect(previewList(['a', 'b'])).toBe('a, b');
  expect(previewList([1, 2, 3, 4], (n) => `#${n}`, '; ', 2)).toBe('#1; #2; … and 2 more');
  // An abbreviation picks the shortest key it starts; otherwise the closest key by edit distance, if close enough.
  expect([suggest('embed', ['embed_dim', 'embed_layer']), suggest('nmu_heads', ['num_heads', 'depth']), suggest('xyz', ['depth'])]).toEqual([
    'embed_dim',
    'num_heads',
    undefined,
  ]);
});
