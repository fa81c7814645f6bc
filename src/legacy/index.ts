/**
 * TaskGrid+ compatibility: TaskGrid+ programs (clients, workers, dashboards) speaking its
 * `{"type": ..., "data": ...}` JSON over UDP keep working against a TaskGrid grid, on the same
 * ports as protocol v1. docs/PROTOCOL.md ("TaskGrid+ messages") says how each message maps.
 */
export {
  LEGACY_DISPATCHER_DEFAULTS,
  LegacyDispatcher,
  type LegacyDispatcherCore,
  type LegacyDispatcherOptions,
  type LegacyStoreView,
  type LegacyTaskSender,
} from './dispatcher-adapter.ts';
export {
  LegacyNameservice,
  type LegacyNameserviceOptions,
  type LegacyRegistry,
} from './nameservice-adapter.ts';
export { legacyPolicy, type LegacyCounters, type LegacyPolicy } from './server.ts';
export { isLegacyInstance, LEGACY, LegacyText, LegacyType } from './wire.ts';
