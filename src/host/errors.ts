/** Errors the host layer raises, each with a stable machine-readable code and an HTTP-ish kind. */
export type HostErrorKind = 'invalid' | 'forbidden' | 'not-found' | 'conflict' | 'unavailable' | 'timeout' | 'internal';

export type HostErrorCode =
  | 'INVALID_REQUEST'
  | 'INVALID_NAME'
  | 'INVALID_PATH'
  | 'INVALID_CONFIG'
  | 'PATH_NOT_ALLOWED'
  | 'VM_NOT_FOUND'
  | 'VM_EXISTS'
  | 'IMAGE_NOT_FOUND'
  | 'IMAGE_EXISTS'
  | 'IMAGE_IN_USE'
  | 'INVALID_STATE'
  | 'VM_BUSY'
  | 'NETWORK_NOT_FOUND'
  | 'NETWORK_EXISTS'
  | 'NETWORK_IN_USE'
  | 'PORT_IN_USE'
  | 'AGENT_UNAVAILABLE'
  | 'EXEC_ABORTED'
  | 'EXEC_TIMEOUT'
  | 'ENGINE_ERROR'
  | 'STORAGE_ERROR'
  | 'SNAPSHOT_NOT_FOUND'
  | 'SNAPSHOT_EXISTS'
  | 'BAD_STATE_FILE'

  /** Starting the VM would break the host memory budget (admission control). */
  | 'MEMORY_BUDGET';

const KIND: Record<HostErrorCode, HostErrorKind> = {
  INVALID_REQUEST: 'invalid',
  INVALID_NAME: 'invalid',
  INVALID_PATH: 'invalid',
  INVALID_CONFIG: 'invalid',
  PATH_NOT_ALLOWED: 'forbidden',
  VM_NOT_FOUND: 'not-found',
  IMAGE_NOT_FOUND: 'not-found',
  IMAGE_EXISTS: 'conflict',
  IMAGE_IN_USE: 'conflict',
  VM_EXISTS: 'conflict',
  INVALID_STATE: 'conflict',
  VM_BUSY: 'conflict',
  NETWORK_NOT_FOUND: 'not-found',
  NETWORK_EXISTS: 'conflict',
  NETWORK_IN_USE: 'conflict',
  PORT_IN_USE: 'conflict',
  AGENT_UNAVAILABLE: 'conflict',
  EXEC_ABORTED: 'conflict',
  EXEC_TIMEOUT: 'timeout',
  ENGINE_ERROR: 'internal',
  STORAGE_ERROR: 'internal',
  SNAPSHOT_NOT_FOUND: 'not-found',
  SNAPSHOT_EXISTS: 'conflict',
  BAD_STATE_FILE: 'invalid',
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
    case 'forbidden':
      return 403;
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
