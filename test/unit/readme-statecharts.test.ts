/** The README's statechart diagrams are the current output of `flotilla machines`. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { exportStatechart, MACHINE_NAMES } from '../../src/inspector/statechart.ts';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

function diagram(name: string): string | null {
  const marker = `<!-- flotilla machines ${name} --format mermaid -->\n\`\`\`mermaid\n`;
  const start = readme.indexOf(marker);
  if (start < 0) return null;
  const body = start + marker.length;
  const end = readme.indexOf('```', body);
  return end < 0 ? null : readme.slice(body, end);
}

describe('README statecharts', () => {
  for (const name of MACHINE_NAMES) {
    it(`the README's ${name} diagram equals \`flotilla machines ${name} --format mermaid\``, () => {
      const inReadme = diagram(name);
      expect(inReadme, `README.md has no "flotilla machines ${name}" diagram`).not.toBeNull();
      expect(inReadme).toBe(exportStatechart(name, 'mermaid'));
    });
  }
});
