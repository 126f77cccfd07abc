/** Errors the host layer raises, each with a stable machine-readable code and an HTTP-ish kind. */
export type HostErrorKind = 'invalid' | 'not-found' | 'conflict' | 'unavailable' | 'internal';

export type HostErrorCode =
  | 'INVALID_REQUEST'
  | 'INVALID_NAME'
  | 'INVALID_PATH'
  | 'INVALID_CONFIG'
  | 'VM_NOT_FOUND'
  | 'VM_EXISTS'
  | 'IMAGE_NOT_FOUND'
  | 'IMAGE_EXISTS'
  | 'IMAGE_IN_USE'
  | 'INVALID_STATE'
  | 'VM_BUSY'
  | 'ENGINE_ERROR'
  | 'STORAGE_ERROR';

const KIND: Record<HostErrorCode, HostErrorKind> = {
  INVALID_REQUEST: 'invalid',
  INVALID_NAME: 'invalid',
  INVALID_PATH: 'invalid',
  INVALID_CONFIG: 'invalid',
  VM_NOT_FOUND: 'not-found',
  IMAGE_NOT_FOUND: 'not-found',
  IMAGE_EXISTS: 'conflict',
  IMAGE_IN_USE: 'conflict',
  VM_EXISTS: 'conflict',
  INVALID_STATE: 'conflict',
  VM_BUSY: 'conflict',
  ENGINE_ERROR: 'internal',
  STORAGE_ERROR: 'internal',
};

export class HostError extends Error {
  readonly kind: HostErrorKind;
  constructor(
    readonly code: HostErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'HostError';
    this.kind = KIND[code];
  }
}

export function httpStatusFor(kind: HostErrorKind): number {
  switch (kind) {
    case 'invalid':
      return 400;
    case 'not-found':
      return 404;
    case 'conflict':
      return 409;
    case 'unavailable':
      return 503;
    case 'internal':
      return 500;
  }
}
