import { Controller, Get, Header, Inject } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { SyncMetrics, SyncStatusService } from '@lib/sync';
import { ApiText } from '../library/http/openapi';

const SYNC_PHASES = ['uninitialized', 'backfilling', 'catching_up', 'ready', 'disabled', 'removed'] as const;

/** Prometheus exposition of the sync engine's metrics (docs/design.md "Observability"). */
@ApiTags('device')
@Controller()
export class MetricsController {
  constructor(
    @Inject(SyncMetrics) private readonly metrics: SyncMetrics,
    @Inject(SyncStatusService) private readonly status: SyncStatusService,
  ) {}

  @Get('metrics')
  @ApiOperation({ summary: "this library's metrics (GET /metrics without the prefix has every library's)" })
  @ApiText('text/plain; version=0.0.4', 'Prometheus text format')
  @Header('content-type', 'text/plain; version=0.0.4; charset=utf-8')
  async scrape(): Promise<string> {
    // per-peer gauges are read from the devices table at scrape time
    const s = await this.status.status();
    this.metrics.logSize.set(s.sharedLogSize);
    for (const phase of SYNC_PHASES) this.metrics.phase.set({ phase }, s.phase === phase ? 1 : 0);
    this.metrics.deadLetters.set(s.deadLetters);
    if (s.backfill) {
      this.metrics.backfillDone.set(s.backfill.items.reduce((n, i) => n + i.done, 0));
      this.metrics.backfillTotal.set(s.backfill.items.reduce((n, i) => n + (i.total ?? i.done), 0));
    }
    for (const p of s.peers) {
      this.metrics.peerPending.set({ peer: p.deviceId }, p.pendingToPeer);
      this.metrics.peerOnline.set({ peer: p.deviceId }, p.online ? 1 : 0);
      if (p.lastSeenAt) this.metrics.peerLagMs.set({ peer: p.deviceId }, Date.now() - Date.parse(p.lastSeenAt));
    }
    return this.metrics.registry.metrics();
  }
}
