import { z } from 'zod';
import { text } from '../http/validation';

/** PUT /entries/:id/metadata: the fields given are set, the others left as they are. */
export const putMetadataInput = z
  .object({
    favorite: z.boolean(),
    hidden: z.boolean(),
    notes: text(100_000).nullable(),
  })
  .partial()
  .strict();
export type PutMetadataInput = z.output<typeof putMetadataInput>;
