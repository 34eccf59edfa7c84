// Starts the real CLI `invoices serve --port 0` as a child process and reads its address from
// stderr; tests then talk HTTP to it with fetch.
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { ROOT, testDataHome } from './helpers.js';

export interface Served {
  url: string;
  child: ChildProcess;
  /** Everything written on stderr so far. */
  stderr(): string;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends a signal and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `invoices serve --port 0 ...args` with a clean environment plus `env`, in `cwd` (its config file); resolves once it listens. */
export function startServe(args: string[], env: Record<string, string>, cwd = os.tmpdir()): Promise<Served> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'invoices.js'), 'serve', '--port', '0', ...args], {
    cwd,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? os.homedir(),
      TZ: 'UTC',
      XDG_DATA_HOME: testDataHome(),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve did not listen within 30 s: ${stderr}`));
    }, 30_000);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve({
          url: m[1],
          child,
          stderr: () => stderr,
          exited,
          stop: (signal = 'SIGTERM') => {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            return exited;
          },
        });
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`serve exited ${code} before listening: ${stderr}`));
    });
  });
}

/** GET url: status, headers and the parsed JSON body (text when not JSON). */
// biome-ignore lint/suspicious/noExplicitAny: tests read the bodies field by field and compare them whole
export async function getJson(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: any }> {
  const res = await fetch(url, { headers });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: /metrics
  }
  return { status: res.status, headers: res.headers, body };
}

/** A metric's value from Prometheus text (the first series whose name and labels start with `prefix`). */
export function metric(text: string, prefix: string): number {
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}
