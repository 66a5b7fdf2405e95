/** Domain errors of the sync engine and the library built on it; mapped to HTTP in one place. */
export class DomainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}
/** Input that breaks a rule (400); `field` names the offending field. */
export class InvalidInputError extends DomainError {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`${field}: ${detail}`);
  }
}
/** A write to a row that another device owns (403). */
export class NotOwnerError extends DomainError {
  constructor(
    readonly model: string,
    readonly id: string,
    readonly owner: string,
  ) {
    super(`${model} ${id} is owned by device ${owner}; only its owner may change it`);
  }
}
export class NotFoundError extends DomainError {
  constructor(
    readonly model: string,
    readonly id: string,
  ) {
    super(`${model} ${id} not found`);
  }
}
/** A create whose id exists with another owner or other content, or was deleted (409). */
export class ConflictError extends DomainError {}
/** A remote clock stamp too far ahead of our wall clock: held, not applied. */
export class ClockDriftError extends DomainError {
  constructor(
    readonly stamp: string,
    readonly aheadMs: number,
  ) {
    super(`clock stamp ${stamp} is ${aheadMs} ms ahead of the local clock`);
  }
}
/** A received message that breaks a rule (forged owner, bad field): dead-lettered, never applied. */
export class RejectedMessageError extends DomainError {
  constructor(
    readonly reason: string,
    detail: string,
  ) {
    super(`${reason}: ${detail}`);
  }
}
