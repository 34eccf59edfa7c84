// A minimal Redis client: one connection, RESP2, commands answered in order (several in
// flight are pipelined). It exists because `invoices get` is a short process: the `redis`
// package loads ~650 modules (~200 ms here), more than a whole PostgreSQL lookup, while
// this needs only node:net and node:tls. The cache uses GET, SET, DEL, SCAN, AUTH, SELECT.
import net from 'node:net';
import tls from 'node:tls';

export type RespValue = string | number | null | RespValue[];

/** An error reply from the server (`-ERR ...`, `-WRONGPASS ...`); `code` is its first word. */
export class RespReplyError extends Error {
  readonly code: string;
  constructor(message: string) {
    super(message);
    this.name = 'RespReplyError';
    this.code = /^[A-Z]+/.exec(message)?.[0] ?? 'ERR';
  }
}

/** A connection-level failure (refused, timed out, closed, bad protocol) with a Node-style code. */
export class RespConnectionError extends Error {
  constructor(
    message: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RespConnectionError';
  }
}

/** Encodes one command as a RESP array of bulk strings. */
export function encodeCommand(args: readonly string[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const data = Buffer.from(arg, 'utf8');
    parts.push(Buffer.from(`$${data.length}\r\n`), data, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/**
 * Parses one reply starting at `start`; undefined when `buf` does not hold all of it yet.
 * Error replies come back as RespReplyError values (inside arrays too), not thrown.
 */
export function parseReply(buf: Buffer, start = 0): { value: RespValue | RespReplyError; end: number } | undefined {
  if (start >= buf.length) return undefined;
  const lineEnd = buf.indexOf('\r\n', start);
  if (lineEnd < 0) return undefined;
  const line = buf.toString('utf8', start + 1, lineEnd);
  const next = lineEnd + 2;
  switch (buf[start]) {
    case 0x2b: // + simple string
      return { value: line, end: next };
    case 0x2d: // - error
      return { value: new RespReplyError(line), end: next };
    case 0x3a: // : integer
      return { value: Number(line), end: next };
    case 0x24: {
      // $ bulk string
      const len = Number(line);
      if (len < 0) return { value: null, end: next };
      if (buf.length < next + len + 2) return undefined;
      return { value: buf.toString('utf8', next, next + len), end: next + len + 2 };
    }
    case 0x2a: {
      // * array
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let pos = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, pos);
        if (!item) return undefined;
        if (item.value instanceof RespReplyError)
          throw new RespConnectionError(`unexpected error inside a reply: ${item.value.message}`, 'EPROTO');
        items.push(item.value);
        pos = item.end;
      }
      return { value: items, end: pos };
    }
    default:
      throw new RespConnectionError(
        `is not a Redis server: it answered ${JSON.stringify(buf.toString('latin1', start, start + 24))}`,
        'EPROTO',
      );
  }
}

export interface RespConnectOptions {
  host: string;
  port: number;
  tls: boolean;
  /** Limit for connecting and for each command's reply. */
  timeoutMs: number;
}

interface Pending {
  resolve(value: RespValue): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** One connection to a Redis server. */
export class RespConnection {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly pending: Pending[] = [];
  private failure: Error | undefined;

  private constructor(
    private readonly socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) =>
      this.fail(new RespConnectionError(err.message, (err as NodeJS.ErrnoException).code ?? 'ECONNRESET', { cause: err })),
    );
    socket.on('close', () => this.fail(new RespConnectionError('the server closed the connection', 'ECONNRESET')));
  }

  /** Opens a TCP (or TLS) connection; rejects with the socket's error or ETIMEDOUT. */
  static connect(opts: RespConnectOptions): Promise<RespConnection> {
    return new Promise((resolve, reject) => {
      const socket = opts.tls
        ? tls.connect({ host: opts.host, port: opts.port, servername: net.isIP(opts.host) ? undefined : opts.host })
        : net.connect({ host: opts.host, port: opts.port });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new RespConnectionError(`no answer within ${opts.timeoutMs} ms`, 'ETIMEDOUT'));
      }, opts.timeoutMs);
      const onError = (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new RespConnectionError(err.message, err.code ?? 'ECONNREFUSED', { cause: err }));
      };
      socket.once('error', onError);
      socket.once(opts.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve(new RespConnection(socket, opts.timeoutMs));
      });
    });
  }

  /** Sends one command; resolves with its reply, rejects with RespReplyError or RespConnectionError. */
  command(args: readonly string[]): Promise<RespValue> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(new RespConnectionError(`no reply within ${this.timeoutMs} ms`, 'ETIMEDOUT')),
        this.timeoutMs,
      );
      this.pending.push({ resolve, reject, timer });
      this.socket.write(encodeCommand(args));
    });
  }

  /** Closes the connection (pending commands fail); resolves once the socket is closed. */
  close(): Promise<void> {
    if (this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end();
      setTimeout(() => this.socket.destroy(), this.timeoutMs).unref();
    });
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    let pos = 0;
    try {
      for (let reply = parseReply(this.buffer, pos); reply; reply = parseReply(this.buffer, pos)) {
        pos = reply.end;
        const waiter = this.pending.shift();
        if (!waiter) throw new RespConnectionError('a reply nobody asked for', 'EPROTO');
        clearTimeout(waiter.timer);
        if (reply.value instanceof RespReplyError) waiter.reject(reply.value);
        else waiter.resolve(reply.value);
      }
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.buffer = pos >= this.buffer.length ? Buffer.alloc(0) : this.buffer.subarray(pos);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const waiter of this.pending.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(err);
    }
    if (!this.socket.destroyed) this.socket.destroy();
  }
}
