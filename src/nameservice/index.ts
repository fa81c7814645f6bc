/**
 * The nameservice and the two agents components use to talk to it: Registration (keep an
 * instance registered everywhere) and Directory (a pushed, merged view of every instance),
 * plus lookupOnce for one-off questions such as "where is the dispatcher?".
 */
export { Nameservice, NAMESERVICE_DEFAULTS } from './nameservice.ts';
export type { NameserviceOptions, NameserviceStats } from './nameservice.ts';
export { Registration, REGISTRATION_DEFAULTS } from './registration.ts';
export type {
  InstanceSpec,
  RegistrationOptions,
  RegistrationStatus,
  RegistrationUpdate,
} from './registration.ts';
export { Directory, DIRECTORY_DEFAULTS, lookupOnce } from './directory.ts';
export type {
  DirectoryChange,
  DirectoryOptions,
  DirectorySourceStatus,
  InstanceFilter,
} from './directory.ts';
