import { describe, expect, it } from 'vitest';
import { formatPolicy, isHeld, parsePolicy } from '../src/planner/policy.ts';

describe('parsePolicy takes plain decimal arguments only', () => {
  it.each(['budget:0x10', 'budget:0b1', 'threshold: 0.5', 'coverage:Infinity', 'coverage:-0.5', 'budget:+5', 'budget:1_000'])('refuses %j', (text) => {
    expect(() => parsePolicy(text)).toThrow(expect.objectContaining({ code: 'PREWARM_ERR_BAD_POLICY' }));
  });

  it.each([
    ['budget:10', { kind: 'budget', n: 10 }],
    ['threshold:.5', { kind: 'threshold', p: 0.5 }],
    ['threshold:1e-7', { kind: 'threshold', p: 1e-7 }],
    ['coverage:0.8', { kind: 'coverage', target: 0.8 }],
    ['budget:1e3', { kind: 'budget', n: 1000 }],
  ])('accepts %j', (text, policy) => {
    expect(parsePolicy(text)).toEqual(policy);
    expect(parsePolicy(formatPolicy(parsePolicy(text)))).toEqual(policy);
  });

  it('names the policy in one line, escaped and cut short', () => {
    expect(() => parsePolicy(`budget:\n${'9'.repeat(200)}`)).toThrow(/^policy "budget:\\n9{50}/);
  });
});

describe('`,fixed` keeps a coverage or waste target open loop', () => {
  it.each([
    ['coverage:0.8,fixed', { kind: 'coverage', target: 0.8, fixed: true }],
    ['waste:0.5,fixed', { kind: 'waste', max: 0.5, fixed: true }],
  ])('accepts %j and writes it back the same', (text, policy) => {
    expect(parsePolicy(text)).toEqual(policy);
    expect(formatPolicy(parsePolicy(text))).toBe(text);
  });

  it.each(['budget:10,fixed', 'recent:3,fixed', 'all,fixed', 'coverage:0.8,fixed,fixed', 'coverage:0.8,open', 'coverage,fixed'])('refuses %j', (text) => {
    expect(() => parsePolicy(text)).toThrow(expect.objectContaining({ code: 'PREWARM_ERR_BAD_POLICY' }));
  });

  it('a held target is the default: no flag', () => {
    expect(parsePolicy('coverage:0.8')).toEqual({ kind: 'coverage', target: 0.8 });
    expect(isHeld(parsePolicy('coverage:0.8'))).toBe(true);
    expect(isHeld(parsePolicy('coverage:0.8,fixed'))).toBe(false);
    expect(isHeld(parsePolicy('budget:5'))).toBe(false);
  });
});

describe('a held target applied as a threshold, as runs record it', () => {
  it.each([
    ['threshold:0.0961,coverage:0.8412', { kind: 'threshold', p: 0.0961, held: { kind: 'coverage', target: 0.8412 } }],
    ['threshold:0.5,waste:0.35', { kind: 'threshold', p: 0.5, held: { kind: 'waste', target: 0.35 } }],
  ])('reads %j and writes it back the same', (text, policy) => {
    expect(parsePolicy(text)).toEqual(policy);
    expect(formatPolicy(parsePolicy(text))).toBe(text);
    // It selects as the threshold does: nothing is held on top of it.
    expect(isHeld(parsePolicy(text))).toBe(false);
  });

  it.each(['threshold:0.1,coverage:2', 'threshold:x,coverage:0.8', 'threshold:0.1,budget:5', 'budget:5,coverage:0.8', 'threshold:0.1,coverage:0.8,fixed'])('refuses %j', (text) => {
    expect(() => parsePolicy(text)).toThrow(expect.objectContaining({ code: 'PREWARM_ERR_BAD_POLICY' }));
  });
});
