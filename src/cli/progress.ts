// A progress bar on stderr (cli-progress) with rate and ETA. Drawn only on a terminal; elsewhere it stays silent and
// the command prints its summary line at the end.
import cliProgress from 'cli-progress';

export interface ProgressSink {
  update(done: number, total: number, skipped: number): void;
  stop(): void;
}

/** Writes the CLI's messages; a terminal gets a live bar. */
export interface CliIO {
  stdout: { write(s: string): unknown };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

export function progressBar(io: CliIO, label: string, enabled: boolean): ProgressSink {
  if (!enabled || !io.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const started = Date.now();
  const bar = new cliProgress.SingleBar(
    {
      stream: io.stderr,
      format: `${label} |{bar}| {percentage}% | {value}/{total} images | {rate} img/s | ETA {eta_formatted} | skipped {skipped}`,
      hideCursor: true,
      etaBuffer: 50,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  let running = false;
  return {
    update(done, total, skipped) {
      const rate = (done / Math.max((Date.now() - started) / 1000, 1e-3)).toFixed(2);
      if (!running) {
        bar.start(total, done, { rate, skipped });
        running = true;
      } else bar.update(done, { rate, skipped });
    },
    stop() {
      if (running) bar.stop();
      running = false;
    },
  };
}
