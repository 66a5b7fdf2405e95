import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { Response } from 'express';
import { z } from 'zod';
import { ConflictError, DomainError, InvalidInputError, JoinError, NotFoundError, NotOwnerError } from '@lib/sync';

const REASON: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** The body of every error answer (docs/http.md "Errors"). */
export const errorBodySchema = z
  .object({ statusCode: z.number().int(), error: z.string(), message: z.string() })
  .strict();

export function errorBody(statusCode: number, message: string): { statusCode: number; error: string; message: string } {
  return { statusCode, error: REASON[statusCode] ?? 'Error', message };
}

/** The one place where domain errors become HTTP answers (docs/http.md error shape). */
@Catch()
export class HttpErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger('HTTP');

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    const [status, message] = this.classify(exception);
    if (status >= 500) this.logger.error((exception as Error)?.stack ?? String(exception));
    res.status(status).json(errorBody(status, message));
  }

  private classify(e: unknown): [number, string] {
    if (e instanceof InvalidInputError) return [400, e.message];
    if (e instanceof NotOwnerError) return [403, e.message];
    if (e instanceof NotFoundError) return [404, e.message];
    if (e instanceof ConflictError) return [409, e.message];
    if (e instanceof DomainError) return [400, e.message];
    if (e instanceof JoinError) return [400, e.message.replace(/^LIBRARY_INVITE: /, 'invite: ')];
    if (e instanceof HttpException) {
      const body = e.getResponse();
      const msg = typeof body === 'string' ? body : (body as { message?: unknown }).message;
      return [e.getStatus(), Array.isArray(msg) ? msg.join('; ') : String(msg ?? e.message)];
    }
    return [500, 'internal error'];
  }
}
