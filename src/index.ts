/**
 * The package's entry: `import { Network } from 'usernet'`. Everything
 * exported here is the library API (README "Library"); deeper modules are
 * not part of it and may change.
 */
export { Network } from './network.js';
export type {
  AttachNamespaceOptions,
  DropInfo,
  Endpoint,
  FlowClosedInfo,
  FlowInfo,
  ForwardEntry,
  ForwardSpec,
  GuestInfo,
  LogLevel,
  NetworkEvents,
  NetworkOptions,
  NetworkStats,
  PortDownInfo,
  PortInfo,
  PortKind,
  TapInfo,
} from './network.js';
export type { FlowProto } from '../stack/nat/flow-events.js';
export { ConfigError, NativeError, TapError, UsernetError } from './errors.js';
export { ForwardError } from './host/port-forwards.js';
