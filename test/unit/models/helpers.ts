// Shared helpers for the backbone tests: fixture paths, fixture tensors and a closeness check that reports the
// max abs diff and the first mismatches (STYLE §7).
import { expect } from 'vitest';
import { readSafetensorsFile } from '../../../src/io/safetensors.js';
import { cat, type DinoVisionTransformer, fromBuffer, type Tensor } from '../../../src/index.js';

type ForwardFeatures = ReturnType<DinoVisionTransformer['forwardFeatures']>;

export const FIXTURES = new URL('../../fixtures/reference/', import.meta.url).pathname;

/** The tensors of a fixture .safetensors file (the caller disposes them). */
export async function loadFixture(name: string): Promise<Map<string, Tensor>> {
  const { tensors } = await readSafetensorsFile(`${FIXTURES}${name}`);
  return new Map([...tensors].map(([k, raw]) => [k, fromBuffer(raw.data, raw.dtype, raw.shape)]));
}

export function disposeAll(m: Map<string, Tensor> | Tensor[]): void {
  for (const t of m.values()) t.dispose();
}

/** Max abs diff and max abs diff relative to the largest reference magnitude. */
export function diff(actual: Tensor, expected: Tensor): { maxAbs: number; rel: number } {
  expect(actual.shape).toEqual(expected.shape);
  const a = actual.toFloat32Array();
  const e = expected.toFloat32Array();
  let maxAbs = 0;
  let maxRef = 0;
  for (let i = 0; i < e.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(a[i]! - e[i]!));
    maxRef = Math.max(maxRef, Math.abs(e[i]!));
  }
  return { maxAbs, rel: maxAbs / Math.max(maxRef, 1e-12) };
}

/**
 * Asserts |a − e| ≤ rtol·|e| + atol elementwise, with atol = rtol·max|e|; on failure the message gives the max abs
 * diff and the first mismatches. Returns the max abs diff.
 */
export function expectClose(actual: Tensor, expected: Tensor, name: string, rtol = 1e-4): number {
  expect(actual.shape, `${name}: shape`).toEqual(expected.shape);
  const a = actual.toFloat32Array();
  const e = expected.toFloat32Array();
  let maxRef = 0;
  for (const v of e) maxRef = Math.max(maxRef, Math.abs(v));
  const atol = rtol * maxRef;
  let maxAbs = 0;
  const bad: string[] = [];
  for (let i = 0; i < e.length; i++) {
    const d = Math.abs(a[i]! - e[i]!);
    maxAbs = Math.max(maxAbs, d);
    if (!(d <= atol + rtol * Math.abs(e[i]!)) && bad.length < 5) bad.push(`[${i}] ${a[i]} vs ${e[i]}`);
  }
  expect(bad, `${name}: max abs diff ${maxAbs.toExponential(3)}; first mismatches: ${bad.join(', ')}`).toEqual([]);
  return maxAbs;
}

/**
 * Checks a backbone against a transformers fixture (`input`, `last_hidden_state` = [CLS, registers, patches] after
 * the final norm, `pooler_output`, `hidden_state_{i}` = the tokens before block i) within 1e-4; returns the features.
 */
export function expectHfOutputs(model: DinoVisionTransformer, io: Map<string, Tensor>): ForwardFeatures {
  const x = io.get('input')!;
  const f = model.forwardFeatures(x);
  const last = cat([f.clsToken.unsqueeze(1), f.storageTokens, f.patchTokens], 1);
  expectClose(last, io.get('last_hidden_state')!, 'last_hidden_state');
  expectClose(model.forward(x), io.get('pooler_output')!, 'pooler_output');
  const { tokens, H, W } = model.prepareTokensWithMasks(x);
  let h: Tensor = tokens;
  expectClose(h, io.get('hidden_state_0')!, 'hidden_state_0');
  model.blocks.forEach((blk, i) => {
    h = blk.forward(h, model.ropeEmbed.forward({ H, W }));
    expectClose(h, io.get(`hidden_state_${i + 1}`)!, `hidden_state_${i + 1}`);
  });
  return f;
}

/** Checks forward_features against the official fixture's `cls`, `storage`, `patch` and `prenorm` (1e-4). */
export function expectOfficialFeatures(f: ForwardFeatures, io: Map<string, Tensor>): void {
  expectClose(f.clsToken, io.get('cls')!, 'cls');
  expectClose(f.storageTokens, io.get('storage')!, 'storage');
  expectClose(f.patchTokens, io.get('patch')!, 'patch');
  expectClose(f.prenorm, io.get('prenorm')!, 'prenorm');
}
