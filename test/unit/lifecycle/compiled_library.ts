// The library compiled to plain JavaScript (TypeScript's transpileModule, no type check) under build/, for code that
// runs outside vitest's transform: worker threads and child processes. Placed inside the repository so that
// node_modules resolution and the addon lookup (binding.ts walks up to the package root) work as for dist/.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function* tsFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* tsFiles(p);
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) yield p;
  }
}

/** Compiles src/ into a fresh folder under build/; returns the file URL of its index.js and a cleanup function. */
export function compileLibrary(): { indexUrl: string; cleanup: () => void } {
  mkdirSync(join(ROOT, 'build'), { recursive: true });
  // Folders left behind by a run that died (older than an hour) are removed.
  for (const name of readdirSync(join(ROOT, 'build')))
    if (name.startsWith('test-lib-') && Date.now() - statSync(join(ROOT, 'build', name)).mtimeMs > 3_600_000)
      rmSync(join(ROOT, 'build', name), { recursive: true, force: true });
  const out = mkdtempSync(join(ROOT, 'build', 'test-lib-'));
  for (const file of tsFiles(join(ROOT, 'src'))) {
    const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      fileName: file,
    });
    const dest = join(out, relative(ROOT, file)).replace(/\.ts$/, '.js');
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, outputText);
  }
  // ESM .js files need a package.json saying so (the repository's own says "type": "module" one level up anyway).
  writeFileSync(join(out, 'package.json'), '{ "type": "module" }\n');
  return {
    indexUrl: pathToFileURL(join(out, 'src', 'index.js')).href,
    cleanup: () => rmSync(out, { recursive: true, force: true }),
  };
}
