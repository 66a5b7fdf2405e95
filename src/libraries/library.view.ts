import { z } from 'zod';
import { idValue } from '../library/http/json-values';

/** A library of the device as GET /libraries shows it (API.md "Libraries"). */
export const libraryViewSchema = z
  .object({
    libraryId: idValue,
    name: z.string(),
    open: z.boolean(),
    default: z.boolean(),
    /** The sync phase while open; `opening`, `closing` or `closed` otherwise. */
    phase: z.string(),
  })
  .strict();
export type LibraryView = z.infer<typeof libraryViewSchema>;

/** DELETE /libraries/:libraryId: whether the members were told. */
export const leftLibrarySchema = z.object({ announced: z.boolean() }).strict();
