/** Names and texts for the negative errnos the native host sockets return. */
import { getSystemErrorMap, getSystemErrorName } from 'node:util';

const errorMap = getSystemErrorMap();

/** 'ECONNREFUSED' for -111. */
export function errnoName(negErrno: number): string {
  try {
    return getSystemErrorName(negErrno);
  } catch {
    return `E${-negErrno}`;
  }
}

/** "connection refused (ECONNREFUSED)". */
export function errnoText(negErrno: number): string {
  const e = errorMap.get(negErrno);
  return e === undefined ? errnoName(negErrno) : `${e[1]} (${e[0]})`;
}

export const EAGAIN = -11;
export const EINPROGRESS = -115;
