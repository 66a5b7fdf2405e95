import { Controller, Get, Header, Inject } from '@nestjs/common';
import { SyncMetrics, SyncStatusService } from '@lib/sync';

/** Prometheus exposition of the sync engine's metrics (docs/design.md "Observability"). */
@Controller()
export class MetricsController {
  constructor(
    @Inject(SyncMetrics) private readonly metrics: SyncMetrics,
    @Inject(SyncStatusService) private readonly status: SyncStatusService,
  ) {}

  @Get('metrics')
  @Header('content-type', 'text/plain; version=0.0.4; charset=utf-8')
  async scrape(): Promise<string> {
    // per-peer gauges are read from the devices table at scrape time
    const s = await this.status.status();
    this.metrics.logSize.set(s.sharedLogSize);
    for (const p of s.peers) {
      this.metrics.peerPending.set({ peer: p.deviceId }, p.pendingToPeer);
      this.metrics.peerOnline.set({ peer: p.deviceId }, p.online ? 1 : 0);
      if (p.lastSeenAt) this.metrics.peerLagMs.set({ peer: p.deviceId }, Date.now() - Date.parse(p.lastSeenAt));
    }
    return this.metrics.registry.metrics();
  }
}
