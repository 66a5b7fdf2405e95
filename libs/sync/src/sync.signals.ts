import { EventEmitter } from 'node:events';

export type ChangeKind = 'owned' | 'shared';

/** In-process notice that a local write committed, so the publisher wakes without polling. */
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
