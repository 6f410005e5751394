// Replacing a folder as a set. POSIX rename cannot replace a non-empty folder, and two renames (old away, new in)
// leave an instant where neither exists; on Linux the two are swapped in one step (renameat2 RENAME_EXCHANGE,
// native/src/io/fs.cc), so a process killed at any point leaves the old set or the new one at `target`.
import { constants } from 'node:os';
import { lstat, rename, rm } from 'node:fs/promises';
import { Dinov3Error } from '../native/errors.js';
import { native } from '../native/binding.js';

/** errnos meaning "this platform or file system cannot exchange these two": fall back to two renames (EXDEV: an
 * overlay file system that cannot move a lower-layer folder in one step). */
const NO_EXCHANGE = new Set([constants.errno.ENOSYS, constants.errno.EINVAL, constants.errno.EOPNOTSUPP, constants.errno.ENOTSUP, constants.errno.EXDEV]);

/**
 * Puts the complete folder `fresh` at `target`. An existing `target` is swapped with `fresh` atomically where the
 * platform allows (then removed from `fresh`'s place); elsewhere it is moved to `aside`, `fresh` renamed in, and
 * `aside` removed (on failure `aside` is moved back). `fresh`, `target` and `aside` must be on one file system.
 * @throws Dinov3Error ERR_IO when the exchange fails for another reason than lack of support.
 */
export async function replaceFolder(fresh: string, target: string, aside: string): Promise<void> {
  if (!(await lstat(target).catch(() => null))) {
    await rename(fresh, target);
    return;
  }
  const r = native.renameExchange?.(fresh, target);
  if (r && r.errno === 0) {
    await rm(fresh, { recursive: true, force: true });
    return;
  }
  if (r && !NO_EXCHANGE.has(r.errno)) throw new Dinov3Error(`${target}: cannot replace the folder with "${fresh}" (${r.message})`, 'ERR_IO');
  await rename(target, aside);
  try {
    await rename(fresh, target);
  } catch (e) {
    await rename(aside, target).catch(() => undefined);
    throw e;
  }
  await rm(aside, { recursive: true, force: true });
}

/** After a writer died between the two renames of the fallback: puts the folder it had moved to `aside` back at
 * `target` when nothing took its place (best effort; the caller then removes what is left of `aside`). */
export async function putBackAside(aside: string, target: string): Promise<void> {
  if (!(await lstat(target).catch(() => null)) && (await lstat(aside).catch(() => null))) await rename(aside, target).catch(() => undefined);
}
