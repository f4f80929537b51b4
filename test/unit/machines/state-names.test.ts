import { describe, expect, it } from 'vitest';
import { RouteStates as machineRouteStates } from '../../../machines/route.ts';
import { RouteStates as domainRouteStates } from '../../../src/domain/routing.ts';

describe('state names', () => {
  // machines/ may not import src/, so the route states are written twice; they must agree.
  it('the routing table uses exactly the route machine state names', () => {
    expect([...domainRouteStates]).toEqual([...machineRouteStates]);
  });
});
