/**
 * Protocol and transport limits with their defaults, in one place. Components and tests pass
 * overrides as options; nothing reads NODE_ENV.
 */

export const PROTOCOL_VERSION = 1;

export const LIMITS = {
  /** Largest datagram a component sends, headers and signature included (below common MTUs). */
  datagramBudget: 1200,
  /**
   * The same for a socket bound to loopback (local mode: every component on one machine):
   * loopback carries 64 KiB datagrams whole, and 50 times fewer datagrams cost measurably less
   * CPU per task (docs/PERFORMANCE.md, "Datagrams on loopback").
   */
  loopbackDatagramBudget: 60_000,
  /** Smallest datagram budget accepted by configuration. */
  minDatagramBudget: 256,
  /** Largest datagram budget accepted by configuration (the UDP/IPv4 payload limit). */
  maxDatagramBudget: 65_507,
  /** Largest message (encoded envelope) a component sends or accepts. */
  maxMessageBytes: 1024 * 1024,
  /** Most messages of one request batch (tasks in a SUBMIT, TASK or RESULT). */
  maxBatch: 10_000,
} as const;

export const TIMING = {
  /** Retransmission timeout before any round trip was measured (RFC 6298 says 1 s; a LAN is faster). */
  initialRtoMs: 200,
  /** Floor of the adaptive retransmission timeout. */
  minRtoMs: 10,
  /** Ceiling of the retransmission timeout after backoff. */
  maxRtoMs: 2_000,
  /**
   * Requests in flight to one peer at first; the window then adapts (slow start and additive
   * increase on replies, halved on a retransmission timeout), between these bounds. Requests
   * beyond it wait in a local queue (their deadline runs from the call).
   */
  initialWindow: 128,
  /** Floor of the per-peer request window. */
  minWindow: 32,
  /** Ceiling of the per-peer request window. */
  maxWindow: 1024,
  /** Default deadline of a request. */
  requestTimeoutMs: 10_000,
  /** Fraction of random jitter added to each retransmission delay (0.25 = up to +25%). */
  jitter: 0.25,
  /** How long a response stays in the duplicate cache. */
  dedupTtlMs: 60_000,
  /** Most responses kept in the duplicate cache. */
  dedupMaxEntries: 100_000,
  /** A reassembly with no new fragment for this long is dropped. */
  reassemblyTtlMs: 15_000,
  /** Most messages being reassembled at once. */
  reassemblyMaxMessages: 256,
  /** Most bytes held by partial messages at once. */
  reassemblyMaxBytes: 32 * 1024 * 1024,
  /** Fragments in flight per outgoing large message before an acknowledgement is needed. */
  fragmentWindow: 256,
  /** Receiver acknowledges a large message's fragments after this many new ones. */
  fragmentAckEvery: 32,
  /** Signed datagrams older or newer than this (by their timestamp) are dropped as replays. */
  authWindowMs: 30_000,
  /** Most datagram signatures remembered to drop exact replays inside the window. */
  replayCacheEntries: 200_000,
} as const;
