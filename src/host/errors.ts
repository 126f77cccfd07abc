/** Errors the host layer raises, each with a stable machine-readable code and an HTTP-ish kind. */
export type HostErrorKind = 'invalid' | 'not-found' | 'conflict' | 'unavailable' | 'timeout' | 'internal';

export type HostErrorCode =
  | 'INVALID_REQUEST'
  | 'INVALID_NAME'
  | 'INVALID_PATH'
  | 'INVALID_CONFIG'
  | 'VM_NOT_FOUND'
  | 'VM_EXISTS'
  | 'IMAGE_NOT_FOUND'
  | 'INVALID_STATE'
  | 'VM_BUSY'
  | 'AGENT_UNAVAILABLE'
  | 'EXEC_ABORTED'
  | 'EXEC_TIMEOUT'
  | 'ENGINE_ERROR'
  | 'STORAGE_ERROR'
  /** Starting the VM would break the host memory budget (admission control). */
  | 'MEMORY_BUDGET';

const KIND: Record<HostErrorCode, HostErrorKind> = {
  INVALID_REQUEST: 'invalid',
  INVALID_NAME: 'invalid',
  INVALID_PATH: 'invalid',
  INVALID_CONFIG: 'invalid',
  VM_NOT_FOUND: 'not-found',
  IMAGE_NOT_FOUND: 'not-found',
  VM_EXISTS: 'conflict',
  INVALID_STATE: 'conflict',
  VM_BUSY: 'conflict',
  AGENT_UNAVAILABLE: 'conflict',
  EXEC_ABORTED: 'conflict',
  EXEC_TIMEOUT: 'timeout',
  ENGINE_ERROR: 'internal',
  STORAGE_ERROR: 'internal',
  MEMORY_BUDGET: 'conflict',
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
    case 'timeout':
      return 504;
    case 'internal':
      return 500;
  }
}
