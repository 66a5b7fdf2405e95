import { EventEmitter } from 'node:events';

/** owned/shared: a local write of that kind committed; received: changes from peers committed. */
export type ChangeKind = 'owned' | 'shared' | 'received';

/** In-process notice that a write committed, so the publisher (and the change feed) wake without polling. */
export class ChangeSignal {
  private readonly emitter = new EventEmitter();
  /** `rows`: how many rows the write touched, as far as the writer knows (a hint, for batching). */
  notify(kind: ChangeKind, rows = 1): void {
    this.emitter.emit(kind, rows);
  }
  on(kind: ChangeKind, fn: (rows: number) => void): () => void {
    this.emitter.on(kind, fn);
    return () => this.emitter.off(kind, fn);
  }
}
