// Data-driven parity sweep (RECIPE §1.2–§1.6, §2): every backbone and head case listed in a fixtures.json is loaded
// with the configuration recorded there and every output present in its `_io` file is compared, within 1e-4
// relative. The sweep covers the copies in test/fixtures/reference and, when present, the shared reference folder
// beside the repository (../shared/fixtures/reference), so cases added there are checked without new test code.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, test } from 'vitest';

import { readSafetensorsFile } from '../../../src/io/safetensors.js';
import { cat, DINOHead, fromBuffer, loadBackbone, memory, scope, type Tensor } from '../../../src/index.js';
import { disposeAll, expectClose, FIXTURES } from './helpers.js';

const SHARED = resolve(FIXTURES, '..', '..', '..', '..', 'shared', 'fixtures', 'reference');
const DIRS = [FIXTURES, SHARED].filter((d, i, all) => existsSync(join(d, 'fixtures.json')) && all.indexOf(d) === i);

interface Case {
  dir: string;
  kind: 'official' | 'hf' | 'head';
  name: string;
  config?: Record<string, unknown>;
}

function casesOf(dir: string): Case[] {
  const j = JSON.parse(readFileSync(join(dir, 'fixtures.json'), 'utf8')) as {
    files: Record<string, unknown>;
    official?: Record<string, { config: Record<string, unknown> }>;
    hf?: Record<string, unknown>;
  };
  const out: Case[] = [];
  for (const [name, v] of Object.entries(j.official ?? {}))
    if (existsSync(join(dir, `official_${name}_io.safetensors`))) out.push({ dir, kind: 'official', name, config: v.config });
  for (const name of Object.keys(j.hf ?? {}))
    if (existsSync(join(dir, `hf_${name}_io.safetensors`)) && existsSync(join(dir, `hf_${name}`))) out.push({ dir, kind: 'hf', name });
  for (const file of Object.keys(j.files))
    if (/dinohead/.test(file) && existsSync(join(dir, `${file}.safetensors`))) out.push({ dir, kind: 'head', name: file });
  return out;
}

async function loadIo(path: string): Promise<Map<string, Tensor>> {
  const { tensors } = await readSafetensorsFile(path);
  return new Map([...tensors].map(([k, raw]) => [k, fromBuffer(raw.data, raw.dtype, raw.shape)]));
}

const cases = DIRS.flatMap(casesOf);
// Each directory lists the given cases at least; a fixtures folder with no case would make this sweep vacuous.
test('the sweep finds the reference cases', () => {
  expect(cases.filter((c) => c.dir === FIXTURES).map((c) => `${c.kind}:${c.name}`)).toEqual(
    expect.arrayContaining(['official:vits_like', 'hf:vits_like', 'head:official_dinohead_io']),
  );
});

describe.each(cases.filter((c) => c.kind === 'official').map((c) => [`${c.name} (${c.dir === FIXTURES ? 'copy' : 'shared'})`, c] as const))(
  'official backbone %s',
  (_label, c) => {
    const files = ['pth', 'safetensors'].map((e) => join(c.dir, `official_${c.name}.${e}`)).filter((p) => existsSync(p));
    test.each(files)('every recorded output matches when loaded from %s', async (file) => {
      const before = memory().liveTensors;
      const io = await loadIo(join(c.dir, `official_${c.name}_io.safetensors`));
      const { model } = await loadBackbone(file, { config: c.config });
      const x = io.get('input')!;
      const p = model.patchSize;
      const checked: string[] = [];
      const check = (t: Tensor, key: string) => {
        expectClose(t, io.get(key)!, `${c.name}/${key}`);
        checked.push(key);
      };
      scope(() => {
        const f = model.forwardFeatures(x);
        if (io.has('cls')) check(f.clsToken, 'cls');
        if (io.has('storage')) check(f.storageTokens, 'storage');
        if (io.has('patch')) check(f.patchTokens, 'patch');
        if (io.has('prenorm')) check(f.prenorm, 'prenorm');
        if (io.has('masks')) {
          const m = model.forwardFeatures(x, io.get('masks')!);
          if (io.has('masked_cls')) check(m.clsToken, 'masked_cls');
          if (io.has('masked_storage')) check(m.storageTokens, 'masked_storage');
          if (io.has('masked_patch')) check(m.patchTokens, 'masked_patch');
          if (io.has('masked_prenorm')) check(m.prenorm, 'masked_prenorm');
        }
        if (io.has('rope_sin') || io.has('rope_cos')) {
          const { sin, cos } = model.ropeEmbed.forward({ H: Math.floor(x.shape[2]! / p), W: Math.floor(x.shape[3]! / p) });
          if (io.has('rope_sin')) check(sin, 'rope_sin');
          if (io.has('rope_cos')) check(cos, 'rope_cos');
        }
        const nInter = [...io.keys()].filter((k) => /^inter\d+_patch_nchw$/.test(k)).length;
        if (nInter > 0) {
          const inter = model.getIntermediateLayers(x, { n: nInter, reshape: true, returnClassToken: true, norm: true });
          inter.forEach(([patches, cls], i) => {
            check(patches, `inter${i}_patch_nchw`);
            if (io.has(`inter${i}_cls`)) check(cls, `inter${i}_cls`);
          });
        }
        const raw = [...io.keys()].map((k) => /^inter_raw_block(\d+)$/.exec(k)).filter((m) => m !== null);
        for (const m of raw) {
          const [t] = model.getIntermediateLayers(x, { n: [Number(m[1])], norm: false });
          check(t!, m[0]);
        }
      });
      expect(checked).toContain('cls');
      model.dispose();
      disposeAll(io);
      expect(memory().liveTensors).toBe(before);
    });
  },
);

