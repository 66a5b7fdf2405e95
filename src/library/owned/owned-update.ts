import { OwnedModel, OwnedRow, OwnedWrite } from '@lib/sync';
import { ContentColumns, sameContent } from './owned-create';

/**
 * A PATCH of one of this device's rows: the row must exist (404) and be ours (403); the given
 * columns replace the stored ones. A PATCH that changes nothing writes nothing (no new version to
 * broadcast). `check` sees the merged row before it is written.
 */
export async function updateOwnedRow(
  w: OwnedWrite,
  model: OwnedModel,
  id: string,
  changes: Record<string, unknown>,
  columns: ContentColumns,
  check?: (next: Record<string, unknown>, current: OwnedRow) => Promise<void> | void,
): Promise<OwnedRow> {
  const current = await w.requireOwn(model, id);
  const next: Record<string, unknown> = { id };
  for (const c of Object.keys(columns)) next[c] = c in changes ? changes[c] : current[c];
  await check?.(next, current);
  if (sameContent(current, next, columns)) return current;
  const [stored] = await w.upsert(model, [next]);
  return stored;
}
