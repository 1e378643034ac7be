/**
 * What `usernet --version` prints (and `usernet check` heads its report
 * with): usernet's version, which addon binary loads and the N-API version it
 * was built for, Node's version and ABI, and the kernel. The addon is located,
 * not loaded, so this works on a machine where it cannot load.
 */
import { existsSync, readFileSync } from 'node:fs';
import { release, machine } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { addonPath } from '../native/addon.js';

/** binding.gyp's NAPI_VERSION define (a test keeps the two equal). */
export const ADDON_NAPI_VERSION = 8;

/** The package root: the first directory up from this file with a package.json (src/cli or dist/src/cli). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

export function addonLine(): string {
  let file: string;
  try {
    file = addonPath();
  } catch (err) {
    return `addon: none found (${(err as Error).message.split('\n')[0]}): run npm install`;
  }
  const rel = relative(packageRoot(), file);
  const kind = rel.startsWith('prebuilds') ? 'prebuilt' : 'built from source';
  return `addon: ${rel} (${kind}, N-API ${ADDON_NAPI_VERSION})`;
}

export function versionLines(): string[] {
  return [
    `usernet ${packageVersion()}`,
    addonLine(),
    `node: ${process.version} (ABI ${process.versions.modules}, N-API ${process.versions.napi})`,
    `kernel: Linux ${release()} ${machine()}`,
  ];
}
