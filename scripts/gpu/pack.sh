#!/usr/bin/env bash
# Prepares what a GPU machine (no Node, no npm, no network) needs to build and check the addon, in ignored paths:
#   .gpu/node.xz               this machine's node binary
#   .gpu/node_modules.tar.xz   the packages the checks load (vitest and its dependencies, zod, node-addon-api,
#                              node-api-headers, commander, cli-progress, typescript; not sharp: the image, CLI and
#                              feature-file tests stay on CPU)
#   dist/                      the compiled TypeScript (benchmarks)
# Then run on the device, carrying [".gpu", "dist"]:  bash scripts/gpu/check.sh   (see that file).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
mkdir -p .gpu
[ -s .gpu/node.xz ] || xz -T0 -c "$(command -v node)" > .gpu/node.xz
packages=$(node -e '
  const { readFileSync, existsSync } = require("node:fs");
  const seen = new Set();
  const walk = (n) => {
    const f = `node_modules/${n}/package.json`;
    if (seen.has(n) || !existsSync(f)) return;
    seen.add(n);
    const p = JSON.parse(readFileSync(f, "utf8"));
    for (const d of Object.keys({ ...p.dependencies, ...p.optionalDependencies })) walk(d);
  };
  ["vitest", "zod", "node-addon-api", "node-api-headers", "commander", "cli-progress", "typescript"].forEach(walk);
  console.log([...seen].map((n) => `node_modules/${n}`).join("\n"));')
# shellcheck disable=SC2086
tar -cf - $packages node_modules/.bin/vitest 2>/dev/null | xz -T0 -6 > .gpu/node_modules.tar.xz
npx tsc -p tsconfig.json
du -ch .gpu/* dist | tail -1
