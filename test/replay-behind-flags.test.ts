// `prewarm replay --interaction-feed api|import --refresh-behind login|never`: the defaults a
// deployment has, and each bad value or combination refused naming the flag.
import { describe, expect, it } from 'vitest';
import { behindFromFlags } from '../src/cli/commands/replay.ts';

describe('replay --interaction-feed / --refresh-behind', () => {
  it('defaults to what `prewarm serve` does: interactions through the API, behind sets refreshed at login', () => {
    expect(behindFromFlags({ interactionFeed: 'api' })).toEqual({ interactionFeed: 'api', refreshBehind: 'login' });
    expect(behindFromFlags({ interactionFeed: 'api', refreshBehind: 'never' })).toEqual({ interactionFeed: 'api', refreshBehind: 'never' });
    // Imported interactions are out of Redis's sight: nothing to refresh by default.
    expect(behindFromFlags({ interactionFeed: 'import' })).toEqual({ interactionFeed: 'import', refreshBehind: 'never' });
    expect(behindFromFlags({ interactionFeed: 'import', refreshBehind: 'never' })).toEqual({ interactionFeed: 'import', refreshBehind: 'never' });
  });

  it.each([
    [{ interactionFeed: 'csv' }, /--interaction-feed must be "api" or "import", not "csv"/],
    [{ interactionFeed: 'API' }, /--interaction-feed must be "api" or "import", not "API"/],
    [{ interactionFeed: 'api', refreshBehind: 'always' }, /--refresh-behind must be "login" or "never", not "always"/],
    [{ interactionFeed: 'api', refreshBehind: '' }, /--refresh-behind must be "login" or "never", not ""/],
    [{ interactionFeed: 'import', refreshBehind: 'login' }, /--refresh-behind login needs --interaction-feed api/],
  ])('refuses %j as bad input naming the flag', (flags, message) => {
    expect(() => behindFromFlags(flags)).toThrow(expect.objectContaining({ code: 'PREWARM_ERR_BAD_INPUT', message: expect.stringMatching(message) }));
  });
});
