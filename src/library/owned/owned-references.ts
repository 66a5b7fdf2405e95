import { NotFoundError, NotOwnerError, OwnedModel, OwnedRow, OwnedWrite } from '@lib/sync';
import { findOwnedRows } from './owned-create';

/**
 * An owned row may only point at rows of its own device (an entry at this device's location, a
 * location at this device's volume): the reference is unknown (404) or someone else's (403).
 */

export class ReferenceNotFoundError extends NotFoundError {
  constructor(
    readonly field: string,
    model: string,
    id: string,
  ) {
    super(model, id);
    this.message = `${field}: ${model} ${id} not found`;
  }
}

export class ForeignReferenceError extends NotOwnerError {
  constructor(
    readonly field: string,
    model: string,
    id: string,
    owner: string,
  ) {
    super(model, id, owner);
    this.message = `${field}: ${model} ${id} is owned by device ${owner}; only this device's ${model} may be referenced here`;
  }
}

function checkReference(
  w: OwnedWrite,
  field: string,
  model: OwnedModel,
  id: string,
  row: OwnedRow | null | undefined,
): OwnedRow {
  if (!row) throw new ReferenceNotFoundError(field, model.name, id);
  if (row.device_id !== w.deviceId) throw new ForeignReferenceError(field, model.name, id, row.device_id);
  return row;
}

/** The referenced row, which must exist and be this device's; locked until the write commits. */
export async function requireOwnReference(
  w: OwnedWrite,
  field: string,
  model: OwnedModel,
  id: string,
): Promise<OwnedRow> {
  return checkReference(w, field, model, id, await w.find(model, id));
}

/** Checks many references in one query; `fieldOf` names the first item that uses each id. */
export async function requireOwnReferences(
  w: OwnedWrite,
  model: OwnedModel,
  ids: ReadonlySet<string>,
  fieldOf: (id: string) => string,
): Promise<void> {
  const rows = await findOwnedRows(w, model, [...ids]);
  for (const id of ids) checkReference(w, fieldOf(id), model, id, rows.get(id));
}