describe.each(cases.filter((c) => c.kind === 'hf').map((c) => [`${c.name} (${c.dir === FIXTURES ? 'copy' : 'shared'})`, c] as const))(
  'Hugging Face backbone %s',
  (_label, c) => {
    test('last_hidden_state, pooler_output and the hidden states match', async () => {
      const before = memory().liveTensors;
      const io = await loadIo(join(c.dir, `hf_${c.name}_io.safetensors`));
      const { model } = await loadBackbone(join(c.dir, `hf_${c.name}`));
      const x = io.get('input')!;
      scope(() => {
        const f = model.forwardFeatures(x);
        const parts = [f.clsToken.unsqueeze(1), ...(model.nStorageTokens > 0 ? [f.storageTokens] : []), f.patchTokens];
        if (io.has('last_hidden_state')) expectClose(cat(parts, 1), io.get('last_hidden_state')!, `${c.name}/last_hidden_state`);
        if (io.has('pooler_output')) expectClose(model.forward(x), io.get('pooler_output')!, `${c.name}/pooler_output`);
        const { tokens, H, W } = model.prepareTokensWithMasks(x);
        let h: Tensor = tokens;
        if (io.has('hidden_state_0')) expectClose(h, io.get('hidden_state_0')!, `${c.name}/hidden_state_0`);
        model.blocks.forEach((blk, i) => {
          h = blk.forward(h, model.ropeEmbed.forward({ H, W }));
          if (io.has(`hidden_state_${i + 1}`)) expectClose(h, io.get(`hidden_state_${i + 1}`)!, `${c.name}/hidden_state_${i + 1}`);
        });
      });
      model.dispose();
      disposeAll(io);
      expect(memory().liveTensors).toBe(before);
    });
  },
);

describe.each(cases.filter((c) => c.kind === 'head').map((c) => [`${c.name} (${c.dir === FIXTURES ? 'copy' : 'shared'})`, c] as const))(
  'DINO head %s',
  (_label, c) => {
    test('output and normalised bottleneck match, with sizes read off the weights', async () => {
      const before = memory().liveTensors;
      const io = await loadIo(join(c.dir, `${c.name}.safetensors`));
      const sd = new Map([...io].filter(([k]) => k.startsWith('sd.')).map(([k, t]) => [k.slice(3), t]));
      const linears = [...sd.keys()].filter((k) => /^mlp\.(\d+\.)?weight$/.test(k));
      const first = sd.get(linears.includes('mlp.weight') ? 'mlp.weight' : 'mlp.0.weight')!;
      const last = sd.get('last_layer.weight')!;
      const nlayers = linears.length;
      const bottleneck = last.shape[1]!;
      const hidden = nlayers > 1 ? first.shape[0]! : bottleneck;
      const head = new DINOHead(first.shape[1]!, hidden, bottleneck, last.shape[0]!, { nlayers, mlpBias: sd.has(linears[0]!.replace('weight', 'bias')) });
      head.loadStateDict(sd);
      scope(() => {
        expectClose(head.forward(io.get('input')!), io.get('output')!, `${c.name}/output`);
        if (io.has('bottleneck')) expectClose(head.forward(io.get('input')!, 'no_last_layer'), io.get('bottleneck')!, `${c.name}/bottleneck`);
      });
      head.dispose();
      disposeAll(io);
      expect(memory().liveTensors).toBe(before);
    });
  },
);
