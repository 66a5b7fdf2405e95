import { Injectable } from '@nestjs/common';
import { sql } from 'kysely';
import { Db, InjectDb } from '@lib/db';
import { SyncEngine } from '@lib/sync';

/** A database that has not answered by then counts as down (a busy PGlite queues the probe). */
const DATABASE_PROBE_TIMEOUT_MS = 5000;

export interface Health {
  healthy: boolean;
  body: {
    status: 'ok' | 'unavailable';
    database: string;
    sync: string;
    nats: 'disabled' | 'connected' | 'disconnected';
  };
}

/**
 * GET /health: healthy while the device's database answers. NATS is reported but never makes the
 * device unhealthy: an unreachable NATS only delays sync.
 */
@Injectable()
export class HealthService {
  constructor(
    @InjectDb() private readonly db: Db,
    private readonly engine: SyncEngine,
  ) {}

  async check(): Promise<Health> {
    const database = await this.probeDatabase();
    const body = {
      status: database === 'ok' ? ('ok' as const) : ('unavailable' as const),
      database,
      sync: this.engine.phase,
      nats: this.natsState(),
    };
    return { healthy: database === 'ok', body };
  }

  private async probeDatabase(): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`no answer within ${DATABASE_PROBE_TIMEOUT_MS} ms`), DATABASE_PROBE_TIMEOUT_MS);
    });
    const probe = sql`select 1`.execute(this.db).then(
      () => 'ok',
      (e: unknown) => `error: ${(e as Error)?.message ?? String(e)}`,
    );
    try {
      return await Promise.race([probe, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private natsState(): 'disabled' | 'connected' | 'disconnected' {
    if (this.engine.phase === 'disabled') return 'disabled';
    return this.engine.natsConnected ? 'connected' : 'disconnected';
  }
}
