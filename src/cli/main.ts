#!/usr/bin/env node
// Entry point of the `dinov3` command (package.json "bin"). See program.ts for the commands.
import { run } from './program.js';

process.exitCode = await run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr });
