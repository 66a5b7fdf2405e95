import { EventEmitter } from 'node:events';

/** owned/shared: a local write of that kind committed; received: changes from peers committed. */
export type ChangeKind = 'owned' | 'shared' | 'received';

/** In-process notice that a write committed, so the publisher (and the change feed) wake without polling. */
export class ChangeSignal {
  private readonly emitter = new EventEmitter();
  notify(kind: ChangeKind): void {
    this.emitter.emit(kind);
  }
  on(kind: ChangeKind, fn: () => void): () => void {
    this.emitter.on(kind, fn);
    return () => this.emitter.off(kind, fn);
  }
}
