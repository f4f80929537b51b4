import { describe, expect, it } from 'vitest';
import { parseMemory } from '../../src/domain/revision.ts';
import { splitCommand } from '../../src/revision/index.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

describe('parseMemory reads sizes with binary units', () => {
  it.each([
    ['16gb', 16 * GiB],
    ['16g', 16 * GiB],
    ['16G', 16 * GiB],
    ['16GiB', 16 * GiB],
    ['16 GB', 16 * GiB],
    ['512m', 512 * MiB],
    ['512MiB', 512 * MiB],
    ['1.5GiB', 1.5 * GiB],
    ['.5k', 512],
    ['2t', 2 * 1024 ** 4],
    ['1024', 1024],
    ['1024b', 1024],
    [4096, 4096],
    ['0g', 0],
  ])('%j is %d bytes', (input, bytes) => {
    expect(parseMemory(input)).toBe(bytes);
  });

  it.each([
    'lots',
    '16 gigs',
    '1.2.3g',
    '-1g',
    '',
    'g',
    '16gbb',
    '16x',
    '1e9',
    -5,
    Number.NaN,
    null,
    {},
  ])('refuses %j', (input) => {
    expect(parseMemory(input)).toBeNull();
  });
});

describe('splitCommand splits like a shell, without expanding', () => {
  it.each([
    ['python -m http.server {port}', ['python', '-m', 'http.server', '{port}']],
    ['  a   b\tc ', ['a', 'b', 'c']],
    [`sh -c 'echo "$PORT" {port}'`, ['sh', '-c', 'echo "$PORT" {port}']],
    ['serve "my model" --x', ['serve', 'my model', '--x']],
    ['a "b\\"c" d', ['a', 'b"c', 'd']],
    ['a "\\n"', ['a', '\\n']],
    ['a\\ b c', ['a b', 'c']],
    ['a "" b', ['a', '', 'b']],
    ["x='1 2'y", ['x=1 2y']],
    ['', []],
  ])('%j', (line, argv) => {
    expect(splitCommand(line)).toEqual(argv);
  });

  it.each([
    ["a 'b", 'unterminated single quote at character 3'],
    ['a "b', 'unterminated double quote at character 3'],
    ['a \\', 'trailing backslash'],
  ])('refuses %j: %s', (line, message) => {
    expect(() => splitCommand(line)).toThrow(message);
  });
});
