/** Exit codes shared by every command (documented in the README). */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  notFound: 3,
  interrupted: 130,
} as const;

/** Base class: a message meant for the user, one line, with advice when there is some. */
export class InvoicesError extends Error {
  readonly exitCode: number = ExitCode.failure;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad flags, arguments or input data: exit 2. */
export class UsageError extends InvoicesError {
  override readonly exitCode = ExitCode.usage;
}

/** The thing asked for does not exist: exit 3. */
export class NotFoundError extends InvoicesError {
  override readonly exitCode = ExitCode.notFound;
}

/** Configuration that cannot work (bad URL, unreadable config file): exit 2. */
export class ConfigError extends InvoicesError {
  override readonly exitCode = ExitCode.usage;
}

/** The database could not be reached or refused us: exit 1. */
export class DatabaseError extends InvoicesError {}

/** The cache (Redis) could not be reached or answered with an error: exit 1 when it is required. */
export class CacheError extends InvoicesError {}

/** Work stopped by Ctrl-C or SIGTERM after leaving a consistent state: exit 130. */
export class InterruptedError extends InvoicesError {
  override readonly exitCode = ExitCode.interrupted;
}
