// TEMPORARY (development only, replaced by src/train/config.ts): the official default config + dotlist overrides.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
export type SSLConfig = any;
export async function loadSSLConfig(_preset: string, overrides: string[]): Promise<SSLConfig> {
  const cfg = parse(readFileSync('/work/peer/official/dinov3/configs/ssl_default_config.yaml', 'utf8'));
  for (const o of overrides) {
    const [k, v] = o.split('=') as [string, string];
    const path = k.split('.');
    let node = cfg;
    for (const p of path.slice(0, -1)) node = node[p];
    node[path[path.length - 1]!] = parse(v);
  }
  return cfg;
}
