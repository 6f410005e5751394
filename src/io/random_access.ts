// Random access to checkpoint bytes without holding the file in memory: positional reads of a regular file, or views
// of a buffer. Files of any size are supported (offsets are plain numbers, exact up to 2^53). Every failure is a
// CheckpointError naming the file: missing files, folders, FIFOs, devices and sockets, short reads, a file that
// changed since it was opened.

import { constants as bufferConstants } from 'node:buffer';
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync, type Stats, statSync } from 'node:fs';
import { CheckpointError } from '../native/errors.js';

/** A readable range of bytes: a file read piecewise, or a buffer. */
export interface ByteSource {
  /** Names the bytes in error messages (the file path, or `<buffer>`). */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /** The bytes [pos, pos + len): a view for buffers, a fresh array for files. Throws CheckpointError past the end. */
  read(pos: number, len: number): Uint8Array;
}

/** The largest single read: what one Buffer can hold (a single tensor of a checkpoint is never this big). */
export const MAX_READ_BYTES = bufferConstants.MAX_LENGTH;

function checkRange(src: ByteSource, pos: number, len: number): void {
  if (!Number.isSafeInteger(pos) || !Number.isSafeInteger(len) || pos < 0 || len < 0 || pos + len > src.size) {
    throw new CheckpointError(`${src.name}: truncated file: cannot read bytes [${pos}, ${pos + len}) of a ${src.size}-byte file`);
  }
  if (len > MAX_READ_BYTES) throw new CheckpointError(`${src.name}: a single ${len}-byte record is too large to load`);
}

/** Views of a buffer held in memory. */
export class BufferSource implements ByteSource {
  readonly size: number;
  constructor(
    readonly buf: Uint8Array,
    readonly name = '<buffer>',
  ) {
    this.size = buf.byteLength;
  }
  read(pos: number, len: number): Uint8Array {
    checkRange(this, pos, len);
    return new Uint8Array(this.buf.buffer, this.buf.byteOffset + pos, len);
  }
}

/** What identifies one version of a file: a read after it changed would mix two files. */
interface FileIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

const identity = (st: Stats): FileIdentity => ({ dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs });

function describeKind(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** Opens `path` for reading after checking (before and after opening, without blocking on FIFOs) that it is a
 * regular file. @throws CheckpointError naming the file */
export function openRegularFile(path: string, what = 'checkpoint'): { fd: number; stats: Stats } {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    throw fileError(path, e);
  }
  if (!st.isFile()) throw new CheckpointError(`${path}: the ${what} is ${describeKind(st)}, not a regular file`);
  let fd: number;
  try {
    // O_NONBLOCK: if a FIFO was swapped in after the stat, opening it does not wait for a writer.
    fd = openSync(path, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0));
  } catch (e) {
    throw fileError(path, e);
  }
  const st2 = fstatSync(fd);
  if (!st2.isFile()) {
    closeSync(fd);
    throw new CheckpointError(`${path}: the ${what} is ${describeKind(st2)}, not a regular file`);
  }
  return { fd, stats: st2 };
}

/** A CheckpointError for a failed file system call (no raw ENOENT/EACCES escapes). */
export function fileError(path: string, e: unknown): CheckpointError {
  if (e instanceof CheckpointError) return e;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const why =
    code === 'ENOENT'
      ? 'no such file or directory'
      : code === 'EACCES' || code === 'EPERM'
        ? 'permission denied'
        : code === 'EISDIR'
          ? 'is a folder, not a file'
          : code === 'ELOOP'
            ? 'too many levels of symbolic links'
            : `cannot be read (${code ?? (e as Error | undefined)?.message ?? String(e)})`;
  return new CheckpointError(`${path}: ${why}`);
}

function readFully(fd: number, path: string, pos: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let done = 0;
  while (done < len) {
    let n: number;
    try {
      n = readSync(fd, out, done, Math.min(len - done, 1 << 30), pos + done);
    } catch (e) {
      throw fileError(path, e);
    }
    if (n === 0) throw new CheckpointError(`${path}: truncated file: the file ended at byte ${pos + done} while reading [${pos}, ${pos + len})`);
    done += n;
  }
  return out;
}

/**
 * Positional reads of a regular file. The file is opened for each read (so nothing stays open between a
 * checkpoint's parse and its tensors' loads) and checked to be the same file, unchanged, every time.
 */
export class FileSource implements ByteSource {
  readonly size: number;
  readonly #id: FileIdentity;
  #fd: number | null = null;

  private constructor(
    readonly name: string,
    stats: Stats,
  ) {
    this.#id = identity(stats);
    this.size = stats.size;
  }

  /** Checks that `path` is a readable regular file and records its identity. @throws CheckpointError */
  static open(path: string, what = 'checkpoint'): FileSource {
    const { fd, stats } = openRegularFile(path, what);
    closeSync(fd);
    return new FileSource(path, stats);
  }

  /** Runs `fn` with the file held open (reads inside it reuse one descriptor). */
  withOpen<R>(fn: () => R): R {
    if (this.#fd !== null) return fn();
    this.#fd = this.#reopen();
    try {
      return fn();
    } finally {
      closeSync(this.#fd);
      this.#fd = null;
    }
  }

  read(pos: number, len: number): Uint8Array {
    checkRange(this, pos, len);
    if (this.#fd !== null) return readFully(this.#fd, this.name, pos, len);
    return this.withOpen(() => readFully(this.#fd!, this.name, pos, len));
  }

  #reopen(): number {
    const { fd, stats } = openRegularFile(this.name);
    const now = identity(stats);
    const id = this.#id;
    if (now.dev !== id.dev || now.ino !== id.ino || now.size !== id.size || now.mtimeMs !== id.mtimeMs) {
      closeSync(fd);
      throw new CheckpointError(`${this.name}: the file changed (or was replaced) while the checkpoint was being loaded`);
    }
    return fd;
  }
}

/** A ByteSource over `input`: a path (positional file reads) or a buffer. */
export function byteSource(input: string | Uint8Array | ByteSource, name?: string): ByteSource {
  if (typeof input === 'string') return FileSource.open(input);
  if (input instanceof Uint8Array) return new BufferSource(input, name);
  return input;
}
