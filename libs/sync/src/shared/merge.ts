import type { SharedModel } from '../models/registry';

/**
 * Field-wise last-writer-wins merge of shared records, pure. The state is a join-semilattice:
 * every field keeps the value with the greatest HLC, a delete keeps the greatest delete stamp and
 * wins over every edit. Applying changes in any order, any number of times, gives the same state.
 */
export interface SharedState {
  values: Record<string, unknown>;
  clocks: Record<string, string>;
  deletedHlc: string | null;
  /** Greatest stamp merged into this record. */
  updatedHlc: string;
}

export interface SharedChange {
  hlc: string;
  op: 'set' | 'delete';
  fields: Record<string, unknown>;
}

export function initialState(model: SharedModel): SharedState {
  const values: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(model.fields)) values[name] = f.initial;
  return { values, clocks: {}, deletedHlc: null, updatedHlc: '' };
}

const later = (a: string | null | undefined, b: string): boolean => a == null || b > a;

export function applyChange(state: SharedState, change: SharedChange): SharedState {
  const next: SharedState = {
    values: { ...state.values },
    clocks: { ...state.clocks },
    deletedHlc: state.deletedHlc,
    updatedHlc: later(state.updatedHlc, change.hlc) ? change.hlc : state.updatedHlc,
  };
  if (change.op === 'delete') {
    if (later(next.deletedHlc, change.hlc)) next.deletedHlc = change.hlc;
    return next;
  }
  for (const [field, value] of Object.entries(change.fields)) {
    if (later(next.clocks[field], change.hlc)) {
      next.values[field] = value;
      next.clocks[field] = change.hlc;
    }
  }
  return next;
}

/** Merges two whole states (a state transfer): the same result as applying both change sets. */
export function mergeStates(a: SharedState, b: SharedState): SharedState {
  const next: SharedState = {
    values: { ...a.values },
    clocks: { ...a.clocks },
    deletedHlc: a.deletedHlc,
    updatedHlc: b.updatedHlc > a.updatedHlc ? b.updatedHlc : a.updatedHlc,
  };
  if (b.deletedHlc !== null && later(a.deletedHlc, b.deletedHlc)) next.deletedHlc = b.deletedHlc;
  for (const [field, clock] of Object.entries(b.clocks)) {
    if (later(next.clocks[field], clock)) {
      next.values[field] = b.values[field];
      next.clocks[field] = clock;
    }
  }
  return next;
}

/** Whether applying `change` to `state` would alter it (a duplicate or an older edit would not). */
export function changes(state: SharedState, change: SharedChange): boolean {
  if (change.op === 'delete') return later(state.deletedHlc, change.hlc);
  if (later(state.updatedHlc, change.hlc)) return true;
  return Object.keys(change.fields).some((f) => later(state.clocks[f], change.hlc));
}
