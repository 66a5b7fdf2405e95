/**
 * SQL text for statements that run inside the apply functions (migration apply_functions), where
 * only the payload is a parameter: names come from the model registry, literals are quoted here.
 */

/** A quoted identifier. */
export const ident = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/** A quoted literal. */
export const literal = (text: string): string => `'${text.replace(/'/g, "''")}'`;
