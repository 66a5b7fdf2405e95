import { AsyncLocalStorage } from 'node:async_hooks';
import { ConsoleLogger, LogLevel } from '@nestjs/common';

/**
 * What a log line is about, carried through async work: the library (a library's app, engine and
 * HTTP requests run inside it) and the HTTP request.
 */
export interface LogContext {
  libraryId?: string;
  requestId?: string;
}
export const logContext = new AsyncLocalStorage<LogContext>();

/** Runs fn with these fields added to the current log context. */
export function withLogContext<T>(fields: LogContext, fn: () => T): T {
  return logContext.run({ ...logContext.getStore(), ...fields }, fn);
}

export type LogFormat = 'json' | 'text';

/** The levels LOG_LEVEL names, from the most severe up to it. */
export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];
export function levelsUpTo(level: LogLevel): LogLevel[] {
  return LOG_LEVELS.slice(0, LOG_LEVELS.indexOf(level) + 1) as LogLevel[];
}

/**
 * The device's logger: JSON lines (one object per line: level, time, message, context, deviceId,
 * libraryId, requestId) or text for a person, with the device and library ids on every line. The
 * library comes from the log context (null for the device's own work, such as start-up).
 */
export class DeviceLogger extends ConsoleLogger {
  constructor(
    private readonly device: { id: string; name: string },
    format: LogFormat,
    levels: LogLevel[],
  ) {
    super(
      format === 'json'
        ? { json: true, colors: false, compact: true, logLevels: levels }
        : { json: false, colors: !!process.stdout.isTTY, logLevels: levels, prefix: `device ${device.name}` },
    );
  }

  protected override getJsonLogObject(
    message: unknown,
    options: { context: string; logLevel: LogLevel; writeStreamType?: 'stdout' | 'stderr'; errorStack?: unknown },
  ): ReturnType<ConsoleLogger['getJsonLogObject']> {
    const ctx = logContext.getStore();
    const ids: Record<string, unknown> = {
      deviceId: this.device.id,
      libraryId: ctx?.libraryId ?? null,
      ...(ctx?.requestId ? { requestId: ctx.requestId } : {}),
    };
    return Object.assign(super.getJsonLogObject(message, options), ids);
  }

  protected override formatPid(pid: number): string {
    const ctx = logContext.getStore();
    const ids = [`device ${this.device.id}`];
    if (ctx?.libraryId) ids.push(`library ${ctx.libraryId}`);
    if (ctx?.requestId) ids.push(`request ${ctx.requestId}`);
    return `[${this.device.name}] ${pid} ${ids.join(' ')} - `;
  }
}
