import type { JetStreamTransport } from '../transport/jetstream.transport';
import { PEER_RPC, PeerMethod, PeerRpc, WatermarksReply } from './protocol';

/**
 * The peer protocol's client: one typed call per method, over the device's transport. A request
 * fails on timeout, when nobody answers, on an error reply, and at once when NATS disconnects.
 */
export class PeerClient {
  constructor(private readonly transport: JetStreamTransport) {}

  /** One request to one peer; timeoutMs defaults to the transport's (15 s). */
  call<M extends PeerMethod>(
    peer: string,
    method: M,
    request: PeerRpc[M]['request'],
    timeoutMs?: number,
  ): Promise<PeerRpc[M]['reply']> {
    return this.transport.request<PeerRpc[M]['reply']>(
      this.transport.subjects.rpc(peer, PEER_RPC[method]),
      request,
      timeoutMs,
    );
  }

  watermarks(peer: string): Promise<WatermarksReply> {
    return this.call(peer, 'watermarks', {});
  }

  ownedPage(peer: string, request: PeerRpc['ownedPage']['request'], timeoutMs?: number) {
    return this.call(peer, 'ownedPage', request, timeoutMs);
  }

  ownedCopyPage(peer: string, request: PeerRpc['ownedCopyPage']['request'], timeoutMs?: number) {
    return this.call(peer, 'ownedCopyPage', request, timeoutMs);
  }

  sharedChanges(peer: string, request: PeerRpc['sharedChanges']['request']) {
    return this.call(peer, 'sharedChanges', request);
  }

  snapshot(peer: string, request: PeerRpc['snapshot']['request']) {
    return this.call(peer, 'snapshot', request);
  }

  rangesBuckets(peer: string, request: PeerRpc['rangesBuckets']['request']) {
    return this.call(peer, 'rangesBuckets', request);
  }

  rangesRows(peer: string, request: PeerRpc['rangesRows']['request']) {
    return this.call(peer, 'rangesRows', request);
  }

  /** The watermarks of every device that answers within windowMs (ourselves included). */
  discover(windowMs = 1500): Promise<WatermarksReply[]> {
    return this.transport.gather<WatermarksReply>(this.transport.subjects.rpcAll(PEER_RPC.watermarks), {}, windowMs);
  }
}
