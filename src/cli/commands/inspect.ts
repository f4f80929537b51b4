/** `flotilla inspect [NAME]`: prints the inspector's URL (of one deployment with NAME). */

import { COMMON_HELP, enc, parseCommand, usageError, withClient } from '../args.ts';
import { parseClientConfig } from '../client-config.ts';

const HELP = `usage: flotilla inspect [name or id] [options]

Prints the URL of the inspector (the fleet view, or one deployment's view). With a name, the
deployment is looked up first, so a typo fails here rather than in the browser. The token is
never put in the URL: the page asks for it once.

${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommand('inspect', HELP, argv, {});
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length > 1) return usageError('inspect', 'give at most one deployment');
  const name = positionals[0];
  return withClient('inspect', values, async (client) => {
    const { api } = parseClientConfig({ api: values.api, token: values.token });
    let url = `${api}/inspector`;
    if (name !== undefined) {
      const d = await client.get<{ id: string; name: string }>(`/v1/deployments/${enc(name)}`);
      url = `${api}/inspector/deployments/${enc(d.name)}`;
    }
    if (values.json) console.log(JSON.stringify({ url }));
    else console.log(url);
    return 0;
  });
}
