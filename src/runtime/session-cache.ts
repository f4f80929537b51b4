/**
 * Session specs by revision id, generated from the stored revision; revisions never change
 * once written, so each is read from the store once.
 */

import { FlotillaError } from '../domain/errors.ts';
import type { ModelRevisionSpec } from '../domain/revision.ts';
import type { SessionSpec } from '../domain/session.ts';
import { generateSession } from '../session-generators/index.ts';
import type { RevisionRecord, Store } from '../store/store.ts';

export class SessionCache {
  private readonly sessions = new Map<string, SessionSpec>();
  private readonly revisions = new Map<string, RevisionRecord>();

  constructor(private readonly store: Pick<Store, 'getRevision' | 'getRevisions'>) {}

  /**
   * Reads the revisions not cached yet in one query and generates their sessions (restore:
   * one read for the fleet instead of one per deployment). A revision that does not exist is
   * left out; `sessionFor` reports it.
   */
  async prefetch(revisionIds: Iterable<string>): Promise<void> {
    const missing = [...new Set(revisionIds)].filter((id) => !this.sessions.has(id));
    if (missing.length === 0) return;
    for (const rev of await this.store.getRevisions(missing)) {
      this.revisions.set(rev.id, rev);
      this.sessions.set(rev.id, sessionOf(rev));
    }
  }

  /** The cached session of a revision, if generated already. */
  cached(revisionId: string): SessionSpec | undefined {
    return this.sessions.get(revisionId);
  }

  set(revisionId: string, session: SessionSpec): void {
    this.sessions.set(revisionId, session);
  }

  /** The session of a revision, generated from the stored revision when not cached. */
  async sessionFor(revisionId: string, opts: { regenerate?: boolean } = {}): Promise<SessionSpec> {
    const cached = this.sessions.get(revisionId);
    if (cached && !opts.regenerate) return cached;
    const rev = await this.revision(revisionId);
    if (!rev) throw new FlotillaError('not_found', `revision ${revisionId} not found`);
    const session = sessionOf(rev);
    this.sessions.set(revisionId, session);
    return session;
  }

  async revision(id: string): Promise<RevisionRecord | null> {
    const cached = this.revisions.get(id);
    if (cached) return cached;
    const rev = await this.store.getRevision(id);
    if (rev) this.revisions.set(id, rev);
    return rev;
  }
}

/** The session a stored revision runs, generated again from its spec. */
function sessionOf(rev: RevisionRecord): SessionSpec {
  // `declared` comes from the request, not the revision spec: keep what was stored.
  const stored = rev.session as SessionSpec | null | undefined;
  return withDeclared(generateSession(rev.spec as ModelRevisionSpec), stored?.declared);
}

/** A session with the resource slots the operator declared (the rest are best effort). */
export function withDeclared(s: SessionSpec, declared: SessionSpec['declared']): SessionSpec {
  return declared ? { ...s, declared } : s;
}
