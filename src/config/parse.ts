// Validation of config objects with zod: one ConfigError whose message is z.prettifyError output (dotted paths),
// with "did you mean" hints for misspelled keys.
import { z } from 'zod';
import { ConfigError, TorchTypeError } from '../native/errors.js';
import { suggest } from '../util/suggest.js';

export { suggest };

/** The object schema reached by following `path` from `schema` (through defaults, optionals and nullables). */
function shapeAt(schema: z.ZodType, path: PropertyKey[]): Record<string, z.ZodType> | undefined {
  let s: z.ZodType | undefined = schema;
  for (const key of [...path, null]) {
    // Unwrap wrappers (default, optional, nullable, pipe) until an object (or something else) is reached.
    for (let i = 0; i < 8 && s; i++) {
      const def: { type: string; innerType?: z.ZodType; in?: z.ZodType } = (s as unknown as { _zod: { def: { type: string } } })._zod.def;
      if (def.innerType) s = def.innerType;
      else if (def.type === 'pipe' && def.in) s = def.in;
      else break;
    }
    if (!(s instanceof z.ZodObject)) return undefined;
    if (key === null) return s.shape as Record<string, z.ZodType>;
    s = (s.shape as Record<string, z.ZodType>)[String(key)];
  }
  return undefined;
}

/**
 * Parses `input` with `schema` (defaults applied). Unknown keys get a hint naming the closest known key.
 * @throws ConfigError with the z.prettifyError text, e.g. `✖ Unrecognized key: "embed_dimm" (did you mean "embed_dim"?)`
 */
export function parseConfig<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  if (typeof (schema as { safeParse?: unknown } | null | undefined)?.safeParse !== 'function')
    throw new TorchTypeError(`parseConfig: expected "schema" to be a zod schema, received ${schema === null ? 'null' : typeof schema}`, 'ERR_INVALID_ARG');
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issues: z.core.$ZodIssue[] = [];
  for (const iss of r.error.issues) {
    if (iss.code !== 'unrecognized_keys') {
      issues.push(iss);
      continue;
    }
    const known = Object.keys(shapeAt(schema, iss.path) ?? {});
    for (const key of iss.keys) {
      const hint = suggest(key, known);
      issues.push({ ...iss, keys: [key], message: `Unrecognized key: "${key}"${hint ? ` (did you mean "${hint}"?)` : ''}` });
    }
  }
  throw new ConfigError(z.prettifyError(new z.ZodError(issues)));
}
