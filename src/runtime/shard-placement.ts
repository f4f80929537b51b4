/**
 * Which shard actor holds each deployment actor (docs/xstate-rules.md rule 2). XState copies a
 * parent's child list on every spawn and stop of a child, so a parent of k children costs about
 * k²/2 copies to empty: closing a tree of N deployments costs about N·k/2 plus S²/2 for the S
 * shards under the coordinator. No shard holds more than MAX_DEPLOYMENTS_PER_SHARD, at any
 * fleet size and at any time (not only after a restore): a new deployment goes to a shard with
 * room, and a new shard is opened when none has any. Closing then costs at most 16 copies per
 * deployment, plus the root's S²/2 = N²/2048 (below N·√N/2 up to about four million deployments).
 *
 * The placement lives in the runtime, not in the coordinator's context: the machines stay
 * pure, the coordinator is told the shard with each add and remove, and a change costs O(1)
 * whatever the fleet's size (no per-change copy of a 10,000-entry map).
 */

/** Most deployments one shard holds. */
export const MAX_DEPLOYMENTS_PER_SHARD = 32;

export class ShardPlacement {
  private readonly shardOfId = new Map<string, number>();
  private readonly sizes: number[] = [];
  /** Shards that may have room, the lowest on top; a full one is dropped when it surfaces. */
  private readonly withRoom: number[] = [];
  private readonly listed: boolean[] = [];

  /**
   * `shards` empty shards to start with (the configured count); `deploymentIds` are spread
   * over enough shards that none holds more than `max` (a restore: round robin, so every shard
   * keeps about the same room for what is created next).
   */
  constructor(
    shards: number,
    deploymentIds: readonly string[] = [],
    private readonly max = MAX_DEPLOYMENTS_PER_SHARD,
  ) {
    const count = Math.max(1, Math.floor(shards), Math.ceil(deploymentIds.length / max));
    for (let i = 0; i < count; i++) this.sizes.push(0);
    let next = 0;
    for (const id of deploymentIds) this.put(id, next++ % count);
    for (let i = count - 1; i >= 0; i--) this.list(i);
  }

  /** Shards in use (the coordinator's shard actors: indexes 0 .. count - 1). */
  get count(): number {
    return this.sizes.length;
  }

  /** Deployments on shard `index`. */
  sizeOf(index: number): number {
    return this.sizes[index] ?? 0;
  }

  /** The shard holding `deploymentId`, if placed. */
  shardOf(deploymentId: string): number | undefined {
    return this.shardOfId.get(deploymentId);
  }

  /** The shard of `deploymentId`: where it already is, else one with room (a new one if none). */
  place(deploymentId: string): number {
    const known = this.shardOfId.get(deploymentId);
    if (known !== undefined) return known;
    let shard: number | undefined;
    while (shard === undefined) {
      const top = this.withRoom.at(-1);
      if (top === undefined) {
        shard = this.sizes.push(0) - 1;
        this.list(shard);
      } else if ((this.sizes[top] as number) < this.max) {
        shard = top;
      } else {
        this.withRoom.pop();
        this.listed[top] = false;
      }
    }
    this.put(deploymentId, shard);
    return shard;
  }

  /** `deploymentId` left its shard; returns the shard it was on. */
  release(deploymentId: string): number | undefined {
    const shard = this.shardOfId.get(deploymentId);
    if (shard === undefined) return undefined;
    this.shardOfId.delete(deploymentId);
    this.sizes[shard] = (this.sizes[shard] as number) - 1;
    this.list(shard);
    return shard;
  }

  private put(id: string, shard: number): void {
    this.shardOfId.set(id, shard);
    this.sizes[shard] = (this.sizes[shard] as number) + 1;
  }

  private list(shard: number): void {
    if (this.listed[shard] || (this.sizes[shard] as number) >= this.max) return;
    this.listed[shard] = true;
    this.withRoom.push(shard);
  }
}
